"""The drills' load: requests from threads, each answer judged and counted in a Tally.

Judging follows the table's columns: OK is a 2xx with a real, right answer (a card found or not
found as the data says, with every configured trait; a Studio `found`/`not_found`; an event's
202 with a messageId); stale is a card or Studio answer marked stale; unavailable is a typed
degraded answer (a 503 in Segment's error shape, or Studio's 200 `status: unavailable`); failed
is everything else, connection errors and timeouts included. Latency over 10 s is counted apart.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.drill_kit import TRAITS

STUDIO_LIMIT = 10.0  # seconds: Studio's Make HTTP Request fails past it


class Kind(enum.Enum):
    OK = "ok"
    STALE = "stale"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


@dataclass
class Row:
    """One line of the drills' table."""

    drill: str
    tally: Tally
    notes: str
    lost: int | None = None  # None: the drill wrote no event back
    duplicated: int | None = None


@dataclass
class Tally:
    """Counts of one drill's answers, and the messageIds of the events it got a 202 for."""

    kinds: Counter[Kind] = field(default_factory=Counter)
    records: list[tuple[Kind, float]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: Kind, seconds: float, status: str) -> None:
        with self._lock:
            self.kinds[kind] += 1
            self.records.append((kind, seconds))
            self.statuses[status] += 1

    def accept(self, message_id: str) -> None:
        with self._lock:
            self.accepted.append(message_id)

    def demote(self, count: int) -> None:
        """`count` answers judged OK turned out wrong later (e.g. a 202 then dead-lettered)."""
        with self._lock:
            moved = min(count, self.kinds[Kind.OK])
            self.kinds[Kind.OK] -= moved
            self.kinds[Kind.FAILED] += moved

    def merge(self, other: Tally) -> None:
        with self._lock:
            self.kinds.update(other.kinds)
            self.records += other.records
            self.accepted += other.accepted
            self.statuses.update(other.statuses)

    @property
    def latencies(self) -> list[float]:
        return [seconds for _, seconds in self.records]

    def answered_within(self, limit: float) -> int:
        """Answers (OK or stale) that came within `limit` seconds."""
        good = (Kind.OK, Kind.STALE)
        return sum(1 for kind, seconds in self.records if kind in good and seconds <= limit)

    @property
    def requests(self) -> int:
        return sum(self.kinds.values())

    @property
    def over_limit(self) -> int:
        return sum(1 for s in self.latencies if s > STUDIO_LIMIT)


# A request: send it, then judge the answer. Returns the kind and a short status label.
Judged = tuple[Kind, str]


def timed(tally: Tally, request: Callable[[], Judged]) -> Judged:
    """Make one request, count its kind and client-side latency; errors count as failed."""
    started = time.perf_counter()
    try:
        judged = request()
    except httpx.TimeoutException:
        judged = (Kind.FAILED, "timeout")
    except httpx.HTTPError as error:
        judged = (Kind.FAILED, type(error).__name__)
    tally.add(judged[0], time.perf_counter() - started, judged[1])
    return judged


def job(tally: Tally, request: Callable[[], Judged]) -> Callable[[], None]:
    """`timed(tally, request)` as a thread's job."""

    def run() -> None:
        timed(tally, request)

    return run


def segment_error(response: httpx.Response) -> bool:
    """Whether the body is Segment's error shape: {"error": {"code", "message"}}."""
    try:
        error = response.json().get("error")
    except ValueError:
        return False
    return isinstance(error, dict) and isinstance(error.get("code"), str) and "message" in error


def degraded(response: httpx.Response) -> Judged:
    """A non-2xx answer: a typed 503 is 'unavailable', anything else failed."""
    label = str(response.status_code)
    if response.status_code == 503 and segment_error(response):
        return Kind.UNAVAILABLE, label
    return Kind.FAILED, label


def judge_card(response: httpx.Response, known: bool, connection: str | None = None) -> Judged:
    """A card: found as the data says, every configured trait on a found card."""
    if response.status_code != 200:
        return degraded(response)
    card = response.json()
    if card.get("found") is not known:
        return Kind.FAILED, "wrong found"
    if known and len(card.get("traits", [])) != len(TRAITS):
        return Kind.FAILED, "traits missing"
    if connection is not None and card.get("connection") != connection:
        return Kind.FAILED, "old connection"
    return (Kind.STALE, "stale") if card["freshness"]["stale"] else (Kind.OK, "200")


def judge_studio(response: httpx.Response, known: bool) -> Judged:
    """Studio's flat answer: status found / not_found as the data says, or unavailable."""
    if response.status_code != 200:
        return degraded(response)
    body = response.json()
    status = body.get("status")
    if status == "unavailable":
        return Kind.UNAVAILABLE, "unavailable"
    if status != ("found" if known else "not_found"):
        return Kind.FAILED, f"wrong status {status}"
    if known and any(f"trait_{key}" not in body for key in TRAITS):
        return Kind.FAILED, "traits missing"
    return (Kind.STALE, "stale") if body.get("stale") else (Kind.OK, "200")


def judge_event(response: httpx.Response, tally: Tally) -> Judged:
    """An event: 202 with a messageId (remembered, to find it at Segment later)."""
    if response.status_code != 202:
        return degraded(response)
    message_id = response.json().get("messageId")
    if not isinstance(message_id, str):
        return Kind.FAILED, "202 without messageId"
    tally.accept(message_id)
    return Kind.OK, "202"


def card(client: httpx.Client, caller: str, known: bool) -> Judged:
    return judge_card(client.get("/v1/cards", params={"from": caller}), known)


def studio(client: httpx.Client, caller: str, known: bool) -> Judged:
    return judge_studio(client.post("/v1/studio/lookup", data={"From": caller}), known)


def event(client: httpx.Client, tally: Tally, caller: str, body: dict[str, Any]) -> Judged:
    return judge_event(client.post("/v1/events", json={**body, "from": caller}), tally)


def flow(work: Callable[[int], None], threads: int, seconds: float, pause: float = 0.0) -> int:
    """Call work(0), work(1), ... from `threads` threads for `seconds`; how many calls began."""
    counter = itertools.count()
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < until:
            with lock:
                n = next(counter)
            work(n)
            if pause:
                time.sleep(pause)

    run_threads([loop] * threads)
    with lock:
        return next(counter) - threads


def run_threads(jobs: Sequence[Callable[[], None]]) -> None:
    """Run every job in its own thread, all released at once; wait for all."""
    barrier = threading.Barrier(len(jobs))

    def released(job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            barrier.wait()
            job()

        return run

    threads = [threading.Thread(target=released(job)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def concurrently(items: Sequence[int], threads: int, work: Callable[[int], None]) -> None:
    """work(item) for every item, `threads` at a time."""
    queue = list(reversed(items))
    lock = threading.Lock()

    def loop() -> None:
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop()
            work(item)

    run_threads([loop] * min(threads, max(1, len(items))))


def in_background(job: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    return thread


def millis(samples: Sequence[float]) -> str:
    """p50 and max of samples in seconds, as 'p50 N ms, max M ms'."""
    if not samples:
        return "none"
    return f"p50 {statistics.median(samples) * 1000:,.0f} ms, max {max(samples) * 1000:,.0f} ms"


def warm(
    client: httpx.Client, callers: Sequence[str], upstream: Callable[[], int], passes: int = 8
) -> int:
    """Look the callers up until a pass costs no upstream call (each worker caches its own)."""
    for done in range(1, passes + 1):
        before = upstream()
        concurrently(range(len(callers)), 8, lambda i: _quietly(client, callers[i]))
        if upstream() == before:
            return done
    return passes


def _quietly(client: httpx.Client, caller: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        client.get("/v1/cards", params={"from": caller})
