"""`connector check` and `connector demo` as an admin runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

import httpx
import pytest

from connector.serving.loopback import free_port
from tests.conftest import TOKEN, RunningSandbox, SandboxFactory, connection_toml, connector_env

CONNECTOR = [sys.executable, "-m", "connector"]


def sandbox_url(config: Path) -> str:
    url: str = tomllib.loads(config.read_text())["connection"]["profile_api_url"]
    return url


def check(config: Path, token: str = TOKEN, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **connector_env(sandbox_url(config), token), **overrides}
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
    assert "token_refused" in result.stderr
    assert "refused the token in SEGMENT_PROFILE_API_TOKEN" in result.stderr
    assert "not-the-token" not in result.stdout + result.stderr


def test_check_proves_the_twilio_credentials(tmp_path: Path, sandbox: RunningSandbox) -> None:
    config = write(tmp_path, connection_toml(sandbox.url))
    assert "OK: Twilio" in check(config).stdout
    refused = check(config, TWILIO_AUTH_TOKEN="wrong-twilio-auth-token")
    assert refused.returncode == 1
    assert "Twilio refused TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN" in refused.stderr
    assert "wrong-twilio-auth-token" not in refused.stdout + refused.stderr
    silent = check(config, TWILIO_IAM_URL=f"http://127.0.0.1:{free_port()}")
    assert silent.returncode == 1 and "did not answer" in silent.stderr


def test_check_fails_on_an_unknown_space(tmp_path: Path, sandbox: RunningSandbox) -> None:
    text = connection_toml(sandbox.url).replace('space_id = "spa_test"', 'space_id = "spa_nope"')
    result = check(write(tmp_path, text))
    assert result.returncode == 1 and "space_not_found" in result.stderr
    assert "Segment has no space 'spa_nope'; check space_id in" in result.stderr


def test_check_fails_when_segment_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = check(write(tmp_path, connection_toml(url)))
    assert result.returncode == 1 and "unavailable" in result.stderr
    assert f"cannot reach Segment (ConnectError) at {url}" in result.stderr


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
    assert result.returncode != 0
    (line,) = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert line["level"] == "error"
    assert "connection.space_id: required key is missing" in line["message"]


def test_demo_runs_the_sandbox_and_the_connector(tmp_path: Path) -> None:
    sandbox_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    demo = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
    config = tmp_path / "demo.toml"
    config.write_text(demo.read_text().replace("127.0.0.1:8087", f"127.0.0.1:{sandbox_port}"))
    with demo_running(tmp_path / "demo.out", "--port", str(port), "--config", str(config)) as (
        out,
        process,
    ):
        try:
            printed = _printed_examples(out, process)
            agent = {"Authorization": f"Bearer {printed['token']}"}
            card = _first_card(url, process, agent)
            assert httpx.get(f"{url}/v1/cards", params={"from": "+14155550123"}).status_code == 401
            # As the page's script does: the fragment's fields posted as a form.
            shell, fragment = printed["page"].split("#")
            page = httpx.post(shell, data=dict(parse_qsl(fragment)))
            studio = httpx.post(
                f"{url}/v1/studio/lookup",
                data={"From": "whatsapp:+5511912345678"},
                headers={"X-Twilio-Signature": printed["signature"]},
            )
            written = httpx.post(
                f"{url}/v1/events",
                headers=agent,
                json={
                    "event": "Flex - Engagement Completed",
                    "from": "+14155550123",
                    "properties": {"sentiment": "positive"},
                },
            )
            assert written.status_code == 202, written.text
            shown = _wait_for_event(url, agent, "Flex - Engagement Completed")
            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)
        finally:
            process.kill()
        out.seek(0)
        output = out.read()
    assert card is not None, f"the demo did not answer; it printed:\n{output}"
    assert studio.status_code == 200 and studio.json()["status"] == "found", studio.text
    assert page.status_code == 200 and "Ada Lovelace" in page.text
    assert shown, "the event written through the demo never showed on the card"
    assert card["profile"]["name"] == "Ada Lovelace"
    with pytest.raises(httpx.ConnectError):  # the demo's sandbox stopped with it
        httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox")


@contextmanager
def demo_running(log: Path, *args: str) -> Iterator[tuple[IO[str], subprocess.Popen[str]]]:
    """`connector demo ARGS` until the block ends, then SIGINT as Ctrl-C sends it. Its output
    goes to a file: a pipe read only at the end would fill with logs and block the demo."""
    with (
        log.open("w+", encoding="utf-8") as out,
        subprocess.Popen(
            [*CONNECTOR, "demo", *args], stdout=out, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        try:
            yield out, process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _printed_examples(out: IO[str], process: subprocess.Popen[str]) -> dict[str, str]:
    """The agent token and the Studio signature the demo printed for its example calls."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        out.seek(0)
        text = out.read()
        token = re.search(r"Authorization: Bearer (\S+)'", text)
        signature = re.search(r"X-Twilio-Signature: (\S+)'", text)
        page = re.search(r"(http://\S+/cards/view#\S+)", text)
        if token and signature and page:
            return {"token": token[1], "signature": signature[1], "page": page[1]}
        time.sleep(0.1)
    out.seek(0)
    raise AssertionError(f"the demo printed no example calls:\n{out.read()}")


def _first_card(
    url: str, process: subprocess.Popen[str], headers: dict[str, str]
) -> dict[str, Any] | None:
    """The demo's first card, or None if it exits or does not answer within a minute."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            response = httpx.get(
                f"{url}/v1/cards", params={"from": "+14155550123"}, headers=headers
            )
            if response.status_code == 200:
                card: dict[str, Any] = response.json()
                return card
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return None


def _wait_for_event(url: str, headers: dict[str, str], name: str) -> bool:
    """Whether the event shows on the caller's card within 20 s (the drainer sends it)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        card = httpx.get(f"{url}/v1/cards", params={"from": "+14155550123"}, headers=headers).json()
        if any(e["event"] == name for e in card["events"]):
            return True
        time.sleep(0.3)
    return False


def test_demo_names_the_flag_that_moves_a_busy_port(tmp_path: Path) -> None:
    """A busy connector port names --port; a busy sandbox port names --sandbox-port, which
    then runs the demo with the sandbox moved."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    demo = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
    config = tmp_path / "demo.toml"
    config.write_text(demo.read_text().replace("127.0.0.1:8087", f"127.0.0.1:{taken}"))
    with busy:
        for args, flag in (
            (["--port", str(taken)], "--port"),
            (["--port", str(free_port())], "--sandbox-port"),
        ):
            result = subprocess.run(
                [*CONNECTOR, "demo", "--config", str(config), *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 1, result.stdout + result.stderr
            assert f"connector demo {flag} " in result.stderr, result.stderr
        port, sandbox_port = free_port(), free_port()
        moved = ["--port", str(port), "--sandbox-port", str(sandbox_port)]
        with demo_running(tmp_path / "moved.out", "--config", str(config), *moved) as (
            out,
            process,
        ):
            printed = _printed_examples(out, process)
            agent = {"Authorization": f"Bearer {printed['token']}"}
            card = _first_card(f"http://127.0.0.1:{port}", process, agent)
            sandbox = httpx.get(f"http://127.0.0.1:{sandbox_port}/_sandbox", timeout=5)
    assert card is not None and card["profile"]["name"] == "Ada Lovelace"
    assert sandbox.status_code == 200
