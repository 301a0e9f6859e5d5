"""The RateBudget protocol (the space's pacers in pacing.py keep it), and token buckets for the
per-agent and per-flow lookup limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Deadline(Protocol):
    """What a request has left of its time (connector.segment.deadline.Deadline)."""

    def remaining(self) -> float: ...


class RateBudget(Protocol):
    """Permission to send one request to a space's Profile API."""

    def acquire(self, space_id: str, deadline: Deadline) -> bool:
        """Wait for a slot; False when none comes before the deadline."""
        ...

    def back_off(self, space_id: str, seconds: float) -> None:
        """Send nothing to the space for `seconds` (Segment answered 429 with Retry-After)."""
        ...


class LocalRateBudget:
    """A token bucket per key (an agent, a flow), shared by the threads of one process.

    Bursts up to `burst` are the point here (an agent opening several cards at once); the space's
    Profile API requests are paced instead (pacing.py), since Segment counts them on arrival.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst: float | None = None,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._paused_until: dict[str, float] = {}

    def set_rate(self, rate: float, burst: float | None = None) -> None:
        """A new rate for every bucket, keeping what they hold (an edit is not a fresh burst)."""
        with self._lock:
            self.rate = rate
            self.burst = max(1.0, burst if burst is not None else rate)

    def acquire(self, space_id: str, deadline: Deadline) -> bool:
        while True:
            wait = self.take(space_id)
            if wait == 0:
                return True
            if wait >= deadline.remaining():
                return False
            self._sleep(wait)

    def back_off(self, space_id: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._paused_until[space_id] = max(until, self._paused_until.get(space_id, 0.0))

    def take(self, key: str) -> float:
        """0 when a token was taken from `key`'s bucket, else how long until one is due."""
        with self._lock:
            now = self._clock()
            paused = self._paused_until.get(key, 0.0) - now
            if paused > 0:
                return paused
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
