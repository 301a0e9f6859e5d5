"""Sends the outbox to Segment's tracking API (`/v1/batch`), within its limits, until delivered.

429s, 5xx and timeouts come back later (Retry-After, else jittered exponential backoff); a 400
splits the batch in halves until the bad message stands alone and is parked with Segment's
reason; a message older than `give_up_after` (shorter than Segment's 24 h de-duplication window,
so a late retry can never duplicate) is parked instead of sent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from connector.config.loading import Connection
from connector.errors import OutboxUnavailable
from connector.segment.responses import error_message, retry_after
from connector.writeback.outbox import LazyOutbox, Row

log = logging.getLogger(__name__)
MAX_BATCH_MESSAGES = 500  # Segment allows 2,500; smaller batches isolate a bad one sooner
MAX_BATCH_BYTES = 450 * 1024  # the messages, under Segment's 500 KB for the whole batch
BATCH_OPEN, BATCH_CLOSE = b'{"batch":[', b"]}"
LEASE_SECONDS = 15.0  # longer than SEND_TIMEOUT: a live drainer never loses its lease
SEND_TIMEOUT = httpx.Timeout(10.0, connect=2.0)
# Deleting old sent rows, reclaiming the pages their bodies held and truncating the -wal file
# take a write lock for milliseconds: once a minute keeps the files near their working size
# without getting in the way of events being accepted.
TIDY_EVERY_SECONDS = 60.0
UNAVAILABLE_PAUSE = 2.0  # the outbox's database is down: ask again after this (and the idle)


@dataclass(frozen=True)
class DrainPolicy:
    backoff_base: float = 0.5
    backoff_cap: float = 60.0

    def backoff(self, attempts: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


def batch_body(rows: Sequence[Row]) -> bytes:
    """The stored bytes of each message, sent as they were measured (never re-encoded)."""
    return BATCH_OPEN + b",".join(r.body for r in rows) + BATCH_CLOSE


class Drainer:
    def __init__(
        self,
        outbox: LazyOutbox,
        http: httpx.Client,
        connection: Callable[[], Connection],
        policy: DrainPolicy | None = None,
        clock: Callable[[], float] = time.time,
        on_delivered: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.outbox = outbox
        # Told the subjects (callers' cache keys) of each delivered batch: their cards are now
        # out of date in every process (connector.state.deliveries).
        self._on_delivered = on_delivered
        self._http = http
        self._connection = connection
        self.policy = policy or DrainPolicy()
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_tidy = clock() + TIDY_EVERY_SECONDS

    def start(self, idle: float = 0.5) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(idle,), name="outbox-drainer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self, idle: float) -> None:
        while not self._stop.is_set():
            try:
                handled = self.drain_once()
                self.tidy_if_due()
            except OutboxUnavailable as error:  # logged by the outbox; back when the database is
                log.warning("outbox drain paused: %s", error.detail)
                handled = 0
                self._stop.wait(UNAVAILABLE_PAUSE)
            except Exception:  # a drainer that dies silently would lose nothing but deliver nothing
                log.exception("outbox drain failed; trying again")
                handled = 0
            if not handled:
                self._stop.wait(idle)

    def drain_once(self) -> int:
        """Claim one batch and settle it; the number of rows handled (0: nothing was due)."""
        connection = self._connection()
        if not connection.file.writeback.enabled or connection.write_key is None:
            return 0
        rows = self.outbox.get().claim(MAX_BATCH_MESSAGES, MAX_BATCH_BYTES, LEASE_SECONDS)
        now = self._clock()
        give_up_after = connection.file.writeback.give_up_after_hours * 3600
        too_old = [r for r in rows if now - r.created_at > give_up_after]
        fresh = [r for r in rows if now - r.created_at <= give_up_after]
        if too_old:
            self.outbox.get().park(too_old, "not delivered before the give-up age")
        if fresh:
            self._send(fresh, connection)
        return len(rows)

    def tidy_if_due(self) -> None:
        """Every TIDY_EVERY_SECONDS, forget old sent rows and ledger rows, shrink the files."""
        now = self._clock()
        outbox = self.outbox.opened()  # never opened here: no file of this process to tidy
        if now < self._next_tidy or outbox is None:
            return
        self._next_tidy = now + TIDY_EVERY_SECONDS
        keep_ledger = self._connection().file.writeback.ledger_keep_days * 86400
        forgotten = outbox.tidy(keep_ledger=keep_ledger)
        if forgotten:
            log.info(
                "outbox tidied: %d sent events and ledger rows past their keeping time deleted",
                forgotten,
            )

    def _send(self, rows: Sequence[Row], connection: Connection) -> None:
        assert connection.write_key is not None  # noqa: S101 - checked by drain_once
        try:
            response = self._http.post(
                f"{connection.tracking_api_url}/v1/batch",
                content=batch_body(rows),
                headers={"Content-Type": "application/json"},
                auth=(connection.write_key.get_secret_value(), ""),
                timeout=SEND_TIMEOUT,
            )
        except httpx.HTTPError as error:  # transport, or an answer that cannot be decoded
            self._later(rows, None, f"cannot reach Segment ({type(error).__name__})")
            return
        if response.status_code == 200:
            self.outbox.get().mark_sent(rows)
            if self._on_delivered is not None:
                self._on_delivered(sorted({r.subject for r in rows if r.subject}))
        elif response.status_code == 400:
            self._isolate(rows, connection, error_message(response))
        else:
            self._later(rows, retry_after(response), f"HTTP {response.status_code}")

    def _isolate(self, rows: Sequence[Row], connection: Connection, reason: str) -> None:
        """Split a refused batch until the refused message is alone, then park it."""
        if len(rows) == 1:
            self.outbox.get().park(rows, f"refused by Segment: {reason}")
            log.warning("outbox message %s parked: %s", rows[0].message_id, reason)
            return
        middle = len(rows) // 2
        self._send(rows[:middle], connection)
        self._send(rows[middle:], connection)

    def _later(self, rows: Sequence[Row], retry_after: float | None, error: str) -> None:
        attempts = max(r.attempts for r in rows)
        delay = retry_after if retry_after is not None else self.policy.backoff(attempts)
        self.outbox.get().retry_later(rows, delay, error)
