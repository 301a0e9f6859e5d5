"""The outbox on an injected wall clock, every case on both backends: SQLite in tmp_path and
PostgreSQL in a schema of the test's own (tests/conftest.py `open_outbox`)."""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connector.errors import OutboxUnavailable
from connector.writeback.outbox import KEEP_SENT_SECONDS, Depth, Outbox, OutboxStore, encode_message
from connector.writeback.postgres_outbox import (
    PostgresOutbox,
    database_url,
    redacted,
)
from tests.conftest import OpenOutbox
from tests.postgres import TcpProxy, closed_port_url, fresh_schema
from tests.unit.fakes import FakeClock

LEASE = 15.0
START = 1_700_000_000.0


def message(number: int, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Call Ended", "messageId": f"m-{number}", **extra}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def outbox(open_outbox: OpenOutbox, clock: FakeClock) -> OutboxStore:
    return open_outbox(clock)


def fill(outbox: OutboxStore, count: int, clock: FakeClock | None = None) -> None:
    for number in range(count):
        assert outbox.add(message(number), subject=f"user_id:u{number}")
        if clock is not None:
            clock.advance(1)


def ids(rows: list[Any]) -> list[str]:
    return [row.message_id for row in rows]


# --- adding ------------------------------------------------------------------------------------


def test_add_commits_the_message_as_it_will_be_sent(outbox: OutboxStore) -> None:
    msg = message(1, properties={"city": "Z\u00fcrich"})
    assert outbox.add(msg)
    (row,) = outbox.claim(10, 10_000, LEASE)
    assert row.body == encode_message(msg)
    assert json.loads(row.body) == msg
    assert b"\\u00fc" in row.body  # non-ASCII escaped: the size is the same on both sides
    assert row.size == len(row.body)
    assert row.created_at == START
    assert row.attempts == 1


def test_a_duplicate_message_id_is_refused(outbox: OutboxStore) -> None:
    assert outbox.add(message(1))
    assert not outbox.add(message(1, event="Something else"))
    (row,) = outbox.claim(10, 10_000, LEASE)
    assert json.loads(row.body)["event"] == "Call Ended"
    assert outbox.depth().pending == 1


def test_a_sent_message_id_is_still_a_duplicate(outbox: OutboxStore) -> None:
    outbox.add(message(1))
    outbox.mark_sent(outbox.claim(10, 10_000, LEASE))
    assert not outbox.add(message(1))


def test_concurrent_adds_each_commit_once(outbox: OutboxStore) -> None:
    # 16 threads at once go in shared transactions (group commit); each messageId is sent by
    # four of them, and exactly one of the four is told it was new.
    def add(number: int) -> bool:
        return outbox.add(message(number % 200), subject=f"user_id:u{number}")

    with ThreadPoolExecutor(16) as pool:
        added = list(pool.map(add, range(800)))
    assert sum(added) == 200
    assert all(sum(added[n::200]) == 1 for n in range(200))
    assert outbox.depth().pending == 200
    assert sorted(ids(outbox.claim(500, 10**6, LEASE))) == sorted(f"m-{n}" for n in range(200))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(outbox: OutboxStore, value: float) -> None:
    with pytest.raises(ValueError):
        outbox.add(message(1, properties={"x": value}))
    assert outbox.depth().pending == 0


def test_the_file_and_its_folder_are_created(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "a" / "b" / "outbox.sqlite"
    Outbox(path, clock=clock).add(message(1))
    assert path.is_file()
    assert Outbox(path, clock=clock).depth().pending == 1  # a second opener sees the row


def test_a_second_opener_sees_the_rows(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    assert open_outbox(clock).add(message(1))
    other = open_outbox(clock)  # as another worker or instance would open it
    assert other.depth().pending == 1
    assert not other.add(message(1))


# --- claiming ----------------------------------------------------------------------------------


def test_claim_takes_the_oldest_rows_up_to_the_count(outbox: OutboxStore) -> None:
    fill(outbox, 5)
    assert ids(outbox.claim(3, 10_000, LEASE)) == ["m-0", "m-1", "m-2"]
    assert ids(outbox.claim(3, 10_000, LEASE)) == ["m-3", "m-4"]
    assert outbox.claim(3, 10_000, LEASE) == []


def test_claim_bounds_the_bytes_of_the_joined_bodies(outbox: OutboxStore) -> None:
    fill(outbox, 4)
    size = len(encode_message(message(0)))
    # two bodies and one comma fit exactly; a third would need size + 1 more
    assert ids(outbox.claim(10, 2 * size + 1, LEASE)) == ["m-0", "m-1"]
    assert ids(outbox.claim(10, 2 * size, LEASE)) == ["m-2"]


def test_a_row_larger_than_the_byte_limit_is_claimed_alone(outbox: OutboxStore) -> None:
    outbox.add(message(1, properties={"blob": "x" * 500}))
    outbox.add(message(2))
    assert ids(outbox.claim(10, 100, LEASE)) == ["m-1"]


def test_leased_rows_are_not_claimed_again_until_the_lease_ends(
    outbox: OutboxStore, clock: FakeClock
) -> None:
    fill(outbox, 2)
    first = outbox.claim(10, 10_000, LEASE)
    clock.advance(LEASE - 0.5)
    assert outbox.claim(10, 10_000, LEASE) == []
    clock.advance(0.5)
    again = outbox.claim(10, 10_000, LEASE)
    assert ids(again) == ids(first)
    assert [r.attempts for r in again] == [2, 2]


def test_concurrent_drainers_never_share_a_row(open_outbox: OpenOutbox, clock: FakeClock) -> None:
    fill(open_outbox(clock), 200)
    claimed: list[list[str]] = [[] for _ in range(4)]
    openers = [open_outbox(clock) for _ in range(4)]

    def drain(slot: int) -> None:
        own = openers[slot]  # its own connections, as another process would have
        while rows := own.claim(7, 100_000, LEASE):
            claimed[slot].extend(ids(rows))

    threads = [threading.Thread(target=drain, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    everything = [m for rows in claimed for m in rows]
    assert len(everything) == 200
    assert set(everything) == {f"m-{n}" for n in range(200)}


# --- settling ----------------------------------------------------------------------------------


def test_mark_sent_settles_rows(outbox: OutboxStore, clock: FakeClock) -> None:
    fill(outbox, 2)
    rows = outbox.claim(10, 10_000, LEASE)
    clock.advance(5)
    outbox.mark_sent(rows[:1])
    assert outbox.depth() == Depth(pending=1, oldest_pending_age=5.0, sent=1, dead=0)
    clock.advance(LEASE)
    assert ids(outbox.claim(10, 10_000, LEASE)) == ["m-1"]  # the sent one never comes back


def test_delivered_since_names_the_subject_and_the_moment(
    outbox: OutboxStore, clock: FakeClock
) -> None:
    outbox.add(message(1), subject="user_id:u1")
    assert not outbox.delivered_since(("user_id:u1",), START - 1)  # pending is not delivered
    clock.advance(10)
    outbox.mark_sent(outbox.claim(10, 10_000, LEASE))
    assert outbox.delivered_since(("user_id:u1",), START + 9)
    assert not outbox.delivered_since(("user_id:u1",), START + 10)
    assert not outbox.delivered_since(("user_id:u2",), START)
    # any one of a profile's addresses: a call by one, then a card by another
    assert outbox.delivered_since(("email:u1@example.com", "user_id:u1"), START + 9)


def test_retry_later_holds_rows_back_for_the_delay(outbox: OutboxStore, clock: FakeClock) -> None:
    fill(outbox, 1)
    rows = outbox.claim(10, 10_000, LEASE)
    outbox.retry_later(rows, 30.0, "HTTP 503")
    clock.advance(29.9)
    assert outbox.claim(10, 10_000, LEASE) == []
    clock.advance(0.1)
    (row,) = outbox.claim(10, 10_000, LEASE)
    assert row.attempts == 2


def test_retry_later_with_no_delay_releases_the_lease(outbox: OutboxStore) -> None:
    fill(outbox, 1)
    outbox.retry_later(outbox.claim(10, 10_000, LEASE), 0.0, "HTTP 500")
    assert ids(outbox.claim(10, 10_000, LEASE)) == ["m-0"]


def test_retry_now_makes_delayed_rows_due(outbox: OutboxStore) -> None:
    fill(outbox, 3)
    rows = outbox.claim(10, 10_000, LEASE)
    outbox.retry_later(rows[:2], 3600.0, "HTTP 503")
    assert outbox.retry_now() == 2
    assert ids(outbox.claim(10, 10_000, LEASE)) == ["m-0", "m-1"]


def test_parked_rows_are_dead_letters(outbox: OutboxStore, clock: FakeClock) -> None:
    fill(outbox, 3)
    rows = outbox.claim(10, 10_000, LEASE)
    clock.advance(7)
    outbox.park(rows[1:2], "refused by Segment: bad event")
    assert outbox.dead_letters() == [("m-1", "refused by Segment: bad event", START + 7)]
    assert outbox.depth().dead == 1
    outbox.retry_later([rows[0], rows[2]], 0.0, "x")
    assert ids(outbox.claim(10, 10_000, LEASE)) == ["m-0", "m-2"]  # never the dead one


def test_dead_letters_can_be_retried(outbox: OutboxStore) -> None:
    fill(outbox, 1)
    outbox.park(outbox.claim(10, 10_000, LEASE), "bad")
    assert outbox.retry_dead() == 1
    (row,) = outbox.claim(10, 10_000, LEASE)
    assert row.attempts == 1  # counted afresh
    assert outbox.depth().dead == 0


def test_dead_letters_can_be_purged(outbox: OutboxStore) -> None:
    fill(outbox, 2)
    rows = outbox.claim(10, 10_000, LEASE)
    outbox.park(rows, "bad")
    assert outbox.purge_dead() == 2
    assert outbox.depth() == Depth(0, None, 0, 0)
    assert outbox.add(message(0))  # its messageId is free again


def test_dead_letters_are_listed_newest_first_up_to_the_limit(
    outbox: OutboxStore, clock: FakeClock
) -> None:
    fill(outbox, 3)
    for row in outbox.claim(10, 10_000, LEASE):
        clock.advance(1)
        outbox.park([row], f"reason {row.message_id}")
    assert [m for m, _, _ in outbox.dead_letters(limit=2)] == ["m-2", "m-1"]


def test_depth_counts_each_state_and_the_oldest_pending_age(
    outbox: OutboxStore, clock: FakeClock
) -> None:
    assert outbox.depth() == Depth(0, None, 0, 0)
    fill(outbox, 4, clock)  # created at START, START+1, START+2, START+3
    rows = outbox.claim(2, 10_000, LEASE)
    outbox.mark_sent(rows[:1])
    outbox.park(rows[1:], "bad")
    clock.advance(10)
    assert outbox.depth() == Depth(pending=2, oldest_pending_age=12.0, sent=1, dead=1)


# --- tidying -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["tidy", "forget_sent"])
def test_sent_rows_are_forgotten_after_the_keeping_time(
    outbox: OutboxStore, clock: FakeClock, how: str
) -> None:
    tidy = getattr(type(outbox), how)
    fill(outbox, 4)
    rows = outbox.claim(10, 10_000, LEASE)
    outbox.mark_sent(rows[:1])
    clock.advance(100)
    outbox.mark_sent(rows[1:2])
    outbox.park(rows[2:3], "bad")
    clock.advance(KEEP_SENT_SECONDS - 50)
    assert tidy(outbox) == 1  # only the first sent row is older than the keeping time
    assert outbox.depth() == Depth(
        pending=1, oldest_pending_age=KEEP_SENT_SECONDS + 50, sent=1, dead=1
    )
    assert outbox.add(message(0))  # a forgotten messageId is no longer a duplicate
    assert not outbox.add(message(1))


def test_tidy_takes_an_explicit_age(outbox: OutboxStore, clock: FakeClock) -> None:
    fill(outbox, 1)
    outbox.mark_sent(outbox.claim(10, 10_000, LEASE))
    clock.advance(61)
    assert outbox.tidy(older_than=60) == 1
    assert outbox.depth().sent == 0
    if isinstance(outbox, Outbox):
        assert outbox.file_bytes() > 0


# --- PostgreSQL's own ----------------------------------------------------------------------------


def test_claim_skips_rows_another_transaction_holds(clock: FakeClock) -> None:
    with fresh_schema() as url:
        box = PostgresOutbox(url, clock=clock)
        try:
            fill(box, 3)
            with psycopg.connect(url) as other:  # a drainer in the middle of its claim
                other.execute("SELECT id FROM connector_outbox ORDER BY id LIMIT 1 FOR UPDATE")
                started = time.monotonic()
                assert ids(box.claim(10, 10_000, LEASE)) == ["m-1", "m-2"]
                assert time.monotonic() - started < 1  # skipped, not waited for
                other.rollback()
            assert ids(box.claim(10, 10_000, LEASE)) == ["m-0"]
        finally:
            box.close()


def test_an_unreachable_database_fails_fast_and_clearly(clock: FakeClock) -> None:
    box = PostgresOutbox(closed_port_url(), clock=clock, pool_timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(OutboxUnavailable) as raised:
            box.add(message(1))
        assert time.monotonic() - started < 0.5 + 1
        assert raised.value.status == 503 and raised.value.code == "outbox_unavailable"
        assert "not recorded, retry it" in raised.value.message
        started = time.monotonic()
        with pytest.raises(OutboxUnavailable):
            box.claim(10, 10_000, LEASE)  # a moment later: at once
        assert time.monotonic() - started < 0.1
    finally:
        box.close()


def test_the_outbox_comes_back_with_its_database(clock: FakeClock) -> None:
    with fresh_schema() as url:
        proxy = TcpProxy(url).restore()
        box = PostgresOutbox(proxy.url, clock=clock)
        try:
            assert box.add(message(1))
            proxy.cut()  # the database goes away, with the pool's connections
            with pytest.raises(OutboxUnavailable):
                box.add(message(2))
            proxy.restore()
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert box.add(message(3))
                    break
                except OutboxUnavailable:
                    assert time.monotonic() < deadline, "the outbox did not come back"
                    time.sleep(0.2)
            assert ids(box.claim(10, 10_000, LEASE)) == ["m-1", "m-3"]
        finally:
            box.close()
            proxy.cut()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.example:5432/d", "postgresql://u:p@db.example:5432/d"),
        ("postgresql://u@h/d?sslmode=require", "postgresql://u@h/d?sslmode=require"),
        (" postgres://h/d \n", "postgresql://h/d"),
        ("", None),
        ("mysql://u:p@h/d", None),
    ],
)
def test_database_url_chooses_postgresql(given: str, expected: str | None) -> None:
    assert database_url({"DATABASE_URL": given}) == expected
    assert database_url({}) is None


def test_the_password_is_never_shown() -> None:
    assert redacted("postgresql://u:s3cret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redacted("postgresql://u@h/d") == "postgresql://u@h/d"
    assert redacted("postgresql://h/d?sslmode=require&password=s3cret") == (
        "postgresql://h/d?sslmode=require&password=***"
    )
