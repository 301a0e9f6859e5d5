"""Lookup drills: Segment failing (5xx, 429 storm, outage, hang with a burst) and slow clients."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bench.drill_kit import HOST, PROFILES, Stack, known_phone, stack, unknown_phone
from bench.drill_load import (
    Judged,
    Kind,
    Row,
    Tally,
    card,
    flow,
    in_background,
    job,
    millis,
    run_threads,
    studio,
    timed,
    warm,
)

WARM = [known_phone(n) for n in range(20)]
FIRST_COLD = 100  # profiles from here on are looked up once each: cold callers


def mixed(
    tally: Tally, agent: httpx.Client, flow_client: httpx.Client, asked: Counter[str] | None = None
) -> Callable[[int], None]:
    """Cards and Studio lookups in turn: warm callers, cold known callers, unknown callers
    (counted in `asked` by kind of caller)."""
    callers = asked if asked is not None else Counter[str]()

    def work(n: int) -> None:
        cold = known_phone(FIRST_COLD + n % (PROFILES - FIRST_COLD))
        client, ask = (agent, card) if n % 2 == 0 else (flow_client, studio)
        kind, caller, known = [
            ("warm", WARM[n % len(WARM)], True),
            ("cold", cold, True),
            ("unknown", unknown_phone(n), False),
        ][n // 2 % 3]
        callers[kind] += 1
        timed(tally, lambda: ask(client, caller, known))

    return work


def upstream_statuses(s: Stack) -> str:
    by_status: dict[str, int] = s.control.stats()["profile_api"]["by_status"]
    calls = ", ".join(f"{count} x {status}" for status, count in sorted(by_status.items()))
    return f"upstream answered {calls or 'nothing'}"


def faulted_lookups(data: Path, duration: float, **faults: Any) -> tuple[Tally, str]:
    """Mixed lookups for `duration` seconds under Profile API `faults` (warm callers first)."""
    tally = Tally()
    with stack(data) as s, s.agent_client() as agent, s.studio_client() as flow_client:
        warm(agent, WARM, s.upstream_calls)
        s.control.reset_stats()
        s.control.set_faults(targets=["profile"], **faults)
        flow(mixed(tally, agent, flow_client), threads=6, seconds=duration, pause=0.02)
        s.control.clear_faults()
        return tally, upstream_statuses(s)


def upstream_5xx(data: Path) -> Row:
    """error_rate 0.3 (503s) on the Profile API for 8 s; warm, cold and unknown callers."""
    tally, notes = faulted_lookups(data, 8.0, error_rate=0.3)
    return Row("upstream-5xx", tally, notes)


def storm_429(data: Path) -> Row:
    """Every Profile API request a 429 with Retry-After: 1 for 4 s, of 8 s of lookups."""
    tally, notes = faulted_lookups(data, 8.0, storm_rate=1.0, retry_after=1, seconds=4)
    return Row("429-storm", tally, notes)


def calm(s: Stack, within: float = 15.0) -> None:
    """Clear the faults once the control plane answers again (a refusing outage closes it)."""
    deadline = time.monotonic() + within
    while True:
        try:
            s.control.clear_faults()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def outage(data: Path) -> Row:
    """Segment refuses connections for 5 s; cards cached 3 s ago are past their TTL (3 s):
    warm callers should get stale cards, the others a typed 'unavailable'."""
    tally = Tally()
    asked: Counter[str] = Counter()
    with (
        stack(data, card_ttl_seconds=3) as s,
        s.agent_client() as agent,
        s.studio_client() as flow_client,
    ):
        warm(agent, WARM, s.upstream_calls)
        time.sleep(3.2)
        s.control.set_faults(outage="refuse", seconds=5)
        flow(mixed(tally, agent, flow_client, asked), threads=6, seconds=5.0, pause=0.02)
        calm(s)
    notes = (
        f"refused 5 s; {tally.kinds[Kind.STALE]} stale answers for {asked['warm']} lookups of "
        f"warm callers ({asked['cold']} cold, {asked['unknown']} unknown)"
    )
    return Row("outage", tally, notes)


def hang_burst(data: Path) -> Row:
    """Segment hangs (30 s); 200 concurrent lookups of unknown callers, half Studio, half cards;
    /healthz polled every second with a 2 s timeout. Target: every answer within 4.5 s
    (timeout_seconds 4 + 0.5)."""
    tally = Tally()
    with (
        stack(data) as s,
        s.agent_client(connections=256) as agent,
        s.studio_client(connections=256) as flow_client,
    ):
        for n in range(10):  # both workers check the agent's token before the hang
            timed(Tally(), partial(card, agent, known_phone(n), True))
        s.control.set_faults(outage="hang", hang_seconds=30, seconds=30, targets=["profile"])
        health: list[bool] = []
        done = threading.Event()
        poller = in_background(lambda: poll_health(s.url, done, health))

        def one(n: int) -> Callable[[], None]:
            client, ask = (flow_client, studio) if n % 2 else (agent, card)
            return job(tally, lambda: ask(client, unknown_phone(n), False))

        run_threads([one(n) for n in range(200)])
        done.set()
        poller.join()
        calm(s)
    late = sum(1 for t in tally.latencies if t > 4.5)
    notes = (
        f"{late}/200 answered after 4.5 s ({millis(tally.latencies)}); "
        f"/healthz failed {health.count(False)}/{len(health)}"
    )
    return Row("hang-burst", tally, notes)


def poll_health(url: str, done: threading.Event, results: list[bool]) -> None:
    """GET /healthz each second on a new connection with a 2 s timeout, until `done`."""
    while not done.is_set():
        started = time.monotonic()
        try:
            results.append(httpx.get(f"{url}/healthz", timeout=2).status_code == 200)
        except httpx.HTTPError:
            results.append(False)
        done.wait(max(0.0, 1.0 - (time.monotonic() - started)))


class Trickle:
    """`count` connections, each sending one more header line every `every` seconds."""

    def __init__(self, port: int, count: int, every: float = 2.0) -> None:
        self.port, self.count, self.every = port, count, every
        self.sockets: list[socket.socket] = []
        self.refused = self.dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Trickle:
        for n in range(self.count):
            try:
                sock = socket.create_connection((HOST, self.port), timeout=5)
                sock.sendall(f"GET /healthz?slow={n} HTTP/1.1\r\nHost: {HOST}\r\n".encode())
                self.sockets.append(sock)
            except OSError:
                self.refused += 1
        self._thread = in_background(self._drip)
        return self

    def _drip(self) -> None:
        line = 0
        while not self._stop.wait(self.every):
            line += 1
            for sock in list(self.sockets):
                try:
                    sock.sendall(f"X-Drip-{line}: 1\r\n".encode())
                except OSError:
                    self.dropped += 1
                    self.sockets.remove(sock)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for sock in self.sockets:
            sock.close()


def normal_lookups(
    s: Stack, tally: Tally, count: int, spacing: float, answered_at: list[float]
) -> threading.Thread:
    """`count` card lookups of warm callers, one new connection each, `spacing` s apart; the
    monotonic time of each good answer goes to `answered_at`."""

    def one(n: int) -> Callable[[], None]:
        def lookup() -> Judged:
            with s.agent_client(timeout=15) as agent:
                judged = card(agent, WARM[n % len(WARM)], True)
            if judged[0] in (Kind.OK, Kind.STALE):
                answered_at.append(time.monotonic())
            return judged

        return job(tally, lookup)

    def launch() -> None:
        threads = []
        for n in range(count):
            threads.append(in_background(one(n)))
            time.sleep(spacing)
        for thread in threads:
            thread.join()

    return in_background(launch)


def slow_phase(s: Stack, slow: int, seconds: float = 15.0) -> tuple[Tally, str]:
    """8 normal lookups, 1 s apart, while `slow` connections trickle headers for `seconds`."""
    tally = Tally()
    answered_at: list[float] = []
    started = time.monotonic()
    with Trickle(s.serve.port, slow) as trickle:
        time.sleep(2.0)
        lookups = normal_lookups(s, tally, 8, 1.0, answered_at)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        trickle_ends = time.monotonic()
    lookups.join()
    during = sum(1 for at in answered_at if at < trickle_ends)
    shown = (
        f"{slow} slow: {during}/8 answered while they trickled ({millis(tally.latencies)}"
        f"{f', {trickle.refused} refused' if trickle.refused else ''}"
        f"{f', {trickle.dropped} dropped by the server' if trickle.dropped else ''})"
    )
    return tally, shown


def slow_clients(data: Path) -> Row:
    """70, then 1,000 connections each sending one header line every 2 s for 15 s, while 8
    normal card lookups (warm callers, a new connection each) are made, 1 s apart, in each
    phase; compared with 6 lookups without slow clients."""
    tally = Tally()
    with stack(data) as s, s.agent_client() as agent:
        warm(agent, WARM, s.upstream_calls)
        baseline = Tally()
        normal_lookups(s, baseline, 6, 0.2, []).join()
        notes = [f"alone: {millis(baseline.latencies)}"]
        tally.merge(baseline)
        for slow in (70, 1000):
            phase, shown = slow_phase(s, slow)
            tally.merge(phase)
            notes.append(shown)
    return Row("slow-clients", tally, "; ".join(notes))
