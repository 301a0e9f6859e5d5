"""`connector check` and `connector demo` as an admin runs them: real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.loopback import free_port
from tests.conftest import TOKEN, RunningSandbox, SandboxFactory, connection_toml

CONNECTOR = [sys.executable, "-m", "connector"]


def check(config: Path, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEGMENT_PROFILE_API_TOKEN": token}
    return subprocess.run(
        [*CONNECTOR, "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    return make_sandbox([{"type": "identify", "userId": "u1", "traits": {"name": "C"}}])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connection.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_passes_with_a_working_space_and_token(
    tmp_path: Path, sandbox: RunningSandbox
) -> None:
    result = check(write(tmp_path, connection_toml(sandbox.url)))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "OK: the space answered" in result.stdout
    assert "Request-Id" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_check_fails_on_a_refused_token(tmp_path: Path, sandbox: RunningSandbox) -> None:
    result = check(write(tmp_path, connection_toml(sandbox.url)), token="not-the-token")
    assert result.returncode == 1
    assert "refused the token in SEGMENT_PROFILE_API_TOKEN" in result.stderr
    assert "not-the-token" not in result.stdout + result.stderr


def test_check_fails_on_an_unknown_space(tmp_path: Path, sandbox: RunningSandbox) -> None:
    text = connection_toml(sandbox.url).replace('space_id = "spa_test"', 'space_id = "spa_nope"')
    result = check(write(tmp_path, text))
    assert result.returncode == 1 and "Space was not found" in result.stderr


def test_check_fails_when_segment_is_unreachable(tmp_path: Path) -> None:
    result = check(write(tmp_path, connection_toml(f"http://127.0.0.1:{free_port()}")))
    assert result.returncode == 1 and "unavailable" in result.stderr


def test_check_names_the_key_of_a_bad_file(tmp_path: Path, sandbox: RunningSandbox) -> None:
    text = connection_toml(sandbox.url).replace("default_country", "default_contry")
    result = check(write(tmp_path, text))
    assert result.returncode == 2
    assert "lookup.default_contry: unknown key (did you mean default_country?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_invalid_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[connection]\nfriendly_name = 'x'\n")
    result = subprocess.run(
        [*CONNECTOR, "serve", "--config", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0 and "connection.space_id: required key is missing" in (
        result.stderr
    )


def test_demo_runs_the_sandbox_and_the_connector(tmp_path: Path) -> None:
    sandbox_port, port = free_port(), free_port()
    demo = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
    config = tmp_path / "demo.toml"
    config.write_text(demo.read_text().replace("127.0.0.1:8087", f"127.0.0.1:{sandbox_port}"))
    with subprocess.Popen(
        [*CONNECTOR, "demo", "--port", str(port), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        try:
            card = _first_card(f"http://127.0.0.1:{port}", process)
            written = httpx.post(
                f"http://127.0.0.1:{port}/v1/events",
                json={
                    "event": "Flex - Engagement Completed",
                    "from": "+14155550123",
                    "properties": {"sentiment": "positive"},
                },
            )
            assert written.status_code == 202, written.text
            shown = _wait_for_event(f"http://127.0.0.1:{port}", "Flex - Engagement Completed")
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=20)
        finally:
            process.kill()
    assert card is not None, f"the demo did not answer; it printed:\n{output}"
    assert shown, "the event written through the demo never showed on the card"
    assert card["profile"]["name"] == "Ada Lovelace"
    assert "Try:" in output and "/v1/studio/lookup" in output
    with pytest.raises(httpx.ConnectError):  # the demo's sandbox stopped with it
        httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox")


def _first_card(url: str, process: subprocess.Popen[str]) -> dict[str, Any] | None:
    """The demo's first card, or None if it exits or does not answer within a minute."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            response = httpx.get(f"{url}/v1/cards", params={"from": "+14155550123"})
            if response.status_code == 200:
                card: dict[str, Any] = response.json()
                return card
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return None


def _wait_for_event(url: str, name: str) -> bool:
    """Whether the event shows on the caller's card within 20 s (the drainer sends it)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        card = httpx.get(f"{url}/v1/cards", params={"from": "+14155550123"}).json()
        if any(e["event"] == name for e in card["events"]):
            return True
        time.sleep(0.3)
    return False
