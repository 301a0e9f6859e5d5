"""The space's request budget for the whole deployment, in Redis.

A moving window from the `limits` library (its Redis storage keeps each request's time in a list
and admits one only when the window's oldest is more than a window old), so every instance and
worker together never send more than `rate_limit` requests in any second. A 429 from Segment
pauses them all for its Retry-After. While Redis is down, each process falls back to its share
of the rate (its LocalRateBudget).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from connector.state.rates import Deadline, LocalRateBudget
from connector.state.redis import PREFIX, SharedRedis

MAX_POLL = 0.05  # seconds a waiting request sleeps before it looks again


class SharedRateBudget:
    def __init__(
        self,
        shared: SharedRedis,
        local: LocalRateBudget,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._shared = shared
        self._local = local
        self._sleep = sleep
        storage = RedisStorage(
            "redis://", connection_pool=shared.client.connection_pool, key_prefix=f"{PREFIX}budget"
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._item: RateLimitItem = RateLimitItemPerSecond(100)

    def set_rate(self, rate: float) -> None:
        """`rate` requests per second for the deployment (under 1: one per so many seconds)."""
        if rate >= 1:
            self._item = RateLimitItemPerSecond(math.floor(rate))
        else:
            self._item = RateLimitItemPerSecond(1, math.ceil(1 / rate))

    def acquire(self, space_id: str, deadline: Deadline) -> bool:
        while True:
            wait = self._wait(space_id)
            if wait is None:  # Redis cannot say: this process's share
                return self._local.acquire(space_id, deadline)
            if wait == 0:
                return True
            if wait >= deadline.remaining():
                return False
            self._sleep(min(wait, MAX_POLL))

    def back_off(self, space_id: str, seconds: float) -> None:
        self._local.back_off(space_id, seconds)
        millis = max(1, int(seconds * 1000))
        self._shared.call(lambda r: r.set(self._pause_key(space_id), 1, px=millis), None)

    def _wait(self, space_id: str) -> float | None:
        """0 when a request may go now (and is counted), else seconds to wait; None: no Redis."""
        paused = self._shared.call(lambda r: r.pttl(self._pause_key(space_id)), None)
        if paused is None:
            return None
        if isinstance(paused, int) and paused > 0:
            return paused / 1000
        taken = self._shared.call(lambda _: self._limiter.hit(self._item, space_id), None)
        if taken is None:
            return None
        if taken:
            return 0.0
        stats = self._shared.call(
            lambda _: self._limiter.get_window_stats(self._item, space_id), None
        )
        return max(0.001, stats.reset_time - time.time()) if stats else MAX_POLL

    def _pause_key(self, space_id: str) -> str:
        return f"{PREFIX}budget:paused:{space_id}"
