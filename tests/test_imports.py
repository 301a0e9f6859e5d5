"""What each command imports: `connector serve`, `check` and `outbox` never load the sandbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from connector.cli import sandbox as sandbox_command
from connector.sandbox import SandboxConfig
from connector.serving.loopback import free_port
from connector.serving.processes import served_process
from tests.conftest import RunningSandbox, connection_toml, connector_env

ADA = "+14155550123"


def imported(stderr: str) -> list[str]:
    """The modules named by `-X importtime` lines (`import time: self | cumulative | name`)."""
    return [
        line.rpartition("|")[2].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]


def assert_no_sandbox(modules: list[str], expected: str) -> None:
    # The expected module proves importtime's lines were there to read.
    assert expected in modules, f"no importtime line for {expected}: {modules[:20]}"
    assert not [name for name in modules if name.startswith("connector.sandbox")]


def test_the_sandbox_option_defaults_are_sandbox_configs() -> None:
    """`connector sandbox`'s option defaults, written out in connector.cli.sandbox, cannot drift
    from SandboxConfig's."""
    written = {
        "space_id": sandbox_command.SPACE_ID,
        "token": sandbox_command.TOKEN,
        "write_key": sandbox_command.WRITE_KEY,
        "twilio_account_sid": sandbox_command.TWILIO_ACCOUNT_SID,
        "twilio_auth_token": sandbox_command.TWILIO_AUTH_TOKEN,
        "rate_limit": sandbox_command.RATE_LIMIT,
    }
    defaults = SandboxConfig()
    assert written == {name: getattr(defaults, name) for name in written}


def run_importtime(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    return result.stderr


def test_registering_the_commands_imports_no_sandbox() -> None:
    stderr = run_importtime("-c", "import connector.cli")
    assert_no_sandbox(imported(stderr), "connector.cli.demo")


def test_check_and_outbox_import_no_sandbox(tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "connection.toml"
    config.write_text(connection_toml(unreachable), encoding="utf-8")
    env = {**os.environ, **connector_env(unreachable)}
    checked = run_importtime("-m", "connector", "check", "--config", str(config), env=env)
    assert "cannot reach Segment" in checked
    assert_no_sandbox(imported(checked), "connector.cards.service")
    looked = run_importtime("-m", "connector", "outbox", "--config", str(config), env=env)
    assert_no_sandbox(imported(looked), "connector.writeback.outbox")


def test_serve_imports_no_sandbox(demo: RunningSandbox, tmp_path: Path) -> None:
    """A real `connector serve` (master and forked workers, which inherit importtime) answers
    /healthz and a card lookup without importing anything from the sandbox."""
    config = tmp_path / "connection.toml"
    config.write_text(connection_toml(demo.url), encoding="utf-8")
    env = {**connector_env(demo.url), "PYTHONPROFILEIMPORTTIME": "1"}
    token = demo.control.issue_agent_token()["token"]
    with served_process(config, env, workers=1) as served:
        assert httpx.get(f"{served.url}/healthz", timeout=10).status_code == 200
        card = httpx.get(
            f"{served.url}/v1/cards",
            params={"from": ADA},
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
        )
        assert card.status_code == 200, card.text
        assert card.json()["profile"]["name"] == "Ada Lovelace"
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=15)
        stderr = served.logs()  # read before the block removes the log file
    assert_no_sandbox(imported(stderr), "connector.app")
