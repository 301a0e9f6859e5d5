"""Fault injection (latency, errors, 429 storms, outages) and the per-space rate limit."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Outage = Literal["none", "refuse", "hang"]
TARGETS = frozenset({"profile", "tracking", "twilio"})


@dataclass(frozen=True)
class Faults:
    """What the sandbox does wrong, per run; every field defaults to behaving well.

    `outage="refuse"` closes the listening socket (clients get connection refused);
    `outage="hang"` accepts requests and answers nothing until the outage ends or
    `hang_seconds` pass. `seconds` makes the whole setting expire on its own.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    storm_rate: float = 0.0
    retry_after: float = 1.0
    outage: Outage = "none"
    hang_seconds: float = 30.0
    targets: frozenset[str] = field(default=frozenset({"profile", "tracking"}))
    path_contains: str | None = None  # only requests whose path contains this, e.g. "/events"
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["targets"] = sorted(self.targets)
        return data


def faults_from_json(data: dict[str, Any]) -> Faults:
    """Build Faults from a JSON object, refusing unknown keys and impossible values."""
    names = {f.name for f in dataclasses.fields(Faults)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
    values = dict(data)
    if "targets" in values:
        targets = frozenset(values["targets"])
        if not targets <= TARGETS:
            raise ValueError(f"targets must be among {sorted(TARGETS)}")
        values["targets"] = targets
    faults = Faults(**values)
    for name in ("latency_ms", "jitter_ms", "hang_seconds", "retry_after"):
        if getattr(faults, name) < 0:
            raise ValueError(f"{name} must not be negative")
    for name in ("error_rate", "storm_rate"):
        if not 0 <= getattr(faults, name) <= 1:
            raise ValueError(f"{name} must be between 0 and 1")
    if faults.outage not in ("none", "refuse", "hang"):
        raise ValueError("outage must be none, refuse or hang")
    if not 500 <= faults.error_status <= 599:
        raise ValueError("error_status must be a 5xx status")
    return faults


class FaultController:
    """The current faults, switchable while the sandbox runs, with optional expiry."""

    def __init__(self, faults: Faults | None = None) -> None:
        self._lock = threading.Lock()
        self._faults = faults or Faults()
        self._generation = 0
        self._outage_over = threading.Event()
        self._outage_over.set()
        self._listeners: list[Callable[[Faults], None]] = []

    @property
    def current(self) -> Faults:
        return self._faults

    def on_change(self, listener: Callable[[Faults], None]) -> None:
        self._listeners.append(listener)

    def set(self, faults: Faults) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._faults = faults
            if faults.outage == "none":
                self._outage_over.set()
            else:
                self._outage_over.clear()
        for listener in self._listeners:
            listener(faults)
        if faults.seconds is not None:
            timer = threading.Timer(faults.seconds, self._expire, args=(generation,))
            timer.daemon = True
            timer.start()

    def clear(self) -> None:
        self.set(Faults())

    def _expire(self, generation: int) -> None:
        if generation == self._generation:
            self.clear()

    def wait_out_hang(self, faults: Faults) -> None:
        """Hold a request for as long as a hang outage lasts (bounded by hang_seconds)."""
        self._outage_over.wait(faults.hang_seconds)

    @staticmethod
    def delay(faults: Faults) -> float:
        """Seconds of injected latency for one request."""
        jitter = random.uniform(0, faults.jitter_ms) if faults.jitter_ms else 0.0
        return (faults.latency_ms + jitter) / 1000


class RateLimiter:
    """A token bucket per space: `rate` requests per second, bursts up to `rate`."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (self.rate, now))
            tokens = min(self.rate, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            return allowed
