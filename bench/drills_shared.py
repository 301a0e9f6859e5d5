"""Drills of a deployment sharing state through Redis (REDIS_URL): several `connector serve`
instances, each with 2 workers, in front of one sandbox, and a Redis server of the drill's own
(Debian's `redis-server` on a free port, nothing kept on disk) so that it can be killed and
restarted without touching any other.

- redis-restart: 2 instances; warm callers' cards and Studio lookups flow from 6 threads for 12 s;
  Redis is killed (-9) at 3 s and started again at 7 s. Every answer must be OK (Redis is never
  what an answer depends on); notes: latencies while it was down, and whether the instances used
  it again (/readyz says available, and a new pass over the warm callers costs Segment nothing).
- cold-storm-4x2: 4 instances x 2 workers, the space limited to 100 requests/s (the sandbox
  refuses past it with 429s, as Segment does); 1,000 distinct unknown callers at once (one
  request each). The instances must keep to the space's rate together where Segment counts it,
  on arrival: notes give the most requests that reached the sandbox within any one second (at
  most 100, else flagged), the 429s it answered, and how the answers were spread.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.drill_kit import (
    Serve,
    client,
    connection_toml,
    drill_sandbox,
    known_phone,
    serve_environment,
    unknown_phone,
)
from bench.drill_load import Kind, Row, Tally, card, concurrently, flow, millis, studio, timed
from connector.sandbox.control_client import SandboxControl
from connector.serving.loopback import free_port

WARM = [known_phone(n) for n in range(20)]


class RedisServer:
    """Debian's redis-server on a free port, for one drill: killed and restarted at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        command = [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class Deployment:
    control: SandboxControl
    agent: str
    serves: list[Serve]
    redis: RedisServer

    def agent_client(self, n: int) -> httpx.Client:
        url = self.serves[n % len(self.serves)].url
        return client(url, 15.0, 64, True, headers={"Authorization": f"Bearer {self.agent}"})

    def upstream_calls(self) -> int:
        return int(self.control.stats()["profile_api"]["requests"])


@contextmanager
def deployment(data: Path, instances: int, rate_limit: float = 100.0) -> Iterator[Deployment]:
    """A sandbox, a Redis of its own and `instances` x `connector serve` (2 workers each)."""
    redis = RedisServer()
    redis.start()
    with (
        tempfile.TemporaryDirectory(prefix="drill-") as tmp,
        drill_sandbox(data, "--rate-limit", str(rate_limit)) as sandbox,
        ExitStack() as stack,
    ):
        control = SandboxControl(sandbox.url)
        stack.callback(control.close)
        stack.callback(redis.kill)
        config = Path(tmp) / "connection.toml"
        config.write_text(connection_toml(sandbox.url, rate_limit=rate_limit), encoding="utf-8")
        env = {**serve_environment(sandbox.url), "REDIS_URL": redis.url}
        serves = []
        for _ in range(instances):
            serve = Serve(config, env)
            stack.callback(serve.close)
            serve.start()
            serves.append(serve)
        agent = str(control.issue_agent_token()["token"])
        yield Deployment(control, agent, serves, redis)


def look_up_all(agent: httpx.Client, tally: Tally) -> None:
    """One pass over the warm callers, 8 at a time."""
    concurrently(range(len(WARM)), 8, job_for(tally, [agent], WARM, known=True))


def job_for(
    tally: Tally, clients: list[httpx.Client], callers: list[str], known: bool = False
) -> Callable[[int], None]:
    """Look up callers[i] on clients[i % len(clients)], judged and counted in `tally`."""

    def run(i: int) -> None:
        target = clients[i % len(clients)]
        timed(tally, lambda: card(target, callers[i], known))

    return run


def redis_restart(data: Path) -> Row:
    tally, down = Tally(), Tally()
    with deployment(data, instances=2) as d:
        clients = [d.agent_client(n) for n in range(2)]
        look_up_all(clients[0], Tally())
        outage = threading.Event()

        def work(n: int) -> None:
            caller, target = WARM[n % len(WARM)], clients[n % 2]
            lookup = card if n % 3 else studio
            timed(down if outage.is_set() else tally, lambda: lookup(target, caller, True))

        def kill_then_restart() -> None:
            time.sleep(3)
            d.redis.kill()
            outage.set()
            time.sleep(4)
            d.redis.start()
            outage.clear()

        chaos = threading.Thread(target=kill_then_restart)
        chaos.start()
        flow(work, threads=6, seconds=12.0, pause=0.01)
        chaos.join()
        readiness = [c.get("/readyz").json().get("shared") or {} for c in clients]
        # The restarted Redis is empty, and each worker finds it again within its retry pause:
        # passes over the warm callers, alternating instances, until one costs Segment nothing.
        costs = []
        for n in range(20):
            before = d.upstream_calls()
            look_up_all(clients[n % 2], Tally())
            costs.append(d.upstream_calls() - before)
            if costs[-1] == 0:
                break
            time.sleep(0.5)
        for c in clients:
            c.close()
    tally.merge(down)
    available = sum(1 for r in readiness if r.get("available"))
    notes = (
        f"while Redis was down: {down.requests} answers ({millis(down.latencies)}); "
        f"after its restart (empty), /readyz says available on {available}/2 instances; passes "
        f"over {len(WARM)} warm callers, alternating instances, cost "
        f"{', '.join(map(str, costs))} upstream calls"
    )
    return Row("redis-restart", tally, notes)


def cold_storm(data: Path) -> Row:
    tally = Tally()
    callers = [unknown_phone(n) for n in range(1000)]
    with deployment(data, instances=4) as d:
        clients = [d.agent_client(n) for n in range(4)]
        started = time.monotonic()
        concurrently(range(len(callers)), 64, job_for(tally, clients, callers))
        took = time.monotonic() - started
        profile_api = d.control.stats(detail=True)["profile_api"]
        statuses, most = profile_api["by_status"], profile_api["max_per_second"]
        for c in clients:
            c.close()
    refused = int(statuses.get("429", 0))
    over = ", OVER IT" if most > 100 else ""
    notes = (
        f"1,000 unknown callers over 4 instances x 2 workers in {took:.1f} s; at most {most} "
        f"requests reached the sandbox in any 1 s (rate_limit 100{over}), which refused "
        f"{refused} with 429; answers {millis(tally.latencies)}, "
        f"{tally.kinds[Kind.UNAVAILABLE]} typed unavailable (budget past the deadline)"
    )
    return Row("cold-storm-4x2", tally, notes)
