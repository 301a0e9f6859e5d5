"""LocalPacer: the space's requests spaced evenly after a small burst, on an injected clock."""

from __future__ import annotations

import random

import pytest

from connector.segment.deadline import Deadline
from connector.state.pacing import IN_FLIGHT_SPREAD, LocalPacer, Pace
from tests.unit.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def most_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    first, most = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= width:
            first += 1
        most = max(most, last - first + 1)
    return most


RATES = [1, 1.5, 2, 3, 5, 7, 10, 12.5, 20, 33, 50, 99, 100, 101, 250, 1000, 5000]


@pytest.mark.parametrize("rate", RATES)
def test_the_stated_bound_keeps_every_rate(rate: float) -> None:
    assert Pace.within(rate).most_arriving_in_one_second() <= rate


@pytest.mark.parametrize("rate", [5.0, 20.0, 100.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_admissions_within_a_second_and_the_spread_stay_under_the_rate(
    clock: FakeClock, rate: float, seed: int
) -> None:
    """Callers arriving at random, in crowds and alone: whatever lands within 1 s plus the spread
    of trips to Segment is within the rate, so what arrives there within any second is too."""
    pacer = LocalPacer(rate, clock=clock)
    shuffle = random.Random(seed)
    admitted: list[float] = []
    for _ in range(int(rate * 6)):
        clock.advance(shuffle.choice([0.0, 0.0, 0.001, 0.2 / rate, 3 / rate]))
        wait, reserved = pacer.reserve("spa", 30.0)
        assert reserved
        admitted.append(clock() + wait)
    assert most_in_window(admitted, 1 + IN_FLIGHT_SPREAD) <= rate
    assert admitted[-1] - admitted[0] < 6 / 0.8  # and the rate is used: more than 80% of it


def test_a_burst_goes_at_once_then_one_request_per_interval(clock: FakeClock) -> None:
    pacer = LocalPacer(100, clock=clock)
    pace = pacer.pace
    assert pace.burst == 8
    waits = [pacer.reserve("spa", 5.0)[0] for _ in range(12)]
    assert waits[:9] == [0.0] * 9  # the first and its burst: one cold card's sections
    assert waits[9:] == pytest.approx([pace.interval, 2 * pace.interval, 3 * pace.interval])


def test_idle_time_never_banks_more_than_the_burst(clock: FakeClock) -> None:
    pacer = LocalPacer(100, clock=clock)
    clock.advance(3600)
    waits = [pacer.reserve("spa", 5.0)[0] for _ in range(10)]
    assert waits.count(0.0) == 9


def test_acquire_sleeps_until_its_slot(clock: FakeClock) -> None:
    pacer = LocalPacer(5, clock=clock, sleep=clock.sleep)  # no burst at 5/s
    deadline = Deadline(5.0, clock=clock)
    assert pacer.acquire("spa", deadline) and pacer.acquire("spa", deadline)
    assert clock.slept == [pytest.approx(pacer.pace.interval)]


def test_a_slot_past_the_deadline_refuses_at_once_and_is_not_taken(clock: FakeClock) -> None:
    pacer = LocalPacer(1, clock=clock, sleep=clock.sleep)  # one slot every 1.1 s
    assert pacer.acquire("spa", Deadline(5.0, clock=clock))
    assert not pacer.acquire("spa", Deadline(1.0, clock=clock))
    assert clock.slept == []
    # the refused request took no slot
    assert pacer.reserve("spa", 5.0) == pytest.approx((pacer.pace.interval, True))


def test_spaces_have_their_own_pace(clock: FakeClock) -> None:
    pacer = LocalPacer(1, clock=clock)
    assert pacer.reserve("spa_a", 5.0) == (0.0, True)
    assert pacer.reserve("spa_b", 5.0) == (0.0, True)


def test_back_off_pauses_the_space_whatever_its_pace(clock: FakeClock) -> None:
    pacer = LocalPacer(100, clock=clock, sleep=clock.sleep)
    pacer.back_off("spa", 1.5)
    assert pacer.reserve("spa", 5.0) == pytest.approx((1.5, False))
    assert pacer.reserve("other", 5.0) == (0.0, True)
    assert not pacer.acquire("spa", Deadline(1.0, clock=clock))  # the pause outlasts it
    assert pacer.acquire("spa", Deadline(2.0, clock=clock))
    assert clock.slept == [pytest.approx(1.5)]


def test_a_request_woken_inside_a_pause_waits_for_its_end(clock: FakeClock) -> None:
    pacer = LocalPacer(5, clock=clock)

    def sleep_while_a_429_arrives(seconds: float) -> None:
        clock.slept.append(seconds)
        if len(clock.slept) == 1:
            pacer.back_off("spa", 2.0)  # another thread's request was refused meanwhile
        clock.advance(seconds)

    pacer._sleep = sleep_while_a_429_arrives
    assert pacer.reserve("spa", 5.0)[1]  # the burst is spent: the next waits for a slot
    started = clock()
    assert pacer.acquire("spa", Deadline(5.0, clock=clock))
    assert clock() - started >= 2.0


def test_set_rate_changes_the_pace_from_now_on(clock: FakeClock) -> None:
    pacer = LocalPacer(1, clock=clock)
    assert pacer.reserve("spa", 5.0) == (0.0, True)
    # the slot already given stays given: the next comes after it, then the new pace applies
    slot = pacer.pace.interval
    pacer.set_rate(100)
    wait, _ = pacer.reserve("spa", 5.0)
    assert wait == pytest.approx(slot - pacer.pace.tolerance)
