"""Drills of the outbox in PostgreSQL (DATABASE_URL), shared by two `connector serve` instances
(2 workers each), on a PostgreSQL server of the drill's own (Debian's binaries, a new cluster in
a temporary folder, on a free port) so that it can be restarted without touching any other.

- instance-kill-mid-drain: 300 events over both instances while the tracking API is slow (400 ms
  a request); once delivery began, one instance is killed (-9, master and workers); the other
  drains what it had leased once their leases end. Lost and duplicated as in kill9-mid-drain.
- postgres-restart: events flow into both instances from 6 threads for 12 s; PostgreSQL is
  stopped (immediate: connections cut) at 3 s and started again at 6 s. While it is down an event
  must be a typed 503 (unavailable), never a 202 that is then lost; afterwards everything answered
  202 must reach Segment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path

import httpx

from bench.drill_kit import (
    STUDIO,
    Serve,
    client,
    connection_toml,
    drill_sandbox,
    known_phone,
    serve_environment,
)
from bench.drill_load import Row, Tally, concurrently, event, flow, timed
from connector.sandbox.control_client import SandboxControl
from connector.serving.loopback import free_port


class PostgresServer:
    """A PostgreSQL cluster of the drill's own, trust auth on 127.0.0.1 and a free port."""

    def __init__(self, folder: Path) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        if not found:
            raise RuntimeError("PostgreSQL's server is not installed (apt-get install postgresql)")
        self.bin = found[-1].parent
        self.folder, self.port = folder, free_port()
        self.data = folder / "data"
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:  # the server refuses to run as root: as Debian's postgres user
            shutil.chown(self.folder, "postgres")
            self.folder.parent.chmod(0o755)  # a temporary folder is the owner's alone
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run(
            [*prefix, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@contextmanager
def two_instances(data: Path) -> Iterator[tuple[SandboxControl, list[Serve], PostgresServer]]:
    with (
        tempfile.TemporaryDirectory(prefix="drill-pg-") as tmp,
        drill_sandbox(data) as sandbox,
        ExitStack() as stack,
    ):
        postgres = PostgresServer(Path(tmp) / "postgres")
        postgres.start()
        stack.callback(postgres.stop, "fast")
        control = SandboxControl(sandbox.url)
        stack.callback(control.close)
        config = Path(tmp) / "connection.toml"
        config.write_text(connection_toml(sandbox.url), encoding="utf-8")
        env = {**serve_environment(sandbox.url), "DATABASE_URL": postgres.url}
        serves = []
        for _ in range(2):
            serve = Serve(config, env)
            stack.callback(serve.close)
            serve.start()
            serves.append(serve)
        yield control, serves, postgres


def received(control: SandboxControl) -> dict[str, int]:
    tracking = control.stats(detail=True)["tracking"]
    return {str(k): int(v) for k, v in tracking.get("receipts", {}).items()}


def settled(control: SandboxControl, accepted: list[str], within: float = 90) -> tuple[int, int]:
    """(lost, received twice or more) of the events answered 202, once all arrived or time's up."""
    ids = set(accepted)
    deadline = time.monotonic() + within
    while True:
        counts = received(control)
        lost = sum(1 for m in ids if counts.get(m, 0) == 0)
        if not lost or time.monotonic() > deadline:
            return lost, sum(1 for m in ids if counts.get(m, 0) > 1)
        time.sleep(1.0)


def flows(serves: list[Serve]) -> list[httpx.Client]:
    return [client(s.url, 15.0, 8, False, auth=STUDIO) for s in serves]


def instance_kill_mid_drain(data: Path) -> Row:
    tally = Tally()
    with two_instances(data) as (control, serves, _):
        clients = flows(serves)
        control.set_faults(latency_ms=400, targets=["tracking"])

        def one(n: int) -> None:
            body = {"event": "Instance Kill Drill", "properties": {"n": n}}
            timed(tally, partial(event, clients[n % 2], tally, known_phone(n % 4), body))

        concurrently(range(300), 8, one)
        deadline = time.monotonic() + 30
        while not received(control) and time.monotonic() < deadline:
            time.sleep(0.1)
        serves[0].kill9()
        control.clear_faults()
        lost, duplicated = settled(control, tally.accepted)
        for c in clients:
            c.close()
    notes = (
        f"one of 2 instances killed once delivery began; the other drained the rest: "
        f"{len(set(tally.accepted)) - lost}/{len(set(tally.accepted))} accepted events reached "
        f"Segment"
    )
    return Row("instance-kill-mid-drain", tally, notes, lost, duplicated)


def postgres_restart(data: Path) -> Row:
    tally, during = Tally(), Tally()
    with two_instances(data) as (control, serves, postgres):
        clients = flows(serves)
        down = threading.Event()

        def work(n: int) -> None:
            body = {"event": "Postgres Restart Drill", "properties": {"n": n}}
            target = during if down.is_set() else tally
            timed(target, partial(event, clients[n % 2], target, known_phone(n % 4), body))

        def restart() -> None:
            time.sleep(3)
            postgres.stop()
            down.set()
            time.sleep(3)
            postgres.start()
            down.clear()

        chaos = threading.Thread(target=restart)
        chaos.start()
        flow(work, threads=6, seconds=12.0, pause=0.01)
        chaos.join()
        tally.merge(during)
        lost, duplicated = settled(control, tally.accepted)
        for c in clients:
            c.close()
    notes = (
        f"PostgreSQL down 3 s: {during.requests} events then, {during.statuses.get('202', 0)} "
        f"accepted and {during.statuses.get('503', 0)} refused with a 503; "
        f"{len(set(tally.accepted))} accepted in all"
    )
    return Row("postgres-restart", tally, notes, lost, duplicated)
