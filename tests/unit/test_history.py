"""The history (ledger + Profile API events) and the engagement summary: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connector.cards.addresses import Candidate
from connector.cards.profile import ProfileData
from connector.writeback.events import anonymous_id
from connector.writeback.history import engagement, ledger_keys, merged
from connector.writeback.ledger import LedgerEntry, LedgerKind

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()


def row(
    number: int,
    minutes: float,
    kind: LedgerKind = "track",
    event: str | None = "Flex - Engagement Completed",
    details: dict[str, Any] | None = None,
    agent: str | None = None,
    channel: str | None = None,
    task: str | None = None,
) -> LedgerEntry:
    return LedgerEntry(
        message_id=f"m-{number}",
        kind=kind,
        event=event,
        occurred_at=T0 + minutes * 60 + 0.123456,
        details=details or {},
        agent=agent,
        channel=channel,
        task_ids={"task_sid": task} if task else {},
        user_id="u-ada",
        anonymous_id=None,
        subject="phone:+14155550123",
    )


def segment_event(name: str, minutes: float, message_id: str, **extra: Any) -> dict[str, Any]:
    moment = datetime.fromtimestamp(T0 + minutes * 60 + 0.123456, UTC)
    return {
        "type": "track",
        "event": name,
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "message_id": message_id,
        "properties": {},
        **extra,
    }


def test_the_history_is_newest_first_each_event_once() -> None:
    rows = [row(1, 30, details={"topic": "billing"}, agent="WK1"), row(2, 10)]
    events = [
        segment_event("Flex - Engagement Completed", 30, "m-1"),  # ours, by messageId
        # ours again, as a Profile API that returns no messageId would show it: name + time
        {**segment_event("Flex - Engagement Completed", 10, ""), "message_id": None},
        segment_event("Order Completed", 20, "s-1", properties={"order_id": "o-1"}),
        segment_event("Product Viewed", 40, "s-2"),
        {"type": "track", "event": "No time", "message_id": "s-3"},  # dropped: no timestamp
    ]
    history = merged(rows, events)
    assert [(h.title, h.source) for h in history] == [
        ("Product Viewed", "segment"),
        ("Flex - Engagement Completed", "connector"),
        ("Order Completed", "segment"),
        ("Flex - Engagement Completed", "connector"),
    ]
    assert history[1].timestamp == "2026-11-20T10:30:00.123Z"
    assert history[1].agent == "WK1" and history[1].details == {"topic": "billing"}
    assert history[2].details == {"order_id": "o-1"}


def test_titles_say_what_happened() -> None:
    subscriptions = {"subscriptions": [{"type": "EMAIL", "status": "UNSUBSCRIBED", "key": "a@b"}]}
    rows = [
        row(1, 1, "subscriptions", None, subscriptions),
        row(2, 2, "identify", None, {"plan": "gold", "city": "Paris"}),
        row(3, 3, "group", None, {"groupId": "acct_42", "name": "Initech"}),
        row(4, 4, "unlinked", "Flex - Profile Unlinked", {"segment_id": "use_9"}),
    ]
    identify = {
        "type": "identify",
        "event": "Identify",
        "timestamp": "2026-11-20T09:00:00.000Z",
        "context": {"messaging_subscriptions": [{"type": "SMS", "status": "DID_NOT_SUBSCRIBE"}]},
    }
    by_kind = {h.kind + h.source: h.title for h in merged(rows, [identify])}
    assert by_kind == {
        "subscription_changeconnector": "Subscription changed: Email unsubscribed",
        "identifyconnector": "Profile updated: City, Plan",
        "groupconnector": "Joined account Initech",
        "unlinkedconnector": "Not this customer: profile use_9 unlinked",
        "subscription_changesegment": "Subscription changed: SMS did not subscribe",
    }


def test_the_engagement_summary() -> None:
    rows = [  # newest first, as the ledger returns them
        row(9, 90, "unlinked", "Flex - Profile Unlinked", {"segment_id": "use_9"}, "WK9"),
        row(8, 80, details={"codes": {"topic": "returns"}}, channel="sms", task="WT3"),
        row(7, 70, details={"direction": "outbound"}, agent="WK2", channel="voice", task="WT4"),
        row(6, 60, event="Flex - Engagement Initiated", channel="voice", task="WT2"),
        row(5, 50, details={"sentiment": "negative"}, agent="WK1", channel="voice", task="WT2"),
        row(4, 40, details={"topic": "billing"}, channel="sms", task="WT1"),
        row(3, 30, event="Survey Answered", details={"sentiment": "positive"}),
    ]
    summary = engagement(rows)
    assert summary.total_inbound == 3  # WT3, WT2 (two events), WT1; not the outbound WT4
    assert summary.last_contact_at == "2026-11-20T11:20:00.123Z"  # not the unlink
    assert summary.last_agent == "WK2"
    assert summary.last_topic == "returns"
    assert summary.last_sentiment == "negative"
    # By engagement, not by event: WT3 and WT1 on sms, WT2 (two events) on voice.
    assert summary.most_used_channel == "sms"
    empty = engagement([])
    assert empty.total_inbound == 0 and empty.last_contact_at is None


def test_a_profiles_rows_are_found_by_its_identifiers() -> None:
    data = ProfileData(
        matched="phone:+14155550123",
        segment_id="use_1",
        traits={},
        external_ids=[{"type": "user_id", "id": "u-ada"}, {"type": "email", "id": "a@b.c"}],
    )
    keys = ledger_keys("phone:+14155550123", data)
    assert keys.subjects == ("phone:+14155550123",)
    assert keys.user_ids == ("u-ada",)
    assert anonymous_id(Candidate("phone", "+14155550123")) in keys.anonymous_ids
    assert anonymous_id(Candidate("email", "a@b.c")) in keys.anonymous_ids
    assert ledger_keys(None, None).subjects == ()
