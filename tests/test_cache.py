"""The card cache's single flight when the leader's fetch outlives a follower's deadline."""

from __future__ import annotations

import threading

import pytest

from connector.errors import UpstreamUnavailable
from connector.state.cache import SingleFlightCache


def slow_leader(cache: SingleFlightCache[str], release: threading.Event) -> threading.Thread:
    """A leader fetching `k` until `release` is set."""

    def fetch() -> tuple[str, float]:
        release.wait(5)
        return "fresh", 60.0

    leader = threading.Thread(target=lambda: cache.get("k", fetch, 60.0, 5.0))
    leader.start()
    while not cache._flights:  # the leader holds the flight
        pass
    return leader


def test_a_follower_past_its_deadline_gets_a_typed_error_not_a_crash() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(10)
    release = threading.Event()
    leader = slow_leader(cache, release)
    try:
        with pytest.raises(UpstreamUnavailable):
            cache.get("k", lambda: ("never", 60.0), 60.0, 0.1)
    finally:
        release.set()
        leader.join()
    assert cache.get("k", lambda: ("never", 60.0), 60.0, 0.1).value == "fresh"


def test_a_follower_past_its_deadline_is_served_the_stale_entry() -> None:
    clock = [0.0]
    cache: SingleFlightCache[str] = SingleFlightCache(10, clock=lambda: clock[0])
    cache.get("k", lambda: ("old", 1.0), 60.0, 1.0)
    clock[0] = 2.0  # expired, within stale_for
    release = threading.Event()
    leader = slow_leader(cache, release)
    try:
        stale = cache.get("k", lambda: ("never", 60.0), 60.0, 0.1)
    finally:
        release.set()
        leader.join()
    assert stale.value == "old" and stale.stale
