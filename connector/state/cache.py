"""A cache for values fetched from upstream: TTL per entry, single-flight, stale-on-error.

cachetools stores the entries (`TLRUCache`: least recently used out first when full, and each
entry dropped once it can serve neither fresh nor stale). What cachetools does not do is ours:

- single flight: 200 concurrent lookups of one caller make one upstream fetch; the first caller
  fetches, the others wait for its result (up to their own deadline);
- stale on error: when Segment is unavailable, an expired entry still within `stale_for` of
  when it was fetched is served instead, marked stale;
- per-entry TTLs chosen by the fetch (a complete card, a "not found", a refusal);
- hit, miss and stale counters for `/readyz`.

cachetools' caches are not thread-safe: every access holds the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from cachetools import TLRUCache

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
    keep_until: float = 0.0  # monotonic: past it the entry cannot even stand in when stale


def _keep_until(_key: str, entry: Cached[Any], _now: float) -> float:
    return entry.keep_until


class SharedTier(Protocol[T]):
    """A second tier shared between processes (connector.state.shared_tier, on Redis)."""

    @property
    def available(self) -> bool: ...

    def load(self, key: str) -> Cached[T] | None: ...

    def store(self, key: str, entry: Cached[T]) -> None: ...

    def forget(self, key: str) -> None: ...

    def lead(self, key: str, seconds: float) -> Callable[[], None] | None: ...

    def wait_for(self, key: str, newer_than: float, within: float) -> Cached[T] | None: ...


class SingleFlightCache(Generic[T]):
    """In-process entries, with an optional shared tier behind them. With one, an entry lives
    here at most `local_ttl` seconds (an event delivered about a caller, or a new version of
    their data, reaches every process within that bound) and is then read from the tier."""

    def __init__(
        self,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedTier[T] | None = None,
        local_ttl: float = 2.0,
        counted: Callable[[bool], None] | None = None,
    ) -> None:
        self._clock = clock
        # Told of each hit (True) and miss (False), outside the lock: /metrics' figures.
        self._counted = counted
        self._shared = shared
        self._local_ttl = local_ttl
        self._lock = threading.Lock()
        self._entries: TLRUCache[str, Cached[T]] = TLRUCache(max_entries, _keep_until, clock)
        self._flights: dict[str, Future[Cached[T]]] = {}
        self.hits = self.misses = self.stale_served = 0

    @property
    def max_entries(self) -> int:
        return int(self._entries.maxsize)

    def resize(self, max_entries: int) -> None:
        """A new bound (an edit of `cache_size`), keeping the most recently used entries."""
        with self._lock:
            if max_entries == self._entries.maxsize:
                return
            resized: TLRUCache[str, Cached[T]] = TLRUCache(max_entries, _keep_until, self._clock)
            for key in list(self._entries)[-max_entries:]:  # iteration runs least recent first
                resized[key] = self._entries[key]
            self._entries = resized

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
        entry = self._get(key)
        # Behind a working shared tier a local entry lives `local_ttl` at most: it is checked
        # when it is read from the tier again, not on every hit.
        checked_later = self._shared is not None and self._shared.available
        if entry is not None and outdated is not None and not checked_later and outdated(entry):
            self.forget(key)
        with self._lock:
            entry = self._entries.get(key)
            hit = entry is not None and entry.expires > self._clock()
            flight = None if hit else self._flights.get(key)
            leader = flight is None
            if hit:
                self.hits += 1
            elif flight is None:
                flight = self._flights[key] = Future()
                self.misses += 1
        if hit and entry is not None:
            if self._counted is not None:
                self._counted(True)
            return entry
        assert flight is not None  # noqa: S101 - not a hit: a flight to lead or to follow
        if leader and self._counted is not None:
            self._counted(False)
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
            result = self._from_shared_or_fetch(key, fetch, entry, stale_for, wait, outdated)
        except BaseException as error:
            flight.set_exception(error)
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            with self._lock:
                self._flights.pop(key, None)

    def _from_shared_or_fetch(
        self,
        key: str,
        fetch: Callable[[], tuple[T, float]],
        previous: Cached[T] | None,
        stale_for: float,
        wait: float,
        outdated: Callable[[Cached[T]], bool] | None,
    ) -> Cached[T]:
        """This process's leader: the shared entry if it is fresh, else one fetch for every
        process (the others wait for it), else our own fetch."""
        shared = self._shared
        if shared is None:
            return self._fetch(key, fetch, previous, stale_for)
        found = shared.load(key)
        fresh = found is not None and found.expires > self._clock()
        if found is not None and fresh and (outdated is None or not outdated(found)):
            return self._keep(key, found)
        # Expired or out of date: fetched again, and meanwhile what stands in if Segment fails.
        previous = previous or found
        release = shared.lead(key, wait)
        if release is None:  # another process is asking Segment: wait for its answer
            since = previous.fetched_at.timestamp() if previous else 0.0
            answered = shared.wait_for(key, since, wait)
            if answered is not None:
                return self._keep(key, answered)
            release = shared.lead(key, wait) or _nothing  # it gave up: ask ourselves
        try:
            return self._fetch(key, fetch, previous, stale_for)
        finally:
            release()

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
        entry = Cached(
            value, datetime.now(UTC), now, now + ttl, keep_until=now + max(ttl, stale_for)
        )
        if self._shared is not None:
            self._shared.store(key, entry)
        return self._keep(key, entry)

    def _keep(self, key: str, entry: Cached[T]) -> Cached[T]:
        """Store an entry here; behind a shared tier, for `local_ttl` at most."""
        local = entry
        if self._shared is not None and self._shared.available:  # else: alone, for now
            bound = self._clock() + self._local_ttl
            local = replace(entry, expires=min(entry.expires, bound))
        with self._lock:
            self._entries[key] = local
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
            previous.value,
            previous.fetched_at,
            previous.stored,
            previous.expires,
            stale=True,
            keep_until=previous.keep_until,
        )

    def _get(self, key: str) -> Cached[T] | None:
        with self._lock:
            return self._entries.get(key)

    def peek(self, key: str) -> Cached[T] | None:
        """The unexpired entry for `key`, if any; no fetch, no statistics."""
        entry = self._get(key)
        return entry if entry is not None and entry.expires > self._clock() else None

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
        if self._shared is not None:
            self._shared.forget(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            self._entries.expire()
            return len(self._entries)


def _nothing() -> None:
    return None
