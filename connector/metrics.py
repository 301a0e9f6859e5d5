"""The connector's figures for Prometheus (`/metrics`) and the admin's console (`/admin`).

Each figure is counted where it happens, by a one-line hook (`figures().upstream(...)`): a
counter's increment is a dict lookup and a short lock, nothing a warm lookup would notice.
Gauges that describe a state (cache entries, the rate budget in use) are not counted per request
at all: a `Sampler` thread sets them once a second.

Under `connector serve` (gunicorn, several workers) prometheus_client runs in multiprocess mode:
`PROMETHEUS_MULTIPROC_DIR` names a folder in the server's state folder, set by the master before
the workers fork; each worker writes its figures to files there, a scrape sums them, and the
master marks a dead worker's live gauges gone (connector.serving.gunicorn). Without it (the
tests' in-process servers, `connector demo`) the figures are this process's registry.

No label ever holds a phone number, an email, a token or a caller: labels are routes as declared
(`/v1/cards`, not the URL), statuses, Profile API sections and our own error codes.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SAMPLE_EVERY = 1.0  # seconds between two readings of the live gauges
REMEMBER_EVERY = 15.0  # seconds between two snapshots kept for "the last minutes"
WINDOW = 300.0  # the admin's "last minutes"

# One flat reading of every figure: (sample name, sorted labels) -> value.
Reading = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def multiprocess_dir() -> str | None:
    """The folder gunicorn's workers share their figures through, when there is one."""
    folder = os.environ.get(MULTIPROC_ENV, "").strip()
    return folder if folder and Path(folder).is_dir() else None


class Figures:
    """The process's figures (one per process: see `figures()`)."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess and values.ValueClass is values.MutexValue:
            # prometheus_client picks its value class when it is first imported, and the master
            # imports it before `connector serve` names the folder: choose again, in the worker,
            # before the first figure is made.
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "connector_requests",
            "Requests answered, by route (as declared) and HTTP status.",
            ["route", "status"],
            registry=registry,
        )
        self.upstream_seconds = Histogram(
            "connector_upstream_request_seconds",
            "Profile API requests' latency, by collection/section.",
            ["section"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "connector_upstream_errors",
            "Profile API requests that failed, by collection/section and error code.",
            ["section", "kind"],
            registry=registry,
        )
        self.upstream_429 = Counter(
            "connector_upstream_rate_limited",
            "Profile API answers 429 (Segment's rate limit for the space).",
            registry=registry,
        )
        self.budget_in_use = Gauge(
            "connector_rate_budget_in_use",
            "Slots of the space's request pace reserved ahead of now (local pacers, summed).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.budget_slots = Gauge(
            "connector_rate_budget_slots",
            "Slots the pace gives at once (its burst plus one), summed over workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.cache_lookups = Counter(
            "connector_card_cache_lookups",
            "Card cache lookups, by result (hit or miss).",
            ["result"],
            registry=registry,
        )
        self.cache_entries = Gauge(
            "connector_card_cache_entries",
            "Cards held in the workers' caches, summed.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.token_checks = Counter(
            "connector_flex_token_checks",
            "Flex tokens judged: valid or refused by Twilio, junk (refused without asking), "
            "unavailable (Twilio did not answer).",
            ["result"],
            registry=registry,
        )
        self.auth_refusals = Counter(
            "connector_auth_refusals",
            "Requests the gate refused, by HTTP status (401, 403, 429).",
            ["status"],
            registry=registry,
        )
        self._history: deque[tuple[float, Reading]] = deque()
        self._history_lock = threading.Lock()

    # --- hooks, each called where the event happens -------------------------------------------

    def request(self, route: str, status: int) -> None:
        self.requests.labels(route, str(status)).inc()

    def upstream(self, section: str, seconds: float) -> None:
        self.upstream_seconds.labels(section).observe(seconds)

    def upstream_error(self, section: str, kind: str, status: int | None) -> None:
        self.upstream_errors.labels(section, kind).inc()
        if status == 429:
            self.upstream_429.inc()

    def card_cache(self, hit: bool) -> None:
        self.cache_lookups.labels("hit" if hit else "miss").inc()

    def token_check(self, result: str) -> None:
        self.token_checks.labels(result).inc()

    def auth_refused(self, status: int) -> None:
        self.auth_refusals.labels(str(status)).inc()

    def live(self, cache_entries: int, budget_in_use: float, budget_slots: float) -> None:
        self.cache_entries.set(cache_entries)
        self.budget_in_use.set(budget_in_use)
        self.budget_slots.set(budget_slots)

    # --- reading -------------------------------------------------------------------------------

    def collectors(self) -> list[Collector]:
        """What a scrape reads: every worker's files under gunicorn, else this registry."""
        if self.multiprocess:
            return [MultiProcessCollector(None)]  # type: ignore[no-untyped-call]  # not registered
        return [_Forward(self.registry)]

    def scrape_registry(self, *extra: Collector) -> CollectorRegistry:
        """A registry for one scrape: the figures, and `extra` collectors read at scrape time."""
        registry = CollectorRegistry(auto_describe=False)
        for collector in (*self.collectors(), *extra):
            registry.register(collector)
        return registry

    def read(self) -> Reading:
        """Every figure now, flat (aggregated over workers when there are several)."""
        return flatten(metric for c in self.collectors() for metric in c.collect())

    def remember(self, now: float | None = None) -> None:
        """Keep a reading for the admin's "last minutes" (the Sampler calls it)."""
        now = time.monotonic() if now is None else now
        reading = self.read()
        with self._history_lock:
            self._history.append((now, reading))
            while self._history and now - self._history[0][0] > WINDOW + REMEMBER_EVERY:
                self._history.popleft()

    def window(self) -> tuple[Reading, Reading, float]:
        """(now, the oldest reading kept within WINDOW, seconds between them); the baseline is
        empty (every figure since start) when none is a minute old yet."""
        now_at = time.monotonic()
        current = self.read()
        with self._history_lock:
            kept = [(at, r) for at, r in self._history if now_at - at <= WINDOW]
        if not kept or now_at - kept[0][0] < 60:  # under a minute: since start says more
            return current, {}, 0.0
        at, baseline = kept[0]
        return current, baseline, now_at - at


class _Forward:
    """A registry seen as one collector (so one scrape can add collectors of its own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


def flatten(metrics: Iterable[Metric]) -> Reading:
    reading: Reading = {}
    for metric in metrics:
        for sample in metric.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            reading[key] = reading.get(key, 0.0) + sample.value
    return reading


def total(reading: Reading, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in reading.items() if n == name and wanted <= set(ls))


def label_values(reading: Reading, name: str, label: str) -> list[str]:
    found = {dict(ls).get(label) for (n, ls), _ in reading.items() if n == name}
    return sorted(v for v in found if v is not None)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts (le -> count): linear
    within the bucket that holds the q-th observation; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # past the largest finite bucket: its bound is all we know
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return None


def delta_buckets(now: Reading, before: Reading, name: str, **labels: str) -> dict[float, float]:
    """A histogram's cumulative buckets between two readings."""
    found: dict[float, float] = {}
    wanted = set(labels.items())
    for (sample, ls), value in now.items():
        if sample == f"{name}_bucket" and wanted <= set(ls):
            le = float(dict(ls)["le"])
            found[le] = found.get(le, 0.0) + value - before.get((sample, ls), 0.0)
    return found


_made: list[Figures] = []  # the process's one Figures, once made
_lock = threading.Lock()


def figures() -> Figures:
    """The process's figures, made on first use (in a gunicorn worker: after the fork)."""
    if not _made:
        with _lock:
            if not _made:
                _made.append(Figures())
    return _made[0]


class Sampler:
    """Sets the live gauges every SAMPLE_EVERY seconds and keeps a reading every
    REMEMBER_EVERY, from a daemon thread, until `stop()`."""

    def __init__(self, read_live: Callable[[], tuple[int, float, float]]) -> None:
        self._read_live = read_live
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="figures", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def sample(self) -> None:
        figures().live(*self._read_live())

    def _run(self) -> None:
        last_kept = -math.inf
        while True:
            try:
                self.sample()
                now = time.monotonic()
                if now - last_kept >= REMEMBER_EVERY:
                    figures().remember(now)
                    last_kept = now
            except Exception:  # a sampler that dies would freeze the gauges
                log.exception("reading the figures failed; trying again")
            if self._stop.wait(SAMPLE_EVERY):
                return


@dataclass(frozen=True)
class Outbox:
    """The outbox's figures, read from it at scrape time."""

    pending: int
    oldest_pending_age: float | None
    dead: int


def outbox_collector(read: Callable[[], Outbox | None]) -> Collector:
    """Gauges read from the outbox at scrape time (the outbox is shared: one reading is the
    truth for every worker, so nothing is summed)."""

    class OutboxCollector:
        def collect(self) -> Iterator[Metric]:
            depth = read()
            if depth is None:
                return
            yield GaugeMetricFamily(
                "connector_outbox_pending", "Events waiting to be sent to Segment.", depth.pending
            )
            yield GaugeMetricFamily(
                "connector_outbox_oldest_pending_seconds",
                "Age of the oldest pending event (0 when none).",
                depth.oldest_pending_age or 0.0,
            )
            yield GaugeMetricFamily(
                "connector_outbox_dead_letters",
                "Events Segment refused or that were given up on, kept until an admin acts.",
                depth.dead,
            )

    return OutboxCollector()
