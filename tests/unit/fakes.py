"""Test doubles for the seams the connector offers: a clock that only moves when told to."""

from __future__ import annotations

import threading


class FakeClock:
    """A monotonic (or wall) clock for `clock=`; `sleep` advances it and records each wait."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
