"""The `connector` command."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import click
import httpx
from twilio.request_validator import RequestValidator

from connector.auth.flex_tokens import FlexTokens
from connector.config.errors import ConfigError
from connector.config.holder import ConnectionHolder
from connector.config.loading import config_path, outbox_file, read_connection_file
from connector.config.secrets import TwilioAccount
from connector.errors import TwilioRefusedCredentials, TwilioUnavailable
from connector.logs import configure_logging
from connector.sandbox.core import DataFileError, Sandbox, SandboxConfig
from connector.sandbox.datagen import write_demo, write_synthetic
from connector.sandbox.faults import Faults
from connector.sandbox.process import sandbox_process
from connector.sandbox.server import SandboxServer
from connector.segment.api import ProfileApi
from connector.segment.client import build_http_client
from connector.segment.probe import ReadinessProbe
from connector.serving.gunicorn import ALL_INTERFACES
from connector.serving.gunicorn import serve as run_server
from connector.serving.processes import HOST as LOOPBACK
from connector.writeback.outbox import Outbox

DEFAULTS = SandboxConfig()
SANDBOX_THREADS = 256
config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Connection file (default: CONNECTOR_CONFIG or config/connection.toml).",
)


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM.

    Handlers are installed explicitly: a process started in the background by a shell
    inherits SIGINT as ignored, and process managers stop services with SIGTERM.
    """
    stopping = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopping.set())
    return stopping


@click.group()
@click.version_option(package_name="unified-profiles-connector")
def main() -> None:
    """Unified Profiles connector for Twilio Flex and Studio."""


@main.command()
@click.option("--port", default=8087, show_default=True, help="Port on 127.0.0.1 (0: any free).")
@click.option("--space-id", default=DEFAULTS.space_id, show_default=True)
@click.option(
    "--token",
    envvar="SEGMENT_PROFILE_API_TOKEN",
    default=DEFAULTS.token,
    show_default=True,
    help="Profile API token (Basic user). Env: SEGMENT_PROFILE_API_TOKEN",
)
@click.option(
    "--write-key",
    envvar="SEGMENT_WRITE_KEY",
    default=DEFAULTS.write_key,
    show_default=True,
    help="Tracking API write key. Env: SEGMENT_WRITE_KEY",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    help="JSON Lines of Spec messages to load ('demo': the bundled demo data). Repeatable.",
)
@click.option(
    "--rebase-time",
    is_flag=True,
    help="Shift loaded messages' times so the newest is now (implied for 'demo').",
)
@click.option(
    "--agent-token",
    "agent_tokens",
    multiple=True,
    help="Accept this string as a Flex agent token. Repeatable.",
)
@click.option(
    "--twilio-account-sid",
    envvar="TWILIO_ACCOUNT_SID",
    default=DEFAULTS.twilio_account_sid,
    show_default=True,
)
@click.option(
    "--twilio-auth-token",
    envvar="TWILIO_AUTH_TOKEN",
    default=DEFAULTS.twilio_auth_token,
    show_default=True,
)
@click.option(
    "--rate-limit",
    default=DEFAULTS.rate_limit,
    show_default=True,
    help="Profile API requests per second per space (0: unlimited).",
)
@click.option("--db", type=click.Path(path_type=Path), help="SQLite file (default: temporary).")
@click.option(
    "--rules",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Identity resolution rules (default: the bundled rules.toml).",
)
@click.option("--latency-ms", default=0.0, help="Added latency per request.")
@click.option("--jitter-ms", default=0.0, help="Random extra latency, 0..N ms.")
@click.option("--error-rate", default=0.0, help="Fraction of requests answered 503.")
def sandbox(
    port: int,
    space_id: str,
    token: str,
    write_key: str,
    data: tuple[str, ...],
    rebase_time: bool,
    agent_tokens: tuple[str, ...],
    twilio_account_sid: str,
    twilio_auth_token: str,
    rate_limit: float,
    db: Path | None,
    rules: Path | None,
    latency_ms: float,
    jitter_ms: float,
    error_rate: float,
) -> None:
    """Run the offline Segment sandbox on 127.0.0.1."""
    config = SandboxConfig(
        space_id=space_id,
        token=token,
        write_key=write_key,
        twilio_account_sid=twilio_account_sid,
        twilio_auth_token=twilio_auth_token,
        rate_limit=rate_limit,
        db_path=db,
        rules_path=rules,
    )
    faults = Faults(latency_ms=latency_ms, jitter_ms=jitter_ms, error_rate=error_rate)
    instance = Sandbox(config, faults)
    for path in data:
        try:
            report = instance.load(path, rebase_time=rebase_time or path == "demo")
        except (OSError, DataFileError) as error:
            raise click.ClickException(str(error)) from None
        click.echo(
            f"loaded {path}: {report.messages} messages ({report.accepted} accepted) in "
            f"{report.seconds:.1f}s, {report.rate:,.0f} messages/s"
        )
    issued = [instance.agent_tokens.issue(token=value) for value in agent_tokens]
    printed = issued[0] if issued else instance.agent_tokens.issue()  # one token to try, not two
    stopping = stop_on_signals()  # before anything is printed: a caller may signal at once
    try:
        # Threads enough that its control plane still answers while a hang fault holds the
        # connector's requests (a drill's burst can hold a hundred of them).
        server = SandboxServer(instance, port, threads=SANDBOX_THREADS).start()
    except OSError as error:
        instance.close()
        raise click.ClickException(
            f"cannot listen on 127.0.0.1:{port} ({error.__cause__ or error}); "
            "choose another port with --port"
        ) from None
    counts = instance.store.counts()
    click.echo(
        f"Segment sandbox on {server.url}\n"
        f"  space {config.space_id}: {counts['users']} user profiles, "
        f"{counts['accounts']} accounts, {counts['events']} events\n"
        f"  Profile API token (Basic user): {config.token}\n"
        f"  write key: {config.write_key}\n"
        f"  Twilio account: {config.twilio_account_sid} (auth token: {config.twilio_auth_token})\n"
        f"  Flex agent token: {printed.token}"
    )
    if counts["users"] == 0:
        click.echo("  (no profiles yet: load some with --data demo, or send to the tracking API)")
    lookup = f"{server.url}/v1/spaces/{config.space_id}/collections/users/profiles"
    # The last line printed: tools wait for it (connector.sandbox.process.READY_LINE).
    click.echo(f"  try: curl -u {config.token}: '{lookup}/phone:%2B14155550123/traits'")
    sys.stdout.flush()
    stopping.wait()
    server.stop()
    instance.close()


@main.command()
@config_option
@click.option(
    "--host",
    default=ALL_INTERFACES,
    show_default=True,
    help="Address to listen on (127.0.0.1 for this machine only).",
)
@click.option("--port", default=8080, show_default=True, help="Port to listen on.")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", default=32, show_default=True, help="Threads per worker.")
def serve(config_file: Path | None, host: str, port: int, workers: int, threads: int) -> None:
    """Run the connector under gunicorn. Put TLS in front of it (a platform router or a proxy):
    Flex tokens travel in its requests."""
    path = config_path(config_file)
    configure_logging()  # from the first line on, a platform's log pipeline reads JSON
    try:
        run_server(path, host, port, workers, threads)
    except ConfigError as error:
        logging.getLogger("connector.serve").error("connection file refused: %s", error)
        sys.exit(1)


@main.command()
@config_option
def check(config_file: Path | None) -> None:
    """Validate the connection file, then prove the space and token work with one request."""
    path = config_path(config_file)
    try:
        holder = ConnectionHolder(path)
    except ConfigError as error:
        click.echo(f"invalid connection file: {error}", err=True)
        sys.exit(2)
    connection = holder.current()
    section = connection.file.connection
    click.echo(
        f"{path}: valid (connection {section.friendly_name!r}, space {section.space_id}, "
        f"{connection.profile_api_url})"
    )
    with build_http_client() as http:
        upstream = ReadinessProbe(ProfileApi(http)).check(connection, fresh=True)
        twilio = _check_twilio(http, connection.twilio)
    request_id = f" (Request-Id {upstream.request_id})" if upstream.request_id else ""
    if upstream.ok:
        click.echo(
            f"OK: the space answered and accepted the token from {section.token_env}{request_id}"
        )
    elif upstream.code == "token_refused":
        click.echo(
            f"FAILED (token_refused): Segment refused the token in {section.token_env}{request_id}",
            err=True,
        )
    elif upstream.code == "space_not_found":
        click.echo(
            f"FAILED (space_not_found): Segment has no space {section.space_id!r}; "
            f"check space_id in {path}{request_id}",
            err=True,
        )
    else:
        # For the admin, what happened and where: `cannot reach Segment (ConnectError)` at a URL.
        click.echo(
            f"FAILED ({upstream.code}): {upstream.cause or upstream.detail} at "
            f"{connection.profile_api_url}{request_id}",
            err=True,
        )
    if twilio is None:
        click.echo(
            f"OK: Twilio ({connection.twilio.iam_url}) accepted TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN for checking Flex tokens"
        )
    else:
        click.echo(f"FAILED: {twilio}", err=True)
    if not upstream.ok or twilio is not None:
        sys.exit(1)


def _check_twilio(http: httpx.Client, account: TwilioAccount) -> str | None:
    """None when Twilio accepts the account's credentials, else what went wrong."""
    try:
        FlexTokens(http).verdict("connector-check-not-a-token", account)
    except TwilioRefusedCredentials:
        return "Twilio refused TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN"
    except TwilioUnavailable:
        return f"Twilio's token check ({account.iam_url}) did not answer"
    return None


@main.command()
@click.option("--port", default=8080, show_default=True, help="The connector's port.")
@click.option(
    "--config",
    "config_file",
    default="config/demo.toml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Demo connection; its profile_api_url says where the sandbox listens.",
)
@click.option(
    "--sandbox-port",
    type=int,
    help="Run the sandbox on this port instead of the one the file names (a copy is served).",
)
def demo(port: int, config_file: Path, sandbox_port: int | None) -> None:
    """The sandbox with demo data and the connector, both on 127.0.0.1."""
    if not port_is_free(port):
        raise click.ClickException(
            f"127.0.0.1:{port} is in use (another connector demo?): free it, or choose another "
            f"port for the connector with --port, e.g. connector demo --port {port + 10}"
        )
    stack = ExitStack()
    if sandbox_port is not None:
        config_file = stack.enter_context(_moved_sandbox(config_file, sandbox_port))
    try:
        file = read_connection_file(config_file)
        # The demo uses the sandbox's own token, write key and Twilio account: the sandbox
        # also answers Twilio's token checks. Auth stays on, with an agent token issued for it.
    except ConfigError as error:
        stack.close()
        raise click.ClickException(str(error)) from None
    sandbox_url = (file.connection.profile_api_url or "http://127.0.0.1:8087").rstrip("/")
    os.environ.update(
        {
            file.connection.token_env: DEFAULTS.token,
            file.writeback.write_key_env: DEFAULTS.write_key,
            **DEFAULTS.twilio_environment(sandbox_url),
        }
    )
    agent_token = "demo-agent-" + secrets.token_urlsafe(18)
    sandbox_port = urlsplit(sandbox_url).port or 8087
    try:
        sandbox = stack.enter_context(
            sandbox_process(
                "--data",
                "demo",
                "--space-id",
                file.connection.space_id,
                "--token",
                DEFAULTS.token,
                "--agent-token",
                agent_token,
                port=sandbox_port,
            )
        )
    except RuntimeError as error:  # it printed why (a busy port, most often)
        stack.close()
        raise click.ClickException(
            f"{error}\nThe demo's sandbox listens where {config_file}'s profile_api_url says "
            f"(port {sandbox_port}): free that port, or move the sandbox with --sandbox-port, "
            f"e.g. connector demo --sandbox-port {sandbox_port + 10}"
        ) from None
    with stack:
        click.echo(sandbox.printed.rstrip())
        url = f"http://{LOOPBACK}:{port}"
        # Printed before gunicorn starts, from this thread: a thread still running when gunicorn
        # forks its workers could hold a lock the workers then wait on forever.
        _print_examples(url, config_file, agent_token)
        run_server(config_file, LOOPBACK, port, workers=2, threads=32)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


@contextmanager
def _moved_sandbox(config_file: Path, sandbox_port: int) -> Iterator[Path]:
    """A copy of the demo's connection file whose sandbox URLs name `sandbox_port`."""
    try:
        file = read_connection_file(config_file)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    listed = (file.connection.profile_api_url or "http://127.0.0.1:8087").rstrip("/")
    moved = f"http://{LOOPBACK}:{sandbox_port}"
    with tempfile.TemporaryDirectory(prefix="connector-demo-") as folder:
        copy = Path(folder) / config_file.name
        copy.write_text(config_file.read_text(encoding="utf-8").replace(listed, moved), "utf-8")
        click.echo(f"The sandbox moves to {moved}: serving a copy of {config_file} at {copy}.")
        yield copy


def _print_examples(url: str, config_file: Path, agent_token: str) -> None:
    bearer = f"-H 'Authorization: Bearer {agent_token}'"
    studio_from = "whatsapp:+5511912345678"
    # Signed as Twilio signs Studio's requests, with the demo account's auth token.
    signature = RequestValidator(DEFAULTS.twilio_auth_token).compute_signature(
        f"{url}/v1/studio/lookup", {"From": studio_from}
    )
    click.echo(
        f"\nThe connector is starting on {url} (edits to {config_file} apply without a "
        f"restart). Every call needs credentials; the sandbox issued this Flex agent token:\n"
        f"  {agent_token}\n"
        f"Try:\n"
        f"  curl {bearer} '{url}/v1/cards?from=%2B14155550123'\n"
        f"  curl {bearer} '{url}/v1/cards?email=Fatima.Zahra@Example.com'\n"
        f"  curl -X POST {url}/v1/studio/lookup -H 'X-Twilio-Signature: {signature}' "
        f"--data-urlencode 'From={studio_from}'\n"
        f"  curl -X POST {url}/v1/events {bearer} -H 'content-type: application/json' -d "
        f"""'{{"event": "Flex - Engagement Completed", "from": "+14155550123", """
        f"""\"properties": {{"sentiment": "positive"}}}}'\n"""
        f"  curl {bearer} '{url}/readyz'\n"
        f"  curl -i '{url}/v1/cards?from=%2B14155550123'    (no token: 401)\n"
        f"Open the card page (as Flex's CRM container shows it) in a browser; the caller and the "
        f"token go after #, which browsers never send:\n"
        f"  {url}/cards/view#from=%2B14155550123&Token={agent_token}\n"
    )


@main.command()
@config_option
@click.option("--retry-dead", is_flag=True, help="Put every dead letter back in line.")
@click.option("--purge-dead", is_flag=True, help="Delete every dead letter.")
@click.option("--retry-now", is_flag=True, help="Send pending events now, not after backoff.")
def outbox(config_file: Path | None, retry_dead: bool, purge_dead: bool, retry_now: bool) -> None:
    """The write-back outbox: depth, oldest pending event, dead letters."""
    path = config_path(config_file)
    try:  # no secrets needed to look at the outbox
        file = read_connection_file(path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    state = "on" if file.writeback.enabled else "off"
    where = outbox_file(path, file)
    if not where.exists():  # looking must not create one
        click.echo(f"no outbox at {where} (write-back {state}): no event was ever accepted there")
        return
    box = Outbox(where)
    if retry_dead:
        click.echo(f"{box.retry_dead()} dead letter(s) back in line")
    if purge_dead:
        click.echo(f"{box.purge_dead()} dead letter(s) deleted")
    if retry_now:
        click.echo(f"{box.retry_now()} pending event(s) due now")
    depth = box.depth()
    oldest = f"{depth.oldest_pending_age:.0f}s" if depth.oldest_pending_age is not None else "-"
    click.echo(
        f"outbox {where} (write-back {state}): {depth.pending} pending "
        f"(oldest {oldest}), {depth.sent} sent (kept 24 h), {depth.dead} dead (kept until purged)"
    )
    for message_id, reason, _ in box.dead_letters(limit=20):
        click.echo(f"  dead {message_id}: {reason}")


@main.command("generate-data")
@click.option("--demo", is_flag=True, help="Write the demo data set instead of synthetic profiles.")
@click.option("--profiles", default=1000, show_default=True, help="Synthetic profiles to generate.")
@click.option("--seed", default=1, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def generate_data(demo: bool, profiles: int, seed: int, out: Path) -> None:
    """Write JSON Lines of Spec messages for `connector sandbox --data`."""
    with out.open("w", encoding="utf-8") as file:
        count = write_demo(file) if demo else write_synthetic(file, profiles, seed)
    click.echo(f"wrote {count} messages to {out}")
