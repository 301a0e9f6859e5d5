"""SingleFlightCache on an injected clock: TTL, LRU, single-flight, stale-on-error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from connector.errors import (
    AuthenticationFailed,
    ProfileApiError,
    RateLimited,
    UpstreamUnavailable,
)
from connector.state.cache import Cached, SingleFlightCache
from tests.unit.fakes import FakeClock

STALE_FOR = 60.0
WAIT = 5.0


@dataclass
class Fetcher:
    """`fetch` for one key: answers (value, ttl) or raises, counting its calls."""

    value: str = "v1"
    ttl: float = 10.0
    error: Exception | None = None
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> tuple[str, float]:
        with self.lock:
            self.calls += 1
        if self.error is not None:
            raise self.error
        return self.value, self.ttl


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> SingleFlightCache[str]:
    return SingleFlightCache(100, clock=clock)


def get(
    cache: SingleFlightCache[str],
    key: str,
    fetch: Callable[[], tuple[str, float]],
    wait: float = WAIT,
    outdated: Callable[[Cached[str]], bool] | None = None,
) -> Cached[str]:
    return cache.get(key, fetch, STALE_FOR, wait, outdated)


def test_a_miss_fetches_and_a_hit_does_not(cache: SingleFlightCache[str]) -> None:
    fetch = Fetcher()
    first = get(cache, "a", fetch)
    second = get(cache, "a", fetch)
    assert (first.value, second.value) == ("v1", "v1")
    assert not first.stale
    assert fetch.calls == 1
    assert (cache.misses, cache.hits, cache.stale_served) == (1, 1, 0)
    assert len(cache) == 1


def test_entries_expire_after_their_ttl(cache: SingleFlightCache[str], clock: FakeClock) -> None:
    fetch = Fetcher(ttl=10.0)
    get(cache, "a", fetch)
    clock.advance(9.9)
    assert cache.peek("a") is not None
    get(cache, "a", fetch)
    assert fetch.calls == 1
    clock.advance(0.1)  # exactly at its expiry: expired
    assert cache.peek("a") is None
    fetch.value = "v2"
    assert get(cache, "a", fetch).value == "v2"
    assert fetch.calls == 2
    assert (cache.misses, cache.hits) == (2, 1)


def test_each_entry_has_its_own_ttl(cache: SingleFlightCache[str], clock: FakeClock) -> None:
    short, long = Fetcher("short", ttl=1.0), Fetcher("long", ttl=100.0)
    get(cache, "s", short)
    get(cache, "l", long)
    clock.advance(50)
    assert cache.peek("s") is None
    peeked = cache.peek("l")
    assert peeked is not None
    assert peeked.value == "long"


def test_peek_neither_fetches_nor_counts(cache: SingleFlightCache[str]) -> None:
    assert cache.peek("a") is None
    get(cache, "a", Fetcher())
    assert cache.peek("a") is not None
    assert (cache.misses, cache.hits) == (1, 0)


def test_the_least_recently_used_entry_is_evicted(clock: FakeClock) -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(2, clock=clock)
    fetches = {key: Fetcher(key) for key in "abc"}
    get(cache, "a", fetches["a"])
    get(cache, "b", fetches["b"])
    get(cache, "a", fetches["a"])  # a is now the most recent
    get(cache, "c", fetches["c"])
    assert len(cache) == 2
    assert cache.peek("b") is None
    assert cache.peek("a") is not None
    assert cache.peek("c") is not None
    get(cache, "b", fetches["b"])
    assert fetches["b"].calls == 2
    assert fetches["a"].calls == 1


def test_forget_and_clear(cache: SingleFlightCache[str]) -> None:
    fetch = Fetcher()
    for key in "abc":
        get(cache, key, fetch)
    cache.forget("a")
    cache.forget("missing")
    assert cache.peek("a") is None
    assert len(cache) == 2
    get(cache, "a", fetch)
    assert fetch.calls == 4
    cache.clear()
    assert len(cache) == 0
    assert cache.peek("b") is None


def test_outdated_forces_a_refetch_of_an_unexpired_entry(cache: SingleFlightCache[str]) -> None:
    fetch = Fetcher()
    get(cache, "a", fetch)
    seen: list[Cached[str]] = []

    def outdated(entry: Cached[str]) -> bool:
        seen.append(entry)
        return entry.value == "v1"

    fetch.value = "v2"
    assert get(cache, "a", fetch, outdated=outdated).value == "v2"
    assert [e.value for e in seen] == ["v1"]
    assert get(cache, "a", fetch, outdated=outdated).value == "v2"  # v2 is not outdated
    assert fetch.calls == 2


# --- stale on error ----------------------------------------------------------------------------


@pytest.mark.parametrize("error", [UpstreamUnavailable("down"), RateLimited("slow")])
def test_an_expired_entry_is_served_stale_while_segment_fails(
    cache: SingleFlightCache[str], clock: FakeClock, error: ProfileApiError
) -> None:
    fetch = Fetcher(ttl=10.0)
    fresh = get(cache, "a", fetch)
    clock.advance(30)
    fetch.error = error
    stale = get(cache, "a", fetch)
    assert stale.stale
    assert stale.value == "v1"
    assert stale.fetched_at == fresh.fetched_at
    assert cache.stale_served == 1
    # a stale answer is not stored: the next request tries Segment again
    get(cache, "a", fetch)
    assert fetch.calls == 3
    assert cache.stale_served == 2


def test_past_stale_for_the_error_is_raised(
    cache: SingleFlightCache[str], clock: FakeClock
) -> None:
    fetch = Fetcher(ttl=10.0)
    get(cache, "a", fetch)
    clock.advance(STALE_FOR + 0.1)  # stale_for counts from when the entry was fetched
    fetch.error = UpstreamUnavailable("down")
    with pytest.raises(UpstreamUnavailable, match="down"):
        get(cache, "a", fetch)
    assert cache.stale_served == 0


def test_no_entry_means_the_error_is_raised(cache: SingleFlightCache[str]) -> None:
    with pytest.raises(RateLimited):
        get(cache, "a", Fetcher(error=RateLimited("slow")))


def test_other_errors_are_never_hidden_by_a_stale_entry(
    cache: SingleFlightCache[str], clock: FakeClock
) -> None:
    fetch = Fetcher(ttl=1.0)
    get(cache, "a", fetch)
    clock.advance(2)
    fetch.error = AuthenticationFailed("token refused")
    with pytest.raises(AuthenticationFailed):
        get(cache, "a", fetch)
    assert cache.stale_served == 0


def test_a_failed_fetch_stores_nothing(cache: SingleFlightCache[str]) -> None:
    fetch = Fetcher(error=UpstreamUnavailable("down"))
    with pytest.raises(UpstreamUnavailable):
        get(cache, "a", fetch)
    fetch.error = None
    assert get(cache, "a", fetch).value == "v1"
    assert fetch.calls == 2


# --- single flight -----------------------------------------------------------------------------


@dataclass
class BlockingFetcher(Fetcher):
    """Holds the fetch open until released, so that others arrive while it is in flight."""

    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self) -> tuple[str, float]:
        self.started.set()
        assert self.release.wait(10), "the test never released the fetch"
        return super().__call__()


def run_threads(count: int, target: Callable[[], object]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_concurrent_misses_make_one_fetch(cache: SingleFlightCache[str]) -> None:
    count = 20
    fetch = BlockingFetcher()
    arrived = threading.Barrier(count + 1)
    results: list[str] = []
    errors: list[BaseException] = []

    def lookup() -> None:
        arrived.wait(10)
        try:
            results.append(get(cache, "a", fetch).value)
        except BaseException as error:
            errors.append(error)

    threads = run_threads(count, lookup)
    arrived.wait(10)  # every thread is about to ask
    assert fetch.started.wait(10)
    # The leader holds the flight while the others (released together) join it.
    threading.Event().wait(0.05)
    fetch.release.set()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert results == ["v1"] * count
    assert fetch.calls == 1
    assert cache.misses == 1


def test_followers_share_the_leaders_error(cache: SingleFlightCache[str]) -> None:
    fetch = BlockingFetcher(error=AuthenticationFailed("token refused"))
    errors: list[BaseException] = []

    def lookup() -> None:
        try:
            get(cache, "a", fetch)
        except BaseException as error:
            errors.append(error)

    leader = run_threads(1, lookup)
    assert fetch.started.wait(10)
    followers = run_threads(3, lookup)
    threading.Event().wait(0.05)
    fetch.release.set()
    for thread in leader + followers:
        thread.join(10)
    assert len(errors) == 4
    assert all(isinstance(e, AuthenticationFailed) for e in errors)
    assert fetch.calls == 1


def test_a_follower_that_waits_too_long_gets_the_stale_entry(
    cache: SingleFlightCache[str], clock: FakeClock
) -> None:
    get(cache, "a", Fetcher("old", ttl=1.0))
    clock.advance(2)
    slow = BlockingFetcher("new")
    leader = run_threads(1, lambda: get(cache, "a", slow))
    assert slow.started.wait(10)
    try:
        answer = get(cache, "a", Fetcher("never"), wait=0.05)
    finally:
        slow.release.set()
        leader[0].join(10)
    assert answer.stale
    assert answer.value == "old"
    assert slow.calls == 1
    assert get(cache, "a", Fetcher("never")).value == "new"


def test_a_follower_that_waits_too_long_without_an_entry_gets_an_error(
    cache: SingleFlightCache[str],
) -> None:
    slow = BlockingFetcher("new")
    leader = run_threads(1, lambda: get(cache, "a", slow))
    assert slow.started.wait(10)
    never = Fetcher("never")
    try:
        with pytest.raises(UpstreamUnavailable, match="in time"):
            get(cache, "a", never, wait=0.05)
    finally:
        slow.release.set()
        leader[0].join(10)
    assert never.calls == 0


def test_flights_of_different_keys_do_not_wait_for_each_other(
    cache: SingleFlightCache[str],
) -> None:
    slow = BlockingFetcher("slow")
    leader = run_threads(1, lambda: get(cache, "a", slow))
    assert slow.started.wait(10)
    try:
        assert get(cache, "b", Fetcher("quick"), wait=0.05).value == "quick"
    finally:
        slow.release.set()
        leader[0].join(10)
