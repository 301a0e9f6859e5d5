"""`/v1/cards/history` and `/v1/cards/unlink` over real HTTP, against the sandbox."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from connector.web.registry import services_of
from connector.writeback.ledger import LedgerKeys
from tests.conftest import ConnectorFactory, RunningConnector, RunningSandbox, SandboxFactory

ADA = "+14155550123"
OTHER = "+12125550147"


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    return make_sandbox(data="demo")


@pytest.fixture(params=["sqlite", "postgresql"])
def connector(
    request: pytest.FixtureRequest, make_connector: ConnectorFactory, sandbox: RunningSandbox
) -> RunningConnector:
    """Write-back on, the outbox and the ledger in SQLite, then in PostgreSQL."""
    extra = f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n'
    if request.param == "sqlite":
        return make_connector(sandbox, extra)
    url = request.getfixturevalue("database_url")  # a schema of this test's own
    return make_connector(sandbox, extra, env={"DATABASE_URL": url})


def drained(connector: RunningConnector, within: float = 20.0) -> None:
    outbox = services_of(connector.app).outbox.get()
    deadline = time.monotonic() + within
    while outbox.depth().pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.depth().pending == 0, "the outbox did not drain"


def engagement(task: str, topic: str, channel: str = "voice") -> dict[str, Any]:
    return {
        "from": ADA,
        "event": "Flex - Engagement Completed",
        "TaskSid": task,
        "Channel": channel,
        "properties": {"codes": {"topic": topic}, "sentiment": "positive"},
    }


def history(connector: RunningConnector, caller: str = ADA) -> dict[str, Any]:
    response = connector.http.get("/v1/cards/history", params={"from": caller})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"history", "engagement"}
    return body


def unlink(connector: RunningConnector, **fields: Any) -> Any:
    card = connector.card(**{"from": ADA}).json()
    body = {
        "from": ADA,
        "segment_id": card["profile"]["segment_id"],
        "matched_identifier": card["lookup"]["identifier"],
        "TaskSid": "WT-unlink",
        **fields,
    }
    return connector.http.post("/v1/cards/unlink", json=body)


def test_the_history_merges_the_ledger_and_segment_newest_first_once_each(
    connector: RunningConnector,
) -> None:
    sent = []
    for task, topic in (("WT1", "billing"), ("WT2", "returns")):
        response = connector.http.post("/v1/events", json=engagement(task, topic))
        assert response.status_code == 202
        sent.append(response.json()["messageId"])
        time.sleep(0.01)  # two distinct times
    drained(connector)  # now the Profile API returns them too
    card_events = connector.card(**{"from": ADA}).json()["events"]
    assert sum(e["event"] == "Flex - Engagement Completed" for e in card_events) == 2

    body = history(connector)
    items = body["history"]
    stamps = [datetime.fromisoformat(i["timestamp"]) for i in items]
    assert stamps == sorted(stamps, reverse=True)
    ours = [i for i in items if i["title"] == "Flex - Engagement Completed"]
    assert [i["source"] for i in ours] == ["connector", "connector"]  # once each, not twice
    assert [i["details"]["codes"]["topic"] for i in ours] == ["returns", "billing"]
    assert ours[0]["channel"] == "voice" and ours[0]["agent"]
    segment = [i for i in items if i["source"] == "segment"]
    assert {i["title"] for i in segment} >= {"Order Completed"}  # the demo's own events
    assert all(i["timestamp"].endswith("Z") for i in items)

    summary = body["engagement"]
    assert summary["total_inbound"] == 2
    assert summary["last_topic"] == "returns"
    assert summary["last_sentiment"] == "positive"
    assert summary["most_used_channel"] == "voice"
    assert summary["last_agent"] == ours[0]["agent"]
    assert summary["last_contact_at"] == ours[0]["timestamp"]


def test_a_subscription_change_is_titled_as_such(connector: RunningConnector) -> None:
    body = {
        "from": ADA,
        "email": "ada@example.com",
        "type": "subscriptions",
        "email_subscription_status": "false",
    }
    assert connector.http.post("/v1/events", json=body).status_code == 202
    drained(connector)
    changes = [i for i in history(connector)["history"] if i["kind"] == "subscription_change"]
    assert [i["title"] for i in changes] == ["Subscription changed: Email unsubscribed"]
    assert changes[0]["source"] == "connector"


def test_unlink_sends_one_correction_and_later_lookups_say_unlinked(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    assert connector.card(**{"from": OTHER}).json()["found"]  # cached, like Ada's
    response = unlink(connector, reason="wrong person")
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["unlinked"] is True and answer["sent_to_segment"] is True
    drained(connector)
    receipts = sandbox.control.stats(detail=True)["tracking"]["receipts"]
    assert receipts == {answer["messageId"]: 1}
    events = sandbox.profile("user_id:u-ada", "events").json()["data"]
    correction = next(e for e in events if e["event"] == "Flex - Profile Unlinked")
    assert correction["properties"]["segment_id"] == answer["segment_id"]
    assert correction["properties"]["matched_identifier"] == f"phone:{ADA}"
    assert correction["properties"]["task_sid"] == "WT-unlink"

    for _ in range(2):  # the first lookup reads the ledger, the next the cached answer
        card = connector.card(**{"from": ADA}).json()
        assert card["found"] is False and card["profile"] is None
        assert card["lookup"]["reason"] == "unlinked"
    studio = connector.http.post("/v1/studio/lookup", data={"From": ADA}).json()
    assert (studio["status"], studio["reason"]) == ("not_found", "unlinked")
    assert connector.card(**{"from": OTHER}).json()["found"] is True  # others unaffected
    items = history(connector)["history"]
    assert [i["kind"] for i in items] == ["unlinked"]  # the caller's own, once
    assert items[0]["title"] == f"Not this customer: profile {answer['segment_id']} unlinked"


def test_unlink_with_write_back_off_is_recorded_and_says_so(
    make_connector: ConnectorFactory, sandbox: RunningSandbox
) -> None:
    connector = make_connector(sandbox)  # no [writeback]
    response = unlink(connector)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["sent_to_segment"] is False and "not sent to Segment" in answer["message"]
    ledger = services_of(connector.app).outbox.get()
    (row,) = ledger.interactions(LedgerKeys(subjects=(f"phone:{ADA}",)), 10)
    assert (row.kind, row.sent, row.segment_id) == ("unlinked", False, answer["segment_id"])
    assert connector.card(**{"from": ADA}).json()["lookup"]["reason"] == "unlinked"
    time.sleep(1.0)  # a drainer would have sent it by now
    assert sandbox.control.stats()["tracking"].get("messages", 0) == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"from": ADA, "matched_identifier": "phone:+1"}, "segment_id"),
        ({"from": ADA, "segment_id": "use_1", "matched_identifier": "nocolon"}, "matched"),
        ({"from": ADA, "segment_id": "use_1"}, "matched_identifier"),
        ({"segment_id": "use_1", "matched_identifier": "phone:+1"}, "from"),
        ({"from": "anonymous", "segment_id": "use_1", "matched_identifier": "phone:+1"}, "no"),
        ({"from": ADA, "segment_id": "use_1", "matched_identifier": "a:b", "x": 1}, "x"),
    ],
)
def test_bad_unlinks_are_refused(
    connector: RunningConnector, body: dict[str, Any], says: str
) -> None:
    response = connector.http.post("/v1/cards/unlink", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] and says in error["message"]


def test_history_and_unlink_need_credentials(connector: RunningConnector) -> None:
    plain = connector.http.__class__(base_url=connector.url)
    with plain:
        assert plain.get("/v1/cards/history", params={"from": ADA}).status_code == 401
        body = {"from": ADA, "segment_id": "use_1", "matched_identifier": "phone:+1"}
        assert plain.post("/v1/cards/unlink", json=body).status_code == 401


def test_warm_lookups_do_not_ask_the_ledger(
    connector: RunningConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services_of(connector.app).outbox.get()
    asked: list[str] = []
    unlinked = store.unlinked

    def counted(subject: str) -> frozenset[str]:
        asked.append(subject)
        return unlinked(subject)

    monkeypatch.setattr(store, "unlinked", counted)
    for _ in range(5):
        assert connector.card(**{"from": ADA}).json()["found"]
    assert len(asked) == 1  # once for the card's fetch, not once per lookup
    assert unlink(connector).status_code == 202  # its own lookup is a warm one
    for _ in range(5):
        assert connector.card(**{"from": ADA}).json()["lookup"]["reason"] == "unlinked"
    assert len(asked) == 2  # the unlink dropped the cached card: asked again, once
