"""The durable outbox of events for Segment: what every backend does (`OutboxStore`), and the
embedded one, SQLite in WAL mode, shared by every worker process of one machine. The shared one,
for several instances, is PostgreSQL (connector.writeback.postgres_outbox).

An accepted event is committed here before the API answers 202. Drainers claim rows with a lease
(so each row is being sent by one drainer at a time, and a crashed drainer's rows come back when
its lease ends), mark them sent, put them back with a delay, or park them as dead letters.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from connector.writeback.group_commit import GroupCommit
from connector.writeback.ledger import KEEP_LEDGER_DAYS, LedgerEntry, LedgerKeys, LedgerStore
from connector.writeback.ledger_sql import SQLITE, entries, row_values

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',      -- pending | sent | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    done_at REAL,
    subject TEXT  -- the caller's cache key: a delivery makes their cached card out of date
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
"""
# Outbox files written before `subject` existed get the column (and its index) added.
MIGRATIONS = ("ALTER TABLE outbox ADD COLUMN subject TEXT",)
SUBJECT_INDEX = "CREATE INDEX IF NOT EXISTS outbox_subject ON outbox (subject, done_at)"
# A sent row is kept while it serves a purpose: its messageId answers a client's retry as a
# duplicate (rather than sending the event again) within Segment's 24 h de-duplication window,
# and its subject and done_at make cards cached before the delivery out of date (cards are kept
# minutes, not hours). After that it is deleted. Dead letters are kept until an admin retries or
# purges them (`connector outbox --retry-dead | --purge-dead`).
KEEP_SENT_SECONDS = 24 * 3600
KEEP_LEDGER_SECONDS = KEEP_LEDGER_DAYS * 86400


def encode_message(message: Mapping[str, Any]) -> bytes:
    """A message exactly as the drainer sends it, and as its size is checked against Segment's.

    Compact, with non-ASCII escaped: the bytes are the same whether Segment counts what it
    received or re-encodes it (an unescaped "é" is 2 bytes on the wire and 6 once escaped).
    NaN and Infinity are refused (ValueError): they are not JSON, and Segment would refuse them.
    """
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def within_bytes(rows: Sequence[Any], max_bytes: int) -> list[Any]:
    """The first rows (`size` fourth) whose bodies, joined by commas, fit in `max_bytes`; the
    first row always, so that an oversized message is still tried (and refused) alone."""
    chosen: list[Any] = []
    total = 0
    for row in rows:
        if chosen and total + 1 + row[3] > max_bytes:
            break
        total += row[3] + (1 if chosen else 0)
        chosen.append(row)
    return chosen


@dataclass(frozen=True)
class Row:
    id: int
    message_id: str
    body: bytes  # the message as it is sent (see encode_message)
    size: int
    created_at: float
    attempts: int
    subject: str | None = None  # the caller's cache key, as `add` was given it


@dataclass(frozen=True)
class NewRow:
    """A message on its way into the outbox (see `new_row`)."""

    message_id: str
    body: str
    size: int
    created_at: float
    subject: str | None
    ledger: LedgerEntry | None = None  # committed with it (connector.writeback.ledger)


def new_row(
    message: Mapping[str, Any], subject: str | None, now: float, ledger: LedgerEntry | None = None
) -> NewRow:
    body = encode_message(message)
    return NewRow(message["messageId"], body.decode(), len(body), now, subject, ledger)


@dataclass(frozen=True)
class Depth:
    pending: int
    oldest_pending_age: float | None
    sent: int
    dead: int


class OutboxStore(LedgerStore, Protocol):
    """What the writer, the drainer, the card service and `connector outbox` ask of an outbox
    (and of the interaction ledger that lives beside it).

    Times are epoch seconds from the backend's injected clock. A backend that cannot reach its
    storage raises connector.errors.OutboxUnavailable.
    """

    @property
    def location(self) -> str:
        """Where it is, for people (a path; a database URL without its password)."""
        ...

    def add(
        self,
        message: Mapping[str, Any],
        subject: str | None = None,
        ledger: LedgerEntry | None = None,
    ) -> bool: ...

    def delivered_since(self, subjects: Sequence[str], moment: float) -> bool: ...

    def claim(self, max_messages: int, max_bytes: int, lease: float) -> list[Row]: ...

    def mark_sent(self, rows: Sequence[Row]) -> None: ...

    def retry_later(self, rows: Sequence[Row], delay: float, error: str) -> None: ...

    def park(self, rows: Sequence[Row], reason: str) -> None: ...

    def depth(self) -> Depth: ...

    def dead_letters(self, limit: int = 100) -> list[tuple[str, str, float]]: ...

    def retry_dead(self) -> int: ...

    def retry_now(self) -> int: ...

    def purge_dead(self) -> int: ...

    def forget_sent(self, older_than: float = KEEP_SENT_SECONDS) -> int: ...

    def tidy(
        self, older_than: float = KEEP_SENT_SECONDS, keep_ledger: float = KEEP_LEDGER_SECONDS
    ) -> int: ...

    def reachable(self) -> bool:
        """Whether it can take an event now (quickly: for /readyz)."""
        ...

    def close(self) -> None: ...


class WriteLock:
    """One writer at a time on an SQLite file, across the threads and processes that use it.

    SQLite's own lock makes a second writer poll, sleeping up to 100 ms between tries: with two
    gunicorn workers writing at once, some requests waited a second. A lock on a file beside it
    (flock) wakes the next writer as soon as the first is done, and the kernel drops it if its
    holder dies.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _file(self) -> int:
        # A process forked with it open would share its lock: each process opens its own.
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        # Under the threads' lock: another thread may be between its flock and its unlock.
        with self._threads:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


class GroupAdding:
    """`add` as both backends have it: a row joins the group commit of its moment
    (connector.writeback.group_commit); each backend writes a group in `_insert`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._adding: GroupCommit[NewRow, bool] = GroupCommit(self._insert)

    def _insert(self, rows: Sequence[NewRow]) -> list[bool]:
        raise NotImplementedError

    def add(
        self,
        message: Mapping[str, Any],
        subject: str | None = None,
        ledger: LedgerEntry | None = None,
    ) -> bool:
        """Commit a message about `subject`, and its `ledger` row; False when its messageId
        is already here (then neither is added again).

        It returns once the message is committed, in one transaction with the messages other
        threads added at the same moment (connector.writeback.group_commit).
        """
        return self._adding.submit(new_row(message, subject, self._clock(), ledger))


class Outbox(GroupAdding):
    """One connection per thread (sqlite3 connections are not shared across threads)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        super().__init__(clock)
        self._local = threading.local()
        self._write_lock = WriteLock(path.with_name(path.name + ".lock"))
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        with self._write_lock.held():
            db.executescript(SCHEMA)  # idempotent; executescript manages its own commit
            columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
            if "subject" not in columns:
                for statement in MIGRATIONS:
                    db.execute(statement)
            db.execute(SUBJECT_INDEX)
            for statement in SQLITE.schema():
                db.execute(statement)

    @property
    def location(self) -> str:
        return str(self.path)

    def reachable(self) -> bool:
        return True  # a local file: a failure to write it is an error, not an outage

    def close(self) -> None:
        """Close this thread's connection (each thread's closes with it otherwise)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        self._write_lock.close()

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            # Freed pages can be handed back (tidy). It takes only on a new file, and before WAL
            # mode writes the file's first page; files made before keep working, reusing their
            # free pages instead.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an accepted event survives a power cut
            # After each checkpoint the -wal file is cut back to 1 MB, rather than staying at
            # the size of the largest burst it ever held.
            db.execute("PRAGMA journal_size_limit=1048576")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        with self._write_lock.held():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _insert(self, rows: Sequence[NewRow]) -> list[bool]:
        with self._transaction() as db:
            added = []
            for r in rows:
                new = (
                    db.execute(
                        "INSERT OR IGNORE INTO outbox (message_id, body, size, created_at,"
                        " next_attempt_at, subject) VALUES (?, ?, ?, ?, ?, ?)",
                        (r.message_id, r.body, r.size, r.created_at, r.created_at, r.subject),
                    ).rowcount
                    == 1
                )
                if new and r.ledger is not None:
                    db.execute(SQLITE.insert, row_values(r.ledger, r.created_at))
                added.append(new)
            return added

    def record(self, entry: LedgerEntry) -> bool:
        with self._transaction() as db:
            return db.execute(SQLITE.insert, row_values(entry, self._clock())).rowcount == 1

    def interactions(self, keys: LedgerKeys, limit: int) -> list[LedgerEntry]:
        if not keys:
            return []
        sql, params = SQLITE.interactions(keys, limit)
        return entries(self._db().execute(sql, params).fetchall())

    def unlinked(self, subject: str) -> frozenset[str]:
        rows = self._db().execute(SQLITE.unlinked, (subject,)).fetchall()
        return frozenset(segment_id for (segment_id,) in rows)

    def forget_interactions(self, older_than: float) -> int:
        with self._transaction() as db:
            return db.execute(SQLITE.forget, (self._clock() - older_than,)).rowcount

    def delivered_since(self, subjects: Sequence[str], moment: float) -> bool:
        """Whether an event about one of `subjects` (callers' cache keys) reached Segment after
        `moment` (wall clock), or an agent unlinked a profile from one since: either way a card
        cached before is out of date."""
        statement, params = SQLITE.out_of_date("outbox", subjects, moment)
        return self._db().execute(statement, params).fetchone() is not None

    def claim(self, max_messages: int, max_bytes: int, lease: float) -> list[Row]:
        """Due rows, oldest first, within the limits; leased to the caller for `lease` seconds.

        `max_bytes` bounds the rows' bodies and the commas between them, as the drainer joins them.
        """
        now = self._clock()
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, message_id, body, size, created_at, attempts, subject FROM outbox"
                " WHERE state = 'pending' AND next_attempt_at <= ? AND lease_until <= ?"
                " ORDER BY id LIMIT ?",
                (now, now, max_messages),
            ).fetchall()
            chosen = within_bytes(rows, max_bytes)
            db.executemany(
                "UPDATE outbox SET lease_until = ?, attempts = attempts + 1 WHERE id = ?",
                [(now + lease, row[0]) for row in chosen],
            )
        # Rows queued by versions before encode_message hold unescaped UTF-8: their size was
        # measured on those same bytes, which are sent as they are.
        return [Row(r[0], r[1], r[2].encode(), r[3], r[4], r[5] + 1, r[6]) for r in chosen]

    def mark_sent(self, rows: Sequence[Row]) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'sent', done_at = ?, last_error = NULL,"
                " body = '{}' WHERE id = ?",
                [(self._clock(), r.id) for r in rows],
            )

    def retry_later(self, rows: Sequence[Row], delay: float, error: str) -> None:
        due = self._clock() + delay
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET next_attempt_at = ?, lease_until = 0,"
                " last_error = ? WHERE id = ?",
                [(due, error, r.id) for r in rows],
            )

    def park(self, rows: Sequence[Row], reason: str) -> None:
        """Dead letters: kept with their reason for `connector outbox` to retry or purge."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET state = 'dead', done_at = ?, lease_until = 0,"
                " last_error = ? WHERE id = ?",
                [(self._clock(), reason, r.id) for r in rows],
            )

    def depth(self) -> Depth:
        db = self._db()
        counts = dict(db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        oldest = db.execute(
            "SELECT MIN(created_at) FROM outbox WHERE state = 'pending'"
        ).fetchone()[0]
        return Depth(
            counts.get("pending", 0),
            self._clock() - oldest if oldest else None,
            counts.get("sent", 0),
            counts.get("dead", 0),
        )

    def dead_letters(self, limit: int = 100) -> list[tuple[str, str, float]]:
        """(messageId, reason, parked at) of the most recent dead letters."""
        rows = (
            self._db()
            .execute(
                "SELECT message_id, last_error, done_at FROM outbox WHERE state = 'dead'"
                " ORDER BY done_at DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [(m, e or "", d) for m, e, d in rows]

    def retry_dead(self) -> int:
        with self._transaction() as db:
            return db.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?,"
                " attempts = 0 WHERE state = 'dead'",
                (self._clock(),),
            ).rowcount

    def retry_now(self) -> int:
        """Make every pending message due now (after an outage is known to be over)."""
        with self._transaction() as db:
            return db.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending'"
                " AND next_attempt_at > ?",
                (self._clock(), self._clock()),
            ).rowcount

    def purge_dead(self) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM outbox WHERE state = 'dead'").rowcount

    def forget_sent(self, older_than: float = KEEP_SENT_SECONDS) -> int:
        """Drop rows sent more than `older_than` seconds ago (see KEEP_SENT_SECONDS)."""
        with self._transaction() as db:
            return db.execute(
                "DELETE FROM outbox WHERE state = 'sent' AND done_at < ?",
                (self._clock() - older_than,),
            ).rowcount

    def tidy(
        self, older_than: float = KEEP_SENT_SECONDS, keep_ledger: float = KEEP_LEDGER_SECONDS
    ) -> int:
        """Forget old sent rows and ledger rows past their keeping time, and give the space
        back; the number of rows deleted.

        Without this the file grows with every event (10,000 left 8 MB), and the -wal file
        keeps the size of the largest burst it ever held.
        """
        forgotten = self.forget_sent(older_than) + self.forget_interactions(keep_ledger)
        db = self._db()
        with self._write_lock.held():
            # executescript runs it to the end; execute() would free a single page.
            db.executescript("PRAGMA incremental_vacuum;")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # a busy reader: next time
        return forgotten

    def file_bytes(self) -> int:
        """The database and its -wal file, in bytes."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())


class LazyOutbox:
    """The outbox, opened on first use: while write-back is off, no file (or pool) is made.

    The outbox opened first serves the process until it ends: an edit that moves `outbox_path`
    applies at the next restart (meanwhile this file's pending events are still sent).
    """

    def __init__(
        self,
        open_store: Callable[[], OutboxStore],
        backend: str = "sqlite",
        exists: Callable[[], bool] | None = None,
    ) -> None:
        self._open = open_store
        self.backend = backend  # sqlite | postgresql
        self._exists = exists  # whether there is one to open (None: always, say a database)
        self._lock = threading.Lock()
        self._outbox: OutboxStore | None = None

    @classmethod
    def sqlite(cls, path: Callable[[], Path], clock: Callable[[], float] = time.time) -> LazyOutbox:
        """The SQLite outbox at `path()` (read when it is first used)."""
        return cls(lambda: Outbox(path(), clock), exists=lambda: path().exists())

    def get(self) -> OutboxStore:
        """The outbox, creating it if there is none yet."""
        outbox = self._outbox
        if outbox is None:
            with self._lock:  # two first requests at once open it once
                if self._outbox is None:
                    self._outbox = self._open()
                outbox = self._outbox
        return outbox

    def opened(self) -> OutboxStore | None:
        """The outbox if something has used it, else None (and nothing is touched)."""
        return self._outbox

    def delivered_since(self, subjects: Sequence[str], moment: float) -> bool:
        return self.get().delivered_since(subjects, moment)

    def existing(self) -> OutboxStore | None:
        """The outbox if there is one, else None without creating it: reads of the ledger
        (every card fetch asks for unlinks) leave no file behind where nothing was written."""
        if self._outbox is None and self._exists is not None and not self._exists():
            return None
        return self.get()

    def unlinked(self, subject: str) -> frozenset[str]:
        """The profiles agents unlinked from `subject` (none where there is no outbox yet)."""
        outbox = self.existing()
        return outbox.unlinked(subject) if outbox is not None else frozenset()

    def close(self) -> None:
        outbox = self._outbox
        if outbox is not None:
            outbox.close()
