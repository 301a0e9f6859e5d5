"""`connector sandbox`: the offline Segment emulator, imported only when the command runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from connector.cli.common import stop_on_signals

# SandboxConfig's defaults, written out so that registering the command imports no emulator
# (tests/test_imports.py holds them equal to SandboxConfig()'s). The credentials are the
# emulator's own, printed at start: not secrets.
SPACE_ID = "spa_sandbox"
TOKEN = "sandbox-profile-token"  # noqa: S105
WRITE_KEY = "sandbox-write-key"
TWILIO_ACCOUNT_SID = "AC" + "0" * 31 + "1"
TWILIO_AUTH_TOKEN = "sandbox-twilio-auth-token"  # noqa: S105
RATE_LIMIT = 100.0
SANDBOX_THREADS = 256


@click.command()
@click.option("--port", default=8087, show_default=True, help="Port on 127.0.0.1 (0: any free).")
@click.option("--space-id", default=SPACE_ID, show_default=True)
@click.option(
    "--token",
    envvar="SEGMENT_PROFILE_API_TOKEN",
    default=TOKEN,
    show_default=True,
    help="Profile API token (Basic user). Env: SEGMENT_PROFILE_API_TOKEN",
)
@click.option(
    "--write-key",
    envvar="SEGMENT_WRITE_KEY",
    default=WRITE_KEY,
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
    default=TWILIO_ACCOUNT_SID,
    show_default=True,
)
@click.option(
    "--twilio-auth-token",
    envvar="TWILIO_AUTH_TOKEN",
    default=TWILIO_AUTH_TOKEN,
    show_default=True,
)
@click.option(
    "--rate-limit",
    default=RATE_LIMIT,
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
    from connector.sandbox.core import DataFileError, Sandbox, SandboxConfig  # noqa: PLC0415
    from connector.sandbox.faults import Faults  # noqa: PLC0415
    from connector.sandbox.server import SandboxServer  # noqa: PLC0415

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
