"""Which callers had an event delivered to Segment, and when: their cached cards are then out of
date in every worker and instance.

The drainer notes each delivered batch's callers in Redis (under digests: no phone number or
email in a key), and a card read from the shared tier is checked against them. Without Redis, or
while it is down, the outbox itself is asked, as the embedded default does.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

from redis import Redis

from connector.state.redis import PREFIX, SharedRedis

KEEP = 3600  # seconds a delivery is remembered: longer than any card is kept, stale included
KEYS = f"{PREFIX}delivered:"
# Whether an event about one of these callers (cache keys) reached Segment after a moment.
DeliveredSince = Callable[[Sequence[str], float], bool]


def _key(subject: str) -> str:
    return KEYS + hashlib.sha256(subject.encode()).hexdigest()[:32]


class SharedDeliveries:
    def __init__(self, shared: SharedRedis, fallback: DeliveredSince) -> None:
        self._shared = shared
        self._fallback = fallback

    def note(self, subjects: list[str]) -> None:
        """Events about these callers reached Segment now."""
        if not subjects:
            return
        now = str(time.time())

        def write(client: Redis) -> None:
            pipe = client.pipeline(transaction=False)
            for subject in subjects:
                pipe.set(_key(subject), now, ex=KEEP)
            pipe.execute()

        self._shared.call(write, None)

    def since(self, subjects: Sequence[str], moment: float) -> bool:
        """Whether an event about one of `subjects` reached Segment after `moment` (wall
        clock): one round trip, whatever their number."""
        keys = [_key(subject) for subject in subjects]
        raws: object = self._shared.call(lambda r: r.mget(keys), None)
        if not isinstance(raws, list):
            return self._fallback(subjects, moment)  # Redis cannot say: the outbox can
        return any(isinstance(raw, bytes | str) and float(raw) > moment for raw in raws)
