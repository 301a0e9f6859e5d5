"""The space's Profile API budget: requests spaced evenly, with a small burst (GCRA).

Segment counts a space's requests where they arrive. A budget that lets a whole second's worth go
at once (a full token bucket, an empty moving window) keeps to the rate where it admits, yet the
admitted requests reach Segment spread over whatever scheduling and the network add, and overlap
the next second's: under the cold-storm drill (4 instances x 2 workers, a limit of 100/s) a moving
window let up to 122 requests arrive within one second. Spaced admissions do not bunch, and the
pace leaves a margin for what still varies between admission and arrival:

- `burst` requests may go at once (8 at 100/s: one cold card's sections without waiting);
- after that, one request every `interval`, spaced so that any 1.1 s holds at most the rate
  with the burst (one every 12 ms at 100/s, 84/s);
- so any second of arrivals holds at most the rate while each request spends no more than 100 ms
  longer than another between admission and Segment (`test_pacing.py` checks it for many rates).

A request is given a slot (a reservation): it sleeps until its slot, then goes, so waiting
requests neither poll nor overtake each other. `SharedPacer` keeps the same arithmetic in Redis
for a whole deployment.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from connector.state.rates import Deadline

BURST_SHARE = 0.08  # of the rate, admitted at once
IN_FLIGHT_SPREAD = 0.1  # seconds by which requests' trips from admission to Segment may differ


@dataclass(frozen=True)
class Pace:
    interval: float  # seconds between two admissions, once the burst is spent
    burst: int  # admissions beyond the first that may go at once

    @classmethod
    def within(cls, rate: float) -> Pace:
        """The pace that keeps arrivals within `rate` requests in any second."""
        whole = max(1, math.floor(rate))
        burst = min(math.floor(rate * BURST_SHARE), whole - 1)
        # whole - burst admissions at most within 1 s and the spread; 0.1% more keeps float
        # rounding from letting one more in
        steady = (1 + IN_FLIGHT_SPREAD) / (whole - burst) * 1.001
        return cls(interval=max(steady, 1 / rate), burst=burst)

    @property
    def tolerance(self) -> float:
        """How far ahead of the steady pace a request may go (the burst, in seconds)."""
        return self.burst * self.interval

    def most_arriving_in_one_second(self) -> int:
        """The most requests this pace lets arrive within one second (the bound stated above)."""
        return math.floor((1 + IN_FLIGHT_SPREAD) / self.interval) + 1 + self.burst


def reserve(
    due: float | None, now: float, pace: Pace, longest: float
) -> tuple[float, float | None]:
    """One GCRA step, given a key's `due` time: (the wait before the slot, the next `due`).

    A wait of `longest` or more reserves nothing (the caller gives up): the next `due` is then
    None. A free slot is always taken, whatever `longest`.
    """
    due = now if due is None or due < now else due
    wait = due - pace.tolerance - now
    wait = 0.0 if wait < 1e-6 else wait  # below a microsecond: float residue of the sums
    if wait > 0 and wait >= longest:
        return wait, None
    return wait, due + pace.interval


class Pacer:
    """Taking a slot: the loop both pacers share (a RateBudget); they say how slots are kept."""

    pace: Pace
    _sleep: Callable[[float], None]

    def set_rate(self, rate: float) -> None:
        """A new pace from now on; slots already given stay given."""
        self.pace = Pace.within(rate)

    def acquire(self, space_id: str, deadline: Deadline) -> bool:
        while True:
            answer = self.reserve(space_id, deadline.remaining())
            if answer is None:
                return self.without_schedule(space_id, deadline)
            wait, reserved = answer
            if not reserved:  # paused after a 429, or no slot before the deadline
                if wait >= deadline.remaining():
                    return False
                self._sleep(wait)
                continue
            if wait > 0:
                self._sleep(wait)
                if self.paused(space_id):
                    continue  # a 429 came while this request waited for its slot
            return True

    def reserve(self, key: str, longest: float) -> tuple[float, bool] | None:
        """(seconds until `key`'s next slot, whether it was reserved); None: no schedule."""
        raise NotImplementedError

    def paused(self, key: str) -> bool:
        raise NotImplementedError

    def without_schedule(self, space_id: str, deadline: Deadline) -> bool:
        """What to do when the schedule cannot be read."""
        return False


class LocalPacer(Pacer):
    """The pace of one process (its share of the space's rate), shared by its threads."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pace = Pace.within(rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._due: dict[str, float] = {}
        self._paused_until: dict[str, float] = {}

    def back_off(self, space_id: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._paused_until[space_id] = max(until, self._paused_until.get(space_id, 0.0))

    def reserve(self, key: str, longest: float) -> tuple[float, bool]:
        with self._lock:
            now = self._clock()
            paused = self._paused_until.get(key, 0.0) - now
            if paused > 0:
                return paused, False
            wait, due = reserve(self._due.get(key), now, self.pace, longest)
            if due is None:
                return wait, False
            self._due[key] = due
            return wait, True

    def paused(self, key: str) -> bool:
        with self._lock:
            return self._paused_until.get(key, 0.0) > self._clock()

    def in_use(self, key: str) -> float:
        """Slots of `key`'s pace reserved ahead of now: 0 when idle, up to `burst` + 1 when the
        burst is spent, more when requests queue for slots (/metrics' budget in use)."""
        with self._lock:
            due, now = self._due.get(key), self._clock()
        return 0.0 if due is None or due <= now else (due - now) / self.pace.interval
