"""Counters of what reached the sandbox, so tests and benchmarks can count upstream calls."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

ARRIVALS_KEPT = 200_000  # profile requests whose arrival time is kept, for max_per_second


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.profile_api: Counter[str] = Counter()
            self.profile_statuses: Counter[int] = Counter()
            self.profile_lookups: Counter[str] = Counter()
            self.tracking: Counter[str] = Counter()
            self.dropped: Counter[str] = Counter()
            self.receipts: Counter[str] = Counter()
            self.twilio: Counter[str] = Counter()
            self.arrivals: deque[float] = deque(maxlen=ARRIVALS_KEPT)

    def profile_request(self, section: str, status: int, identifier: str | None) -> None:
        with self._lock:
            self.profile_api[section] += 1
            self.profile_statuses[status] += 1
            if identifier is not None:
                self.profile_lookups[f"{section} {identifier}"] += 1

    def judged(self) -> None:
        """A Profile API request is being judged against the space's rate (its arrival, as the
        rate limit counts it)."""
        with self._lock:
            self.arrivals.append(time.monotonic())

    def tracking_request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.tracking[f"{endpoint} {status}"] += 1

    def messages(self, message_ids: list[str], outcomes: list[str | None]) -> None:
        with self._lock:
            self.receipts.update(message_ids)
            self.tracking["messages"] += len(outcomes)
            for outcome in outcomes:
                if outcome is None:
                    self.tracking["accepted"] += 1
                else:
                    self.dropped[outcome] += 1

    def dropped_request(self, reason: str, count: int) -> None:
        with self._lock:
            self.dropped[reason] += count

    def twilio_request(self, outcome: str) -> None:
        with self._lock:
            self.twilio[outcome] += 1

    def snapshot(self, detail: bool = False) -> dict[str, Any]:
        with self._lock:
            data: dict[str, Any] = {
                "profile_api": {
                    "requests": sum(self.profile_api.values()),
                    "by_section": dict(self.profile_api),
                    "by_status": {str(k): v for k, v in self.profile_statuses.items()},
                },
                "tracking": {
                    **dict(self.tracking),
                    "dropped": dict(self.dropped),
                    "distinct_message_ids": len(self.receipts),
                    "repeated_message_ids": sum(1 for n in self.receipts.values() if n > 1),
                },
                "twilio": dict(self.twilio),
            }
            if detail:
                data["profile_api"]["by_lookup"] = dict(self.profile_lookups)
                data["profile_api"]["max_per_second"] = most_in_one_second(list(self.arrivals))
                data["tracking"]["receipts"] = dict(self.receipts)
            return data


def most_in_one_second(arrivals: list[float]) -> int:
    """The most requests that arrived within any one second (arrivals in order)."""
    most, first = 0, 0
    for last, arrived in enumerate(arrivals):
        while arrived - arrivals[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most
