"""A request's deadline: what is left of the time a lookup may take, from when it arrived."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    """A point in time a whole lookup must finish by, retries included."""

    def __init__(
        self,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        """`started` (on `clock`'s scale) is when the request arrived, if it waited for a thread."""
        self._clock = clock
        self.expires_at = (clock() if started is None else started) + seconds

    def remaining(self) -> float:
        return max(0.0, self.expires_at - self._clock())

    def share(self, fraction: float) -> Deadline:
        """A deadline `fraction` of the way from now to this one."""
        return Deadline(self.remaining() * fraction, clock=self._clock)

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0
