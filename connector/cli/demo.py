"""`connector demo`: the sandbox with demo data and the connector (it imports the emulator
when run)."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import click
from twilio.request_validator import RequestValidator

from connector.cli.common import port_is_free
from connector.config.errors import ConfigError
from connector.config.loading import read_connection_file
from connector.serving.gunicorn import serve
from connector.serving.processes import HOST as LOOPBACK


@click.command()
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
    from connector.sandbox.control_client import SandboxControl  # noqa: PLC0415
    from connector.sandbox.core import SandboxConfig  # noqa: PLC0415
    from connector.sandbox.process import sandbox_process  # noqa: PLC0415

    defaults = SandboxConfig()
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
    environ = {  # what the sandbox and the connector run with; this process's own is left as is
        **os.environ,
        file.connection.token_env: defaults.token,
        file.writeback.write_key_env: defaults.write_key,
        **defaults.twilio_environment(sandbox_url),
    }
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
                defaults.token,
                "--agent-token",
                agent_token,
                port=sandbox_port,
                env=environ,
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
        # A Flex admin's token too, for the console (/admin) and /metrics.
        control = SandboxControl(sandbox.url)
        admin_token = str(control.issue_agent_token(roles=["admin"])["token"])
        control.close()
        # Printed before gunicorn starts, from this thread: a thread still running when gunicorn
        # forks its workers could hold a lock the workers then wait on forever.
        _print_examples(url, config_file, agent_token, defaults.twilio_auth_token)
        click.echo(
            f"Open the admin's console (a Flex admin's token, also after #):\n"
            f"  {url}/admin#Token={admin_token}\n"
            f"  curl -H 'Authorization: Bearer {admin_token}' {url}/metrics\n"
        )
        serve(config_file, LOOPBACK, port, workers=2, threads=32, environ=environ)


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


def _print_examples(url: str, config_file: Path, agent_token: str, twilio_auth_token: str) -> None:
    bearer = f"-H 'Authorization: Bearer {agent_token}'"
    studio_from = "whatsapp:+5511912345678"
    # Signed as Twilio signs Studio's requests, with the demo account's auth token.
    signature = RequestValidator(twilio_auth_token).compute_signature(
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
