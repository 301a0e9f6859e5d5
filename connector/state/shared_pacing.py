"""The space's request pace for the whole deployment, in Redis.

The same GCRA as `pacing.LocalPacer` (see there why requests are spaced rather than counted in
windows), one step per request in a Lua script so that every instance and worker takes its slot
from one schedule, on Redis's clock. No maintained library offers a reservation on Redis:
`limits` (used for the per-agent limits) counts requests in windows and lets a whole window's
worth go at once. A 429 from Segment pauses every worker for its Retry-After; while Redis is down,
each process paces itself to its share of the rate (its LocalPacer).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.commands.core import Script

from connector.state.pacing import LocalPacer, Pace, Pacer
from connector.state.rates import Deadline
from connector.state.redis import PREFIX, SharedRedis

# KEYS: the space's next due time (ms, Redis's clock), its pause. ARGV: interval, tolerance and
# the longest acceptable wait, all in ms. Returns {1 if a slot was reserved, wait in µs}.
RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {0, paused * 1000} end
local interval, tolerance, longest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local due = tonumber(redis.call('GET', KEYS[1]))
if due == nil or due < now then due = now end
local wait = math.max(0, due - tolerance - now)
if wait > 0 and wait >= longest then return {0, math.floor(wait * 1000)} end
local next_due = due + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_due), 'PX', math.ceil(next_due - now) + 1000)
return {1, math.floor(wait * 1000)}
"""


class SharedPacer(Pacer):
    def __init__(
        self,
        shared: SharedRedis,
        local: LocalPacer,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._shared = shared
        self._local = local
        self._sleep = sleep
        self._script: Script = shared.client.register_script(RESERVE)
        self.pace = Pace.within(100)  # until ProfileApi sets the connection's rate

    def without_schedule(self, space_id: str, deadline: Deadline) -> bool:
        return self._local.acquire(space_id, deadline)  # Redis cannot say: this process's share

    def back_off(self, space_id: str, seconds: float) -> None:
        self._local.back_off(space_id, seconds)
        millis = max(1, int(seconds * 1000))
        self._shared.call(lambda r: r.set(self._pause_key(space_id), 1, px=millis), None)

    def reserve(self, space_id: str, longest: float) -> tuple[float, bool] | None:
        keys = [f"{PREFIX}pace:{space_id}", self._pause_key(space_id)]
        pace = self.pace
        args = [pace.interval * 1000, pace.tolerance * 1000, longest * 1000]
        answer = self._shared.call(lambda r: self._script(keys, args, client=r), None)
        if not isinstance(answer, list):
            return None
        reserved, micros = answer
        return int(micros) / 1_000_000, bool(reserved)

    def paused(self, space_id: str) -> bool:
        paused = self._shared.call(lambda r: r.pttl(self._pause_key(space_id)), None)
        return isinstance(paused, int) and paused > 0

    def _pause_key(self, space_id: str) -> str:
        return f"{PREFIX}budget:paused:{space_id}"
