"""Write-back with the outbox in PostgreSQL (`DATABASE_URL`), end to end against the sandbox:
delivered once, two `connector serve` instances sharing one outbox through a kill -9, and a
database that cannot be reached."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from connector.serving.loopback import free_port
from connector.web.registry import services_of
from connector.writeback.postgres_outbox import PostgresOutbox
from tests.conftest import ConnectorFactory, RunningSandbox, SandboxFactory, connection_toml
from tests.postgres import closed_port_url
from tests.test_writeback_drills import (
    CALLERS,
    CONNECTOR,
    FLOW_AUTH,
    STUDIO,
    events_landed,
    start_serve,
    wait_for,
)

WRITEBACK = '\n[writeback]\nenabled = true\ntracking_api_url = "{url}"\n'


def test_events_are_accepted_into_postgresql_and_delivered_once(
    make_sandbox: SandboxFactory,
    make_connector: ConnectorFactory,
    database_url: str,
    tmp_path: Path,
) -> None:
    sandbox = make_sandbox(data="demo")
    connector = make_connector(
        sandbox, WRITEBACK.format(url=sandbox.url), env={"DATABASE_URL": database_url}
    )
    box = services_of(connector.app).outbox.get()
    assert isinstance(box, PostgresOutbox)
    ids = []
    for n in range(40):
        body = {"event": "Pg Event", "properties": {"n": n}, "from": CALLERS[n % 4]}
        response = connector.http.post("/v1/events", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["messageId"])
    again = connector.http.post(
        "/v1/events", json={"event": "Pg Event", "messageId": ids[0], "from": CALLERS[0]}
    )
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert wait_for(lambda: box.depth().pending == 0, 20), "the outbox did not drain"
    receipts = sandbox.control.stats(detail=True)["tracking"]["receipts"]
    assert all(receipts.get(m) == 1 for m in ids)
    assert box.depth().sent == 40
    ready = connector.http.get("/readyz").json()
    assert ready["outbox"] == {"backend": "postgresql", "reachable": True}

    config = tmp_path / "shown.toml"
    config.write_text(connection_toml(sandbox.url, WRITEBACK.format(url=sandbox.url)))
    shown = subprocess.run(
        [*CONNECTOR, "outbox", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={**os.environ, "DATABASE_URL": database_url.replace("postgresql:", "postgres:")},
    ).stdout
    assert "0 pending (oldest -), 40 sent" in shown
    assert "outbox postgresql://" in shown


def test_two_instances_share_the_outbox_through_a_kill(
    make_sandbox: SandboxFactory, database_url: str, tmp_path: Path
) -> None:
    sandbox = make_sandbox(data="demo")
    sandbox.control.set_faults(latency_ms=1000, targets=["tracking"])  # batches stay in flight
    config = tmp_path / "connection.toml"
    config.write_text(connection_toml(sandbox.url, FLOW_AUTH + WRITEBACK.format(url=sandbox.url)))
    box = PostgresOutbox(database_url)
    ports = [free_port(), free_port()]
    first, second = (start_serve(config, port, sandbox.url, database_url) for port in ports)
    ids = []
    try:
        clients = [
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, auth=STUDIO)
            for port in ports
        ]
        try:
            for n in range(300):
                response = clients[n % 2].post(
                    "/v1/events",
                    json={"event": "Pg Kill Drill", "properties": {"n": n}, "from": CALLERS[n % 4]},
                )
                assert response.status_code == 202, response.text
                ids.append(response.json()["messageId"])
        finally:
            for client in clients:
                client.close()

        def delivered_some() -> bool:
            return bool(sandbox.control.stats()["tracking"].get("accepted", 0))

        assert wait_for(delivered_some, 20), "nothing was delivered before the kill"
        os.killpg(first.pid, signal.SIGKILL)  # one instance, master and workers, mid-drain
        first.wait()
        assert box.depth().pending > 0, "the kill came too late to prove anything"
        # The survivor drains the rest, the killed instance's leased rows once their lease ends.
        assert wait_for(lambda: box.depth().pending == 0, 60), "the survivor did not drain"
    finally:
        for process in (first, second):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
        box.close()
    stats = sandbox.control.stats(detail=True)["tracking"]
    assert all(stats["receipts"].get(m, 0) >= 1 for m in ids), "an event was lost"
    landed = events_landed(sandbox, "Pg Kill Drill")
    assert landed == 300, f"{landed} events landed for 300 sent"  # Segment's messageId dedupe


def test_an_unreachable_database_is_a_quick_503_and_lookups_go_on(
    make_sandbox: SandboxFactory, make_connector: ConnectorFactory
) -> None:
    sandbox: RunningSandbox = make_sandbox(data="demo")
    connector = make_connector(
        sandbox, WRITEBACK.format(url=sandbox.url), env={"DATABASE_URL": closed_port_url()}
    )
    assert connector.card(**{"from": CALLERS[0]}).json()["found"]
    for _ in range(2):
        started = time.monotonic()
        response = connector.http.post("/v1/events", json={"event": "E", "from": CALLERS[0]})
        assert time.monotonic() - started < 5
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "outbox_unavailable"
        assert "cannot be reached" in error["message"] and "retry it" in error["message"]
    started = time.monotonic()
    card = connector.card(**{"from": CALLERS[0]})  # cached: is it out of date? cannot say
    assert card.status_code == 200 and card.json()["found"]
    assert time.monotonic() - started < 3
    assert connector.card(**{"from": CALLERS[1]}).json()["found"]  # a fresh lookup
    ready = connector.http.get("/readyz")  # with the agent's credentials: the details
    assert ready.status_code == 200  # Segment answers: lookups are served
    assert ready.json()["outbox"] == {"backend": "postgresql", "reachable": False}
    assert httpx.get(f"{connector.url}/readyz").json() == {"ready": True}  # a probe: no details


def test_outbox_command_reads_database_url_and_hides_its_password(
    database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "connection.toml"
    config.write_text(connection_toml("http://127.0.0.1:9", "\n[writeback]\nenabled = true\n"))
    parts = urlsplit(database_url)
    if parts.password is None:  # trust authentication ignores a password: give it one to hide
        host = parts.netloc.rpartition("@")[2]
        database_url = urlunsplit(parts._replace(netloc=f"{parts.username}:s3cret@{host}"))
    secret = urlsplit(database_url).password or ""

    def outbox(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "SEGMENT_WRITE_KEY"}
        result = subprocess.run(
            [*CONNECTOR, "outbox", "--config", str(config), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env={**env, "DATABASE_URL": database_url},
        )
        assert result.returncode == 0, result.stderr
        assert secret not in result.stdout + result.stderr
        return result.stdout

    assert "no outbox in postgresql://" in outbox()  # looking creates no table
    box = PostgresOutbox(database_url)
    try:
        for n in range(3):
            box.add({"type": "track", "userId": "u", "event": "E", "messageId": f"m{n}"})
        box.park(box.claim(10, 10**6, lease=60)[:2], "refused by Segment: too big")
        shown = outbox()
        assert ":***@" in shown and "1 pending" in shown and "2 dead" in shown
        assert "dead m0: refused by Segment" in shown
        assert "2 dead letter(s) back in line" in outbox("--retry-dead")
        assert box.depth().pending == 3
    finally:
        box.close()
