"""LocalRateBudget: token buckets on an injected clock."""

from __future__ import annotations

import pytest

from connector.segment.deadline import Deadline
from connector.state.rates import LocalRateBudget
from tests.unit.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def budget(clock: FakeClock, rate: float, burst: float | None = None) -> LocalRateBudget:
    return LocalRateBudget(rate, clock=clock, sleep=clock.sleep, burst=burst)


def takes_now(bucket: LocalRateBudget, key: str = "k", limit: int = 1000) -> int:
    """How many tokens `key`'s bucket gives at this instant."""
    for count in range(limit):
        if bucket.take(key) > 0:
            return count
    return limit


@pytest.mark.parametrize(
    ("rate", "burst", "expected"),
    [(5.0, None, 5), (5.0, 2.0, 2), (2.0, 10.0, 10), (0.5, None, 1), (0.1, 0.2, 1)],
)
def test_a_fresh_bucket_gives_its_burst(
    clock: FakeClock, rate: float, burst: float | None, expected: int
) -> None:
    assert takes_now(budget(clock, rate, burst)) == expected


def test_an_empty_bucket_says_how_long_until_the_next_token(clock: FakeClock) -> None:
    bucket = budget(clock, rate=4.0, burst=1.0)
    assert bucket.take("k") == 0.0
    assert bucket.take("k") == pytest.approx(0.25)
    clock.advance(0.1)
    assert bucket.take("k") == pytest.approx(0.15)
    clock.advance(0.15)
    assert bucket.take("k") == 0.0


def test_refills_at_the_rate_up_to_the_burst(clock: FakeClock) -> None:
    # binary fractions throughout, so that the arithmetic is exact
    bucket = budget(clock, rate=8.0, burst=5.0)
    assert takes_now(bucket) == 5
    clock.advance(0.375)
    assert takes_now(bucket) == 3
    clock.advance(3600)
    assert takes_now(bucket) == 5  # idle time never banks more than the burst


def test_keys_have_their_own_buckets(clock: FakeClock) -> None:
    bucket = budget(clock, rate=1.0, burst=2.0)
    assert takes_now(bucket, "agent:a") == 2
    assert takes_now(bucket, "agent:b") == 2
    assert bucket.take("agent:a") == pytest.approx(1.0)


def test_set_rate_keeps_what_buckets_hold(clock: FakeClock) -> None:
    bucket = budget(clock, rate=1.0, burst=3.0)
    assert takes_now(bucket) == 3
    bucket.set_rate(64.0, burst=64.0)
    # not refilled by the edit: the new rate applies from now on
    assert bucket.take("k") == 1 / 64
    clock.advance(5 / 64)
    assert takes_now(bucket) == 5
    assert (bucket.rate, bucket.burst) == (64.0, 64.0)


def test_set_rate_with_a_smaller_burst_caps_a_full_bucket(clock: FakeClock) -> None:
    bucket = budget(clock, rate=10.0, burst=10.0)
    assert bucket.take("k") == 0.0
    bucket.set_rate(1.0, burst=2.0)
    assert takes_now(bucket) == 2


def test_acquire_sleeps_until_a_token_is_due(clock: FakeClock) -> None:
    bucket = budget(clock, rate=2.0, burst=1.0)
    deadline = Deadline(5.0, clock=clock)
    assert bucket.acquire("spa", deadline)
    assert clock.slept == []
    assert bucket.acquire("spa", deadline)
    assert clock.slept == [pytest.approx(0.5)]


def test_acquire_refuses_without_sleeping_when_the_token_comes_too_late(
    clock: FakeClock,
) -> None:
    bucket = budget(clock, rate=1.0, burst=1.0)
    assert bucket.acquire("spa", Deadline(5.0, clock=clock))
    assert not bucket.acquire("spa", Deadline(0.5, clock=clock))
    assert not bucket.acquire("spa", Deadline(1.0, clock=clock))  # due exactly at the deadline
    assert clock.slept == []


def test_back_off_pauses_the_key_whatever_it_holds(clock: FakeClock) -> None:
    bucket = budget(clock, rate=10.0, burst=10.0)
    bucket.back_off("k", 1.5)
    assert bucket.take("k") == pytest.approx(1.5)
    assert bucket.take("other") == 0.0  # another space is not paused
    bucket.back_off("k", 0.5)  # a shorter pause does not shorten the longer one
    clock.advance(1.5)
    assert takes_now(bucket) == 10
