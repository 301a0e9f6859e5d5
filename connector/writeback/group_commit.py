"""Group commit: the events that arrive together are committed in one transaction.

Each request thread hands its row to `GroupCommit.submit` and is answered only once the
transaction holding that row has committed, so a 202 still means "durable". The first thread
to find no commit under way leads: it commits everything waiting, its own row included, and
hands the lead to the next waiting thread, whose row (and every row that arrived meanwhile)
goes in the next transaction. Under load, one transaction (one fsync, one round trip to
PostgreSQL) carries many events; alone, a thread commits its own row at once, without a
hand-off to another thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Rows per transaction at most: a long transaction holds the database's write lock (SQLite's
# is the whole file's) while the next group waits.
MAX_GROUP = 256


@dataclass(eq=False)
class _Waiting(Generic[Item, Result]):
    item: Item
    woken: threading.Event = field(default_factory=threading.Event)
    leads: bool = False  # woken to commit the next group, rather than answered
    result: Result | None = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Calls `commit(items)` (one transaction; a result per item, in order) for groups."""

    def __init__(
        self, commit: Callable[[Sequence[Item]], Sequence[Result]], max_group: int = MAX_GROUP
    ) -> None:
        self._commit = commit
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Waiting[Item, Result]] = []
        self._leading = False

    def submit(self, item: Item) -> Result:
        """`item`'s result once it is committed; the commit's exception if it failed."""
        mine: _Waiting[Item, Result] = _Waiting(item)
        with self._lock:
            self._queue.append(mine)
            leads = not self._leading
            self._leading = True
        if not leads:
            mine.woken.wait()
        if not mine.woken.is_set() or mine.leads:
            self._lead()
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[return-value]  # set when no error was

    def _lead(self) -> None:
        with self._lock:
            group = self._queue[: self._max_group]
            del self._queue[: self._max_group]
        try:
            results = self._commit([waiting.item for waiting in group])
            for waiting, result in zip(group, results, strict=True):
                waiting.result = result
        except BaseException as error:  # each thread of the group raises it
            for waiting in group:
                waiting.error = error
        with self._lock:
            if self._queue:
                self._queue[0].leads = True
                self._queue[0].woken.set()
            else:
                self._leading = False
        for waiting in group:
            waiting.woken.set()
