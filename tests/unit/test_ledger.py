"""The interaction ledger beside the outbox, every case on both backends (SQLite in tmp_path,
PostgreSQL in a schema of the test's own: tests/conftest.py `open_outbox`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from connector.writeback.ledger import (
    MAX_DETAILS_BYTES,
    TRUNCATED,
    Interaction,
    LedgerEntry,
    LedgerKeys,
    bounded,
    encode,
    entry_for,
)
from connector.writeback.outbox import KEEP_LEDGER_SECONDS, OutboxStore
from tests.conftest import OpenOutbox
from tests.unit.fakes import FakeClock

START = 1_700_000_000.0
DAY = 86400.0
CALLER = "phone:+14155550123"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def outbox(open_outbox: OpenOutbox, clock: FakeClock) -> OutboxStore:
    return open_outbox(clock)


def message(number: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Flex - Engagement Completed",
        "messageId": f"m-{number}",
        "userId": "u-ada",
        "properties": {"taskSid": f"WT{number}", "sentiment": "positive"},
        **extra,
    }


def entry(msg: dict[str, Any], at: float = START, subject: str = CALLER) -> LedgerEntry:
    interaction = Interaction(agent="WK1", channel="voice", task_ids={"call_sid": "CA1"})
    return entry_for(msg, "track", at, interaction, subject)


def test_a_row_is_committed_with_its_outbox_row(outbox: OutboxStore) -> None:
    msg = message(1)
    assert outbox.add(msg, CALLER, entry(msg, START - 60))
    assert outbox.depth().pending == 1
    (row,) = outbox.interactions(LedgerKeys(subjects=(CALLER,)), 10)
    assert row == replace(entry(msg, START - 60), recorded_at=START)
    assert row.task_ids == {"task_sid": "WT1", "call_sid": "CA1"}
    assert row.agent == "WK1" and row.channel == "voice" and row.sent


def test_a_failed_commit_writes_neither_row(outbox: OutboxStore) -> None:
    # The ledger refuses the row (its kind is not one it knows): the outbox row goes with it.
    msg = message(1)
    broken = replace(entry(msg), kind=cast(Any, "bogus"))
    with pytest.raises(Exception, match=r"(?i)check"):
        outbox.add(msg, CALLER, broken)
    assert outbox.depth().pending == 0
    assert outbox.interactions(LedgerKeys(subjects=(CALLER,)), 10) == []
    assert outbox.add(msg, CALLER, entry(msg))  # nothing of it was kept: it is new


def test_a_duplicate_message_adds_no_second_row(outbox: OutboxStore) -> None:
    msg = message(1)
    assert outbox.add(msg, CALLER, entry(msg))
    assert not outbox.add(msg, CALLER, entry(msg))
    assert len(outbox.interactions(LedgerKeys(subjects=(CALLER,)), 10)) == 1


def test_rows_are_found_by_subject_user_id_or_anonymous_id(outbox: OutboxStore) -> None:
    anonymous = message(2, userId=None, anonymousId="upc-abc")
    for msg, subject in ((message(1), "email:a@example.com"), (anonymous, "phone:+1555")):
        outbox.add(msg, subject, entry(msg, subject=subject))
    other = message(3, userId="u-bob")
    outbox.add(other, "phone:+1999", entry(other, subject="phone:+1999"))

    def found(keys: LedgerKeys) -> list[str]:
        return sorted(r.message_id for r in outbox.interactions(keys, 10))

    assert found(LedgerKeys(user_ids=("u-ada",))) == ["m-1"]
    assert found(LedgerKeys(anonymous_ids=("upc-abc",))) == ["m-2"]
    assert found(LedgerKeys(("phone:+1555",), ("u-ada",))) == ["m-1", "m-2"]
    assert found(LedgerKeys()) == []


def test_rows_come_newest_first_within_the_limit(outbox: OutboxStore) -> None:
    for n, at in enumerate((START - 300, START - 100, START - 200)):
        msg = message(n)
        outbox.add(msg, CALLER, entry(msg, at))
    rows = outbox.interactions(LedgerKeys(subjects=(CALLER,)), 2)
    assert [r.message_id for r in rows] == ["m-1", "m-2"]


def test_an_unlink_recorded_alone_is_known_and_outdates_cards(
    outbox: OutboxStore, clock: FakeClock
) -> None:
    unlink = message(9, event="Flex - Profile Unlinked")
    row = replace(entry_for(unlink, "unlinked", START, Interaction(), CALLER, "use_1"), sent=False)
    assert not outbox.delivered_since((CALLER,), START - 1)
    clock.advance(5)
    assert outbox.record(row)
    assert not outbox.record(row)  # its messageId again: nothing new
    assert outbox.depth().pending == 0  # nothing to send
    assert outbox.unlinked(CALLER) == frozenset({"use_1"})
    assert outbox.unlinked("phone:+1999") == frozenset()
    assert outbox.delivered_since((CALLER,), START)  # a card fetched before it is out of date
    assert not outbox.delivered_since((CALLER,), START + 5)
    (kept,) = outbox.interactions(LedgerKeys(subjects=(CALLER,)), 10)
    assert kept.kind == "unlinked" and kept.segment_id == "use_1" and not kept.sent


def test_retention_keeps_rows_for_their_days_then_tidy_deletes_them(
    open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    outbox = open_outbox(clock)
    old, recent = message(1), message(2)
    outbox.add(old, CALLER, entry(old))
    clock.advance(300 * DAY)
    outbox.add(recent, CALLER, entry(recent))
    clock.advance(100 * DAY)  # the first row is 400 days old, the second 100
    outbox.tidy(keep_ledger=KEEP_LEDGER_SECONDS)  # 365 days by default
    keys = LedgerKeys(subjects=(CALLER,))
    assert [r.message_id for r in outbox.interactions(keys, 10)] == ["m-2"]
    outbox.tidy(keep_ledger=30 * DAY)  # an admin's shorter keeping time
    assert outbox.interactions(keys, 10) == []
    assert open_outbox(clock).interactions(keys, 10) == []  # gone for every opener


def test_details_are_bounded_in_size() -> None:
    big = {"a": "x" * 100, "b": "y" * MAX_DETAILS_BYTES, "c": 3}
    kept = bounded(big)
    assert kept == {TRUNCATED: True, "a": "x" * 100, "c": 3}
    assert len(encode(kept)) <= MAX_DETAILS_BYTES
    assert bounded({"a": 1}) == {"a": 1}


def test_a_subscription_change_keeps_its_subscriptions() -> None:
    msg = {
        "type": "identify",
        "messageId": "m-s",
        "userId": "u-ada",
        "context": {"messaging_subscriptions": [{"type": "EMAIL", "status": "UNSUBSCRIBED"}]},
    }
    row = entry_for(msg, "subscriptions", START, Interaction(), CALLER)
    assert row.details == {"subscriptions": [{"type": "EMAIL", "status": "UNSUBSCRIBED"}]}
    assert row.event is None
