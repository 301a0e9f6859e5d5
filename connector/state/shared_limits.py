"""Per-minute limits for the whole deployment, in Redis: each agent's and each flow's lookups,
and each client address's failed authentications.

A moving window of a minute from the `limits` library. Every method answers None when Redis
cannot say, and the caller then applies its own per-process limit.
"""

from __future__ import annotations

import time

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from connector.state.redis import PREFIX, SharedRedis


class SharedLimits:
    def __init__(self, shared: SharedRedis, namespace: str) -> None:
        self._shared = shared
        storage = RedisStorage(
            "redis://",
            connection_pool=shared.client.connection_pool,
            key_prefix=f"{PREFIX}{namespace}",
        )
        self._limiter = MovingWindowRateLimiter(storage)

    def take(self, key: str, per_minute: int) -> float | None:
        """Count one for `key`: 0 when within the limit, else seconds until it would be."""
        item = RateLimitItemPerMinute(max(1, per_minute))
        taken = self._shared.call(lambda _: self._limiter.hit(item, key), None)
        if taken is None:
            return None
        return 0.0 if taken else self._until_room(item, key)

    def wait(self, key: str, per_minute: int) -> float | None:
        """Like `take`, without counting: 0 while `key` is under the limit."""
        item = RateLimitItemPerMinute(max(1, per_minute))
        room = self._shared.call(lambda _: self._limiter.test(item, key), None)
        if room is None:
            return None
        return 0.0 if room else self._until_room(item, key)

    def _until_room(self, item: RateLimitItem, key: str) -> float | None:
        stats = self._shared.call(lambda _: self._limiter.get_window_stats(item, key), None)
        return None if stats is None else max(0.001, stats.reset_time - time.time())
