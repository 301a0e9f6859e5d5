"""The deployment's request pace on a real Redis: several processes together take their slots from
one schedule (within the space's rate in every second, with room for the trip to Segment), a
429's pause reaches them all, and Redis down means each falls back to its own share."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from connector.segment.deadline import Deadline
from connector.state.pacing import IN_FLIGHT_SPREAD, LocalPacer
from connector.state.redis import SharedRedis
from connector.state.shared_pacing import SharedPacer
from tests.conftest import REDIS_URL
from tests.unit.test_shared_tier import CLOSED


@pytest.fixture
def shared() -> Iterator[SharedRedis]:
    client = SharedRedis(REDIS_URL)
    client.client.ping()
    yield client
    client.close()


@pytest.fixture
def space() -> str:
    return f"spa_{uuid.uuid4().hex}"


def budget(shared: SharedRedis, rate: float, processes: int = 2) -> SharedPacer:
    made = SharedPacer(shared, LocalPacer(rate / processes))
    made.set_rate(rate)
    return made


def slot(pacer: SharedPacer, space: str, longest: float) -> tuple[float, bool]:
    """(the wait, whether a slot was reserved), Redis answering."""
    answer = pacer.reserve(space, longest)
    assert answer is not None
    return answer


def most_in_window(times: list[float], width: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t - start < width) for i, start in enumerate(times))


def test_processes_together_stay_within_the_rate_in_every_second(
    shared: SharedRedis, space: str
) -> None:
    processes = [budget(shared, 20), budget(shared, 20)]
    granted: list[float] = []
    lock = threading.Lock()
    until = time.monotonic() + 2.5

    def ask(process: SharedPacer) -> None:
        while time.monotonic() < until:
            if process.acquire(space, Deadline(0.5)):
                with lock:
                    granted.append(time.time())

    threads = [threading.Thread(target=ask, args=(p,)) for p in processes for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) >= 40  # 2 at once, then 17/s: the budget is used
    # Whatever was admitted within a second and the spread of trips to Segment is within the
    # rate (times are read after each admission, a few ms late by thread: 20 ms of allowance).
    assert most_in_window(granted, 1 + IN_FLIGHT_SPREAD - 0.02) <= 20


def test_slots_are_spaced_not_bunched(shared: SharedRedis, space: str) -> None:
    """A crowd asking at once gets the burst at once, then one slot per interval, in order."""
    pacer = budget(shared, 100)
    waits = [slot(pacer, space, 5.0) for _ in range(20)]
    assert all(reserved for _, reserved in waits)
    seconds = [wait for wait, _ in waits]
    assert seconds[:9] == [0.0] * 9
    gaps = [later - earlier for earlier, later in itertools.pairwise(seconds[9:])]
    assert all(abs(gap - pacer.pace.interval) < 0.002 for gap in gaps)  # Redis's clock moves


def test_a_slot_past_the_deadline_is_refused_and_not_taken(shared: SharedRedis, space: str) -> None:
    pacer = budget(shared, 1)  # one slot every 1.1 s
    assert slot(pacer, space, 5.0) == (0.0, True)
    wait, reserved = slot(pacer, space, 0.5)
    assert not reserved and wait > 0.9
    wait, reserved = slot(pacer, space, 5.0)
    assert reserved and wait < 1.11


def test_a_pause_after_a_429_reaches_every_process(shared: SharedRedis, space: str) -> None:
    first, second = budget(shared, 100), budget(shared, 100)
    first.back_off(space, 0.3)
    started = time.monotonic()
    assert second.acquire(space, Deadline(2.0))
    assert time.monotonic() - started >= 0.25


def test_a_pause_longer_than_the_deadline_refuses_at_once(shared: SharedRedis, space: str) -> None:
    first, second = budget(shared, 100), budget(shared, 100)
    first.back_off(space, 5.0)
    started = time.monotonic()
    assert second.acquire(space, Deadline(1.0)) is False
    assert time.monotonic() - started < 0.2


def test_with_redis_down_each_process_takes_its_share(space: str) -> None:
    down = SharedRedis(CLOSED)
    process = budget(down, 10, processes=2)  # a share of 5/s: one slot every 0.22 s, no burst
    started = time.monotonic()
    assert process.acquire(space, Deadline(0.05))
    assert process.acquire(space, Deadline(0.05)) is False  # the second waits 0.22 s: too long
    assert process.acquire(space, Deadline(0.5))
    assert time.monotonic() - started < 0.5


def test_a_request_woken_inside_a_pause_waits_for_its_end(shared: SharedRedis, space: str) -> None:
    other = budget(shared, 5)

    def sleep_while_a_429_arrives(seconds: float) -> None:
        if not slept:
            other.back_off(space, 0.5)  # another worker's request was refused meanwhile
        slept.append(seconds)
        time.sleep(seconds)

    slept: list[float] = []
    pacer = SharedPacer(shared, LocalPacer(5), sleep=sleep_while_a_429_arrives)
    pacer.set_rate(5)
    assert pacer.acquire(space, Deadline(2.0))  # no burst at 5/s: the next waits for a slot
    started = time.monotonic()
    assert pacer.acquire(space, Deadline(2.0))
    assert time.monotonic() - started >= 0.45
    assert len(slept) == 2  # its slot, then what was left of the pause
