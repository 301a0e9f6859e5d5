"""Group commit with real threads: who waits, what goes in one transaction, what an error does."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from connector.writeback.group_commit import GroupCommit

WAIT = 5.0


class Committer:
    """Records each transaction's items; the first one waits until `release` is set."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.groups: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            self.entered.set()
            assert self.release.wait(WAIT)
        if self.fail_on in items:
            raise RuntimeError("disk full")
        return [item * 10 for item in items]


def test_a_lone_item_is_committed_by_its_own_thread_at_once() -> None:
    threads: list[str] = []

    def commit(items: Sequence[int]) -> list[int]:
        threads.append(threading.current_thread().name)
        return [item * 10 for item in items]

    assert GroupCommit(commit).submit(4) == 40
    assert threads == [threading.current_thread().name]


def test_items_arriving_during_a_commit_go_together_in_the_next() -> None:
    committer = Committer()
    group = GroupCommit(committer)
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(group.submit, 0)
        assert committer.entered.wait(WAIT)
        rest = [pool.submit(group.submit, n) for n in range(1, 9)]
        while len(group._queue) < 8:  # every later thread is waiting behind the first commit
            threading.Event().wait(0.001)
        committer.release.set()
        assert first.result(WAIT) == 0
        assert [f.result(WAIT) for f in rest] == [n * 10 for n in range(1, 9)]
    assert committer.groups[0] == [0]
    assert sorted(committer.groups[1]) == list(range(1, 9))  # one transaction for all eight
    assert len(committer.groups) == 2


def test_a_group_is_never_larger_than_the_limit() -> None:
    committer = Committer()
    group = GroupCommit(committer, max_group=3)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(group.submit, 0)
        assert committer.entered.wait(WAIT)
        rest = [pool.submit(group.submit, n) for n in range(1, 8)]
        while len(group._queue) < 7:
            threading.Event().wait(0.001)
        committer.release.set()
        assert [f.result(WAIT) for f in [first, *rest]] == [n * 10 for n in range(8)]
    assert [len(g) for g in committer.groups] == [1, 3, 3, 1]


def test_a_failed_commit_fails_every_item_in_it_and_the_next_group_goes_on() -> None:
    committer = Committer(fail_on=2)
    group = GroupCommit(committer, max_group=2)
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(group.submit, 0)
        assert committer.entered.wait(WAIT)
        rest = {n: pool.submit(group.submit, n) for n in range(1, 5)}
        while len(group._queue) < 4:
            threading.Event().wait(0.001)
        committer.release.set()
        assert first.result(WAIT) == 0
        wait(rest.values(), WAIT)  # every group committed (or failed) before reading them
        failed = next(g for g in committer.groups if 2 in g)
        for n, future in rest.items():
            if n in failed:
                with pytest.raises(RuntimeError, match="disk full"):
                    future.result(WAIT)
            else:
                assert future.result(WAIT) == n * 10
    assert len(failed) == 2  # its companion in that transaction was refused too


def test_many_threads_each_get_their_own_result() -> None:
    def commit(items: Sequence[int]) -> list[int]:
        return [item * 10 for item in items]

    group = GroupCommit(commit)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(group.submit, range(2000)))
    assert results == [n * 10 for n in range(2000)]
