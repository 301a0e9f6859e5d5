"""The deployment's request budget on a real Redis: several processes together stay within the
space's rate in every second, a 429's pause reaches them all, and Redis down means each falls
back to its own share."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from connector.segment.deadline import Deadline
from connector.state.rates import LocalRateBudget
from connector.state.redis import SharedRedis
from connector.state.shared_rates import SharedRateBudget
from tests.unit.test_shared_tier import CLOSED, REDIS_URL


@pytest.fixture
def shared() -> Iterator[SharedRedis]:
    client = SharedRedis(REDIS_URL)
    client.client.ping()
    yield client
    client.close()


@pytest.fixture
def space() -> str:
    return f"spa_{uuid.uuid4().hex}"


def budget(shared: SharedRedis, rate: float, processes: int = 2) -> SharedRateBudget:
    made = SharedRateBudget(shared, LocalRateBudget(rate / processes))
    made.set_rate(rate)
    return made


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

    def ask(process: SharedRateBudget) -> None:
        while time.monotonic() < until:
            if process.acquire(space, Deadline(0.5)):
                with lock:
                    granted.append(time.time())

    threads = [threading.Thread(target=ask, args=(p,)) for p in processes for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) >= 60  # 20 at once, then 20 each second: the budget is used
    # Times are read after each admission (a few ms late, by thread): 20 ms of allowance.
    assert most_in_window(granted, 0.98) <= 20


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
    process = budget(down, 10, processes=2)  # a share of 5/s, bursts of 5
    started = time.monotonic()
    assert all(process.acquire(space, Deadline(0.05)) for _ in range(5))
    assert process.acquire(space, Deadline(0.05)) is False  # the sixth waits 0.2 s: too long
    assert time.monotonic() - started < 0.5
