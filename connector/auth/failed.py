"""Failed authentications per client address.

Past `limit` failures in a minute, an address is refused at once (429 with Retry-After) until its
window ends: a client cycling through junk tokens or forged signatures costs neither Twilio's
token check nor our threads, and a guesser gets a handful of tries a minute. Legitimate callers
rarely fail at all, so the limit never touches them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cachetools import TTLCache

WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 100_000  # bounded: a spread-out attack cannot grow memory without end


class FailedAuthentications:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        # address -> [failures, when the window started]; mutated in place, so a failure does
        # not push the window's end further out.
        self._windows: TTLCache[str, list[float]] = TTLCache(
            MAX_ADDRESSES, ttl=WINDOW_SECONDS, timer=clock
        )

    def wait(self, address: str, limit: float) -> float:
        """Seconds until `address` may try again; 0 when it may try now."""
        with self._lock:
            window = self._windows.get(address)
            if window is None or window[0] < limit:
                return 0.0
            return max(0.0, window[1] + WINDOW_SECONDS - self._clock())

    def record(self, address: str) -> None:
        with self._lock:
            window = self._windows.get(address)
            if window is None:
                self._windows[address] = [1.0, self._clock()]
            else:
                window[0] += 1
