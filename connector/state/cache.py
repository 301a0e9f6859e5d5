"""Cards in memory: TTL per entry, single-flight, stale-on-error, bounded, LRU.

200 concurrent lookups of one caller make one upstream fetch: the first caller fetches, the
others wait for its result. When Segment is unavailable, an expired entry still within
`stale_for` is served instead, marked stale.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from connector.errors import RateLimited, UpstreamUnavailable

T = TypeVar("T")
# Errors after which a stale entry is better than no answer; others (a refused token) are not.
STALE_ON = (UpstreamUnavailable, RateLimited)


@dataclass(frozen=True)
class Cached(Generic[T]):
    value: T
    fetched_at: datetime  # wall clock, for the card's freshness
    stored: float  # monotonic, like expires
    expires: float
    stale: bool = False


class CardCache(Generic[T]):
    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Cached[T]] = OrderedDict()
        self._flights: dict[str, Future[Cached[T]]] = {}
        self.hits = self.misses = self.stale_served = 0

    def get(
        self,
        key: str,
        fetch: Callable[[], tuple[T, float]],
        stale_for: float,
        wait: float,
        outdated: Callable[[Cached[T]], bool] | None = None,
    ) -> Cached[T]:
        """The cached value, or `fetch()`'s (value, ttl) shared with concurrent callers.

        `wait` bounds how long a follower waits for the leader's fetch; `outdated` can declare
        an unexpired entry out of date (say, an event about this caller was delivered since).
        """
        entry = self._entries.get(key)
        if entry is not None and outdated is not None and outdated(entry):
            self.forget(key)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires > self._clock():
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
                self.misses += 1
        if not leader:
            try:
                return flight.result(timeout=wait)
            except TimeoutError:  # the leader's fetch outlived this caller's deadline
                return self._stale_or_raise(
                    entry,
                    stale_for,
                    UpstreamUnavailable("a fetch in flight did not finish in time"),
                )
        try:
            result = self._fetch(key, fetch, entry, stale_for)
        except BaseException as error:
            flight.set_exception(error)
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            with self._lock:
                self._flights.pop(key, None)

    def _fetch(
        self,
        key: str,
        fetch: Callable[[], tuple[T, float]],
        previous: Cached[T] | None,
        stale_for: float,
    ) -> Cached[T]:
        try:
            value, ttl = fetch()
        except STALE_ON as error:
            return self._stale_or_raise(previous, stale_for, error)
        now = self._clock()
        entry = Cached(value, datetime.now(UTC), now, now + ttl)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return entry

    def _stale_or_raise(
        self, previous: Cached[T] | None, stale_for: float, error: Exception
    ) -> Cached[T]:
        """The expired entry marked stale while it is within `stale_for`, else the error."""
        if previous is None or self._clock() - previous.stored > stale_for:
            raise error
        with self._lock:
            self.stale_served += 1
        return Cached(
            previous.value, previous.fetched_at, previous.stored, previous.expires, stale=True
        )

    def peek(self, key: str) -> Cached[T] | None:
        """The unexpired entry for `key`, if any; no fetch, no statistics."""
        with self._lock:
            entry = self._entries.get(key)
        return entry if entry is not None and entry.expires > self._clock() else None

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
