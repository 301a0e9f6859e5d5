"""Write-back drills with real processes: SIGKILL mid-drain, and the `connector outbox` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from connector.serving.loopback import free_port
from connector.tls import tls_context
from connector.writeback.outbox import Outbox
from tests.conftest import RunningSandbox, SandboxFactory, connection_toml, connector_env

CONNECTOR = [sys.executable, "-m", "connector"]
CALLERS = ["+14155550123", "+447700900123", "+33612345678", "+819012345678"]
STUDIO = ("studio", "drill-password")  # a Studio flow writes the events, with Basic auth
NOT_PASSED = {"SEGMENT_WRITE_KEY", "DATABASE_URL"}  # no secret needed; the SQLite outbox
FLOW_AUTH = '\n[auth]\nstudio_basic_auth_env = "STUDIO_BASIC_AUTH"\n'


def start_serve(
    config: Path, port: int, sandbox_url: str, database: str | None = None
) -> subprocess.Popen[bytes]:
    """`connector serve` with 2 workers; its outbox in PostgreSQL when `database` is given (the
    test environment's own DATABASE_URL, if any, is not passed on)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(connector_env(sandbox_url), STUDIO_BASIC_AUTH=":".join(STUDIO))
    if database is not None:
        env["DATABASE_URL"] = database
    process = subprocess.Popen(
        [
            *CONNECTOR,
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            healthz = f"http://127.0.0.1:{port}/healthz"
            if httpx.get(healthz, timeout=1, verify=tls_context()).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("connector serve did not start")


def events_landed(sandbox: RunningSandbox, event: str) -> int:
    """How many `event` events landed on the callers' profiles (through the Profile API)."""
    return sum(
        len(sandbox.profile(f"phone:{caller}", "events", limit=100, include=event).json()["data"])
        for caller in CALLERS
    )


def wait_for(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_sigkill_mid_drain_loses_nothing_and_lands_nothing_twice(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(data="demo")
    sandbox.control.set_faults(latency_ms=400, targets=["tracking"])  # batches stay in flight
    config = tmp_path / "connection.toml"
    config.write_text(
        connection_toml(
            sandbox.url,
            FLOW_AUTH + f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n',
        )
    )
    box = Outbox(tmp_path / "outbox.sqlite")
    port = free_port()
    first = start_serve(config, port, sandbox.url)
    ids = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, auth=STUDIO) as client:
            for n in range(300):
                response = client.post(
                    "/v1/events",
                    json={"event": "Kill Drill", "properties": {"n": n}, "from": CALLERS[n % 4]},
                )
                assert response.status_code == 202
                ids.append(response.json()["messageId"])

        def delivered_some() -> bool:
            return bool(sandbox.control.stats()["tracking"].get("accepted", 0))

        assert wait_for(delivered_some, 20), "nothing was delivered before the kill"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # master and workers, mid-drain
        first.wait()
    assert box.depth().pending > 0, "the kill came too late to prove anything"

    second = start_serve(config, port, sandbox.url)
    try:
        assert wait_for(lambda: box.depth().pending == 0, 60), "the restart did not drain"
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=20)
    stats = sandbox.control.stats(detail=True)["tracking"]
    assert all(stats["receipts"].get(m, 0) >= 1 for m in ids), "an event was lost"
    landed = events_landed(sandbox, "Kill Drill")
    assert landed == 300, f"{landed} events landed for 300 sent"  # Segment's messageId dedupe
    resent = stats["dropped"].get("duplicate", 0)
    assert resent <= 500  # at most the batches in flight at the kill were sent again


def test_outbox_command_shows_and_settles_dead_letters(tmp_path: Path) -> None:
    config = tmp_path / "connection.toml"
    config.write_text(connection_toml("http://127.0.0.1:9", "\n[writeback]\nenabled = true\n"))
    box = Outbox(tmp_path / "outbox.sqlite")
    for n in range(3):
        box.add({"type": "track", "userId": "u", "event": "E", "messageId": f"m{n}"})
    rows = box.claim(10, 10**6, lease=60)
    box.park(rows[:2], "refused by Segment: invalid_request_error: too big")

    def outbox(*args: str) -> str:
        result = subprocess.run(
            [*CONNECTOR, "outbox", "--config", str(config), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            env={
                k: v
                for k, v in os.environ.items()
                if k not in {"SEGMENT_WRITE_KEY", "DATABASE_URL"}
            },
        )  # no secret needed
        return result.stdout

    shown = outbox()
    assert "1 pending" in shown and "2 dead" in shown and "dead m0: refused by Segment" in shown
    assert "2 dead letter(s) back in line" in outbox("--retry-dead")
    assert box.depth().pending == 3
    box.park(box.claim(10, 10**6, lease=60)[:1], "gave up")
    assert "1 dead letter(s) deleted" in outbox("--purge-dead")
    assert box.depth().dead == 0
    later = Outbox(tmp_path / "later.sqlite")
    for n in range(2):
        later.add({"type": "track", "userId": "u", "event": "E", "messageId": f"later{n}"})
    later.retry_later(later.claim(10, 10**6, lease=60), delay=3600, error="HTTP 503")
    assert later.claim(10, 10**6, lease=60) == []  # backing off for an hour
    config.write_text(config.read_text() + 'outbox_path = "later.sqlite"\n')
    assert "2 pending event(s) due now" in outbox("--retry-now")
    assert len(later.claim(10, 10**6, lease=60)) == 2


def test_outbox_command_creates_no_outbox(tmp_path: Path) -> None:
    config = tmp_path / "connection.toml"
    config.write_text(connection_toml("http://127.0.0.1:9"), encoding="utf-8")  # write-back off
    shown = subprocess.run(
        [*CONNECTOR, "outbox", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    ).stdout
    assert f"no outbox at {tmp_path / 'outbox.sqlite'} (write-back off)" in shown
    assert list(tmp_path.glob("*.sqlite*")) == []
