"""The card cache's second tier on Redis, shared by every worker and instance.

An entry is stored with wall-clock times (monotonic clocks are per process) and kept by Redis
until it can serve neither fresh nor stale. Fetches are single-flight across instances: the
first to take a key's lock (SET NX with an expiry, so a crashed leader frees it) asks Segment;
the others poll the shared entry until it is there, the lock is gone, or their time is up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from redis.exceptions import LockError
from redis.lock import Lock

from connector.state.cache import Cached
from connector.state.redis import PREFIX, SharedRedis

T = TypeVar("T")
POLL_EVERY = 0.02  # seconds between a follower's looks at the shared entry


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How a cached value becomes JSON and back."""

    dump: Callable[[T], Any]
    load: Callable[[Any], T]


class SharedTier(Generic[T]):
    def __init__(
        self,
        shared: SharedRedis,
        namespace: str,
        codec: Codec[T],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._shared = shared
        self._prefix = f"{PREFIX}{namespace}:"
        self._codec = codec
        self._clock = clock
        self._wall = wall
        self._sleep = sleep

    @property
    def available(self) -> bool:
        return self._shared.available

    def _key(self, key: str) -> str:
        """Keys are digests: a caller's phone number or email never names a key in Redis."""
        return self._prefix + hashlib.sha256(key.encode()).hexdigest()[:32]

    def load(self, key: str) -> Cached[T] | None:
        raw: object = self._shared.call(lambda r: r.get(self._key(key)), None)
        if not isinstance(raw, bytes | str):
            return None
        try:
            return self._decode(json.loads(raw))
        except (ValueError, KeyError, TypeError):  # written by another version: a miss
            return None

    def store(self, key: str, entry: Cached[T]) -> None:
        now_mono, now_wall = self._clock(), self._wall()
        keep = entry.keep_until - now_mono
        if keep <= 0:
            return
        record = {
            "value": self._codec.dump(entry.value),
            "fetched_at": entry.fetched_at.timestamp(),
            "stored": now_wall - (now_mono - entry.stored),
            "expires": now_wall + (entry.expires - now_mono),
            "keep_until": now_wall + keep,
        }
        text = json.dumps(record, separators=(",", ":"))
        self._shared.call(lambda r: r.set(self._key(key), text, px=int(keep * 1000)), None)

    def forget(self, key: str) -> None:
        self._shared.call(lambda r: r.delete(self._key(key)), None)

    def lead(self, key: str, seconds: float) -> Callable[[], None] | None:
        """Take the fetch of `key` for at most `seconds`: the function that gives it back, or
        None when another process has it. Redis down: this process fetches (a no-op release).
        The lock is redis-py's (SET NX PX, released only by its holder)."""
        lock = self._shared.client.lock(
            self._lock_key(key), timeout=max(0.001, seconds), blocking=False
        )
        taken = self._shared.call(lambda _: lock.acquire(blocking=False), None)
        if taken is None:
            return _nothing
        if not taken:
            return None
        return lambda: self._shared.call(lambda _: _release(lock), None)

    def wait_for(self, key: str, newer_than: float, within: float) -> Cached[T] | None:
        """The entry another process is fetching, once stored (fetched after `newer_than`,
        wall clock); None when the lock is gone without one, or `within` seconds pass."""
        until = self._clock() + within
        while self._clock() < until:
            entry = self.load(key)
            if entry is not None and entry.fetched_at.timestamp() > newer_than:
                return entry
            if not self._shared.call(lambda r: bool(r.exists(self._lock_key(key))), False):
                return self.load_newer(key, newer_than)
            self._sleep(min(POLL_EVERY, max(0.0, until - self._clock())))
        return None

    def load_newer(self, key: str, newer_than: float) -> Cached[T] | None:
        entry = self.load(key)
        return entry if entry is not None and entry.fetched_at.timestamp() > newer_than else None

    def _lock_key(self, key: str) -> str:
        return f"{self._key(key)}:lock"

    def _decode(self, record: dict[str, Any]) -> Cached[T]:
        now_mono, now_wall = self._clock(), self._wall()
        return Cached(
            self._codec.load(record["value"]),
            datetime.fromtimestamp(float(record["fetched_at"]), UTC),
            now_mono - (now_wall - float(record["stored"])),
            now_mono + (float(record["expires"]) - now_wall),
            keep_until=now_mono + (float(record["keep_until"]) - now_wall),
        )


def _nothing() -> None:
    return None


def _release(lock: Lock) -> None:
    with contextlib.suppress(LockError):  # it expired, and may be another leader's now
        lock.release()
