"""The outbox in PostgreSQL, for several instances (`DATABASE_URL`): every instance accepts
events into one table and drains it.

The same rows and the same semantics as the SQLite outbox (connector.writeback.outbox), times
included: epoch seconds from the injected clock, stored as double precision. Drainers lease rows
with `SELECT ... FOR UPDATE SKIP LOCKED` in one transaction, so two instances never claim the same
row and neither waits for the other. Each process keeps a small pool; when the database cannot be
reached an operation fails within the pool's timeout with OutboxUnavailable (a 503 for an event),
and the pool reconnects by itself once the database is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from connector.errors import OutboxUnavailable
from connector.writeback.ledger import LedgerEntry, LedgerKeys
from connector.writeback.ledger_sql import POSTGRES, entries, row_values
from connector.writeback.outbox import (
    KEEP_LEDGER_SECONDS,
    KEEP_SENT_SECONDS,
    Depth,
    GroupAdding,
    NewRow,
    Row,
    within_bytes,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

TABLE = "connector_outbox"
SCHEMA = (
    # Instances starting together create the table once (CREATE ... IF NOT EXISTS alone can
    # still collide in PostgreSQL's catalogue).
    "SELECT pg_advisory_xact_lock(7243001)",
    """CREATE TABLE IF NOT EXISTS connector_outbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
        last_error TEXT,
        done_at DOUBLE PRECISION,
        subject TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS connector_outbox_due ON connector_outbox (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS connector_outbox_subject ON connector_outbox (subject, done_at)",
    *POSTGRES.schema(),
)
POOL_MAX = 4  # per process: the event threads and the drainer; PostgreSQL's slots are few
POOL_TIMEOUT = 3.0  # waiting for a connection (a down database): well under Studio's 10 s
CONNECT_TIMEOUT = 3  # seconds, libpq's connect_timeout
LOOKUP_TIMEOUT = 1.0  # a card lookup asking whether its card is out of date waits no longer
# After a failure, operations fail at once for this long instead of each waiting out the pool's
# timeout (a burst of events during an outage is answered 503 without queueing up).
FAIL_FAST_SECONDS = 1.0
RECONNECT_TIMEOUT = 10.0  # the pool's background retries; after them it retries when asked
SCHEMES = ("postgres://", "postgresql://")


def database_url(environ: Mapping[str, str]) -> str | None:
    """The PostgreSQL URL the outbox lives in (`DATABASE_URL`), or None for SQLite.

    Heroku gives `postgres://`; libpq takes it, and it is written `postgresql://` here.
    A DATABASE_URL that is not PostgreSQL's is not ours: the outbox stays in SQLite.
    """
    url = environ.get("DATABASE_URL", "").strip()
    if not url.startswith(SCHEMES):
        if url:
            log.warning(
                "DATABASE_URL is not a PostgreSQL URL (%s...); the outbox stays in SQLite",
                url.partition(":")[0],
            )
        return None
    return "postgresql://" + url.partition("://")[2]


def redacted(url: str) -> str:
    """The URL without its password, for logs and people."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    query = "&".join(
        "password=***" if field.lower().startswith("password=") else field
        for field in parts.query.split("&")
    )
    return urlunsplit(parts._replace(query=query))


class PostgresOutbox(GroupAdding):
    """The outbox in PostgreSQL's `connector_outbox` table (in the URL's search_path)."""

    def __init__(
        self,
        url: str,
        clock: Callable[[], float] = time.time,
        pool_timeout: float = POOL_TIMEOUT,
    ) -> None:
        self.url = url
        super().__init__(clock)
        self._pool_timeout = pool_timeout
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._down_until = 0.0
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_MAX,
            timeout=pool_timeout,
            reconnect_timeout=RECONNECT_TIMEOUT,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            name="outbox",
            open=True,  # in the background: a down database does not stop the start
        )

    @property
    def location(self) -> str:
        return redacted(self.url)

    def close(self) -> None:
        self._pool.close()

    # --- connections -----------------------------------------------------------------------

    @contextmanager
    def _connection(self, timeout: float) -> Iterator[psycopg.Connection[Any]]:
        if time.monotonic() < self._down_until:
            raise OutboxUnavailable("the outbox database failed a moment ago")
        try:
            with self._pool.connection(timeout=timeout) as conn:
                if not self._schema_ready:
                    self._create_schema(conn)
                yield conn
        except PoolTimeout as error:
            self._failed(f"no connection to the outbox database within {timeout:.0f}s")
            raise OutboxUnavailable("no connection within the pool's timeout") from error
        except psycopg.OperationalError as error:
            self._failed(f"the outbox database failed ({type(error).__name__})")
            raise OutboxUnavailable(type(error).__name__) from error

    def _failed(self, what: str) -> None:
        self._down_until = time.monotonic() + FAIL_FAST_SECONDS
        log.warning("%s: %s", what, redacted(self.url))

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            with conn.transaction():
                for statement in SCHEMA:
                    conn.execute(statement)
            self._schema_ready = True

    def _run(self, work: Callable[[psycopg.Connection[Any]], T], timeout: float | None = None) -> T:
        """`work` in one transaction; once more on a fresh connection if a pooled one had died
        (the database restarted since it was last used). Every operation is safe to repeat."""
        timeout = self._pool_timeout if timeout is None else min(timeout, self._pool_timeout)
        try:
            with self._connection(timeout) as conn, conn.transaction():
                return work(conn)
        except OutboxUnavailable as error:
            cause = error.__cause__
            if isinstance(cause, PoolTimeout) or not isinstance(cause, psycopg.OperationalError):
                raise
        self._down_until = 0.0
        with self._connection(timeout) as conn, conn.transaction():
            return work(conn)

    # --- the outbox ------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the table is there (`connector outbox` looks without creating it)."""
        if time.monotonic() < self._down_until:
            raise OutboxUnavailable("the outbox database failed a moment ago")
        try:
            with self._pool.connection(timeout=POOL_TIMEOUT) as conn:
                found = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
        except (PoolTimeout, psycopg.OperationalError) as error:
            raise OutboxUnavailable(type(error).__name__) from error
        return found is not None and found[0] is not None

    def reachable(self) -> bool:
        try:
            self._run(lambda conn: conn.execute("SELECT 1"), LOOKUP_TIMEOUT)
        except OutboxUnavailable:
            return False
        return True

    def _insert(self, rows: Sequence[NewRow]) -> list[bool]:
        def insert(conn: psycopg.Connection[Any]) -> set[str]:
            cursor = conn.execute(
                "INSERT INTO connector_outbox (message_id, body, size, created_at, next_attempt_at,"
                " subject) SELECT m, b, s, c, c, j FROM unnest(%s::text[], %s::text[],"
                " %s::int[], %s::float8[], %s::text[]) AS t(m, b, s, c, j)"
                " ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
                (
                    [r.message_id for r in rows],
                    [r.body for r in rows],
                    [r.size for r in rows],
                    [r.created_at for r in rows],
                    [r.subject for r in rows],
                ),
            )
            inserted = {found for (found,) in cursor.fetchall()}
            # Ledger rows of the messages that are new, in the same transaction.
            ledger = [
                row_values(r.ledger, r.created_at)
                for r in _first_of_each(rows)
                if r.ledger is not None and r.message_id in inserted
            ]
            if ledger:
                with conn.cursor() as many:
                    many.executemany(POSTGRES.insert, ledger)
            return inserted

        inserted = self._run(insert)  # committed when _run returns
        # A messageId twice in one group was inserted once: the first of them is the new one.
        results = []
        for row in rows:
            results.append(row.message_id in inserted)
            inserted.discard(row.message_id)
        return results

    def record(self, entry: LedgerEntry) -> bool:
        def insert(conn: psycopg.Connection[Any]) -> bool:
            return conn.execute(POSTGRES.insert, row_values(entry, self._clock())).rowcount == 1

        return self._run(insert)

    def interactions(self, keys: LedgerKeys, limit: int) -> list[LedgerEntry]:
        if not keys:
            return []
        sql, params = POSTGRES.interactions(keys, limit)
        return entries(self._run(lambda conn: conn.execute(sql, params).fetchall()))

    def unlinked(self, subject: str) -> frozenset[str]:
        rows = self._run(
            lambda conn: conn.execute(POSTGRES.unlinked, (subject,)).fetchall(), LOOKUP_TIMEOUT
        )
        return frozenset(segment_id for (segment_id,) in rows)

    def forget_interactions(self, older_than: float) -> int:
        return self._update(POSTGRES.forget, (self._clock() - older_than,))

    def delivered_since(self, subjects: Sequence[str], moment: float) -> bool:
        def ask(conn: psycopg.Connection[Any]) -> bool:
            statement, params = POSTGRES.out_of_date("connector_outbox", subjects, moment)
            return conn.execute(statement, params).fetchone() is not None

        return self._run(ask, LOOKUP_TIMEOUT)

    def claim(self, max_messages: int, max_bytes: int, lease: float) -> list[Row]:
        """Due rows, oldest first, within the limits; leased to the caller for `lease` seconds.

        Rows another drainer is claiming at this moment are skipped, not waited for.
        """
        now = self._clock()

        def lease_rows(conn: psycopg.Connection[Any]) -> list[Any]:
            rows = conn.execute(
                "SELECT id, message_id, body, size, created_at, attempts, subject"
                " FROM connector_outbox"
                " WHERE state = 'pending' AND next_attempt_at <= %s AND lease_until <= %s"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, now, max_messages),
            ).fetchall()
            chosen = within_bytes(rows, max_bytes)
            if chosen:
                conn.execute(
                    "UPDATE connector_outbox SET lease_until = %s, attempts = attempts + 1"
                    " WHERE id = ANY(%s)",
                    (now + lease, [row[0] for row in chosen]),
                )
            return chosen

        chosen = self._run(lease_rows)
        return [Row(r[0], r[1], r[2].encode(), r[3], r[4], r[5] + 1, r[6]) for r in chosen]

    def _update(self, sql: str, params: tuple[Any, ...]) -> int:
        def update(conn: psycopg.Connection[Any]) -> int:
            return conn.execute(sql, params).rowcount

        return self._run(update)

    def mark_sent(self, rows: Sequence[Row]) -> None:
        self._update(
            "UPDATE connector_outbox SET state = 'sent', done_at = %s, last_error = NULL,"
            " body = '{}' WHERE id = ANY(%s)",
            (self._clock(), [r.id for r in rows]),
        )

    def retry_later(self, rows: Sequence[Row], delay: float, error: str) -> None:
        self._update(
            "UPDATE connector_outbox SET next_attempt_at = %s, lease_until = 0, last_error = %s"
            " WHERE id = ANY(%s)",
            (self._clock() + delay, error, [r.id for r in rows]),
        )

    def park(self, rows: Sequence[Row], reason: str) -> None:
        self._update(
            "UPDATE connector_outbox SET state = 'dead', done_at = %s, lease_until = 0,"
            " last_error = %s WHERE id = ANY(%s)",
            (self._clock(), reason, [r.id for r in rows]),
        )

    def depth(self) -> Depth:
        def count(conn: psycopg.Connection[Any]) -> tuple[dict[str, int], float | None]:
            counts = dict(
                conn.execute("SELECT state, COUNT(*) FROM connector_outbox GROUP BY state")
            )
            oldest = conn.execute(
                "SELECT MIN(created_at) FROM connector_outbox WHERE state = 'pending'"
            ).fetchone()
            return counts, oldest[0] if oldest else None

        counts, oldest = self._run(count)
        return Depth(
            counts.get("pending", 0),
            self._clock() - oldest if oldest else None,
            counts.get("sent", 0),
            counts.get("dead", 0),
        )

    def dead_letters(self, limit: int = 100) -> list[tuple[str, str, float]]:
        def listed(conn: psycopg.Connection[Any]) -> list[Any]:
            return conn.execute(
                "SELECT message_id, last_error, done_at FROM connector_outbox WHERE state = 'dead'"
                " ORDER BY done_at DESC LIMIT %s",
                (limit,),
            ).fetchall()

        return [(m, e or "", d) for m, e, d in self._run(listed)]

    def retry_dead(self) -> int:
        return self._update(
            "UPDATE connector_outbox SET state = 'pending', next_attempt_at = %s, attempts = 0"
            " WHERE state = 'dead'",
            (self._clock(),),
        )

    def retry_now(self) -> int:
        now = self._clock()
        return self._update(
            "UPDATE connector_outbox SET next_attempt_at = %s WHERE state = 'pending'"
            " AND next_attempt_at > %s",
            (now, now),
        )

    def purge_dead(self) -> int:
        return self._update("DELETE FROM connector_outbox WHERE state = 'dead'", ())

    def forget_sent(self, older_than: float = KEEP_SENT_SECONDS) -> int:
        return self._update(
            "DELETE FROM connector_outbox WHERE state = 'sent' AND done_at < %s",
            (self._clock() - older_than,),
        )

    def tidy(
        self, older_than: float = KEEP_SENT_SECONDS, keep_ledger: float = KEEP_LEDGER_SECONDS
    ) -> int:
        """Forget old sent rows and ledger rows past their keeping time; PostgreSQL's
        autovacuum reclaims their space."""
        return self.forget_sent(older_than) + self.forget_interactions(keep_ledger)


def _first_of_each(rows: Sequence[NewRow]) -> list[NewRow]:
    """The first row of each messageId (the one `add` reports as new)."""
    first: dict[str, NewRow] = {}
    for row in rows:
        first.setdefault(row.message_id, row)
    return list(first.values())
