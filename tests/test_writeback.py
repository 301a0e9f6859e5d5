"""Events written back to Segment through the outbox, end to end against the sandbox."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from connector.config.loading import load_connection
from connector.web.registry import services_of
from connector.writeback.drainer import TIDY_EVERY_SECONDS, Drainer
from connector.writeback.outbox import KEEP_SENT_SECONDS, Depth, LazyOutbox, Outbox, OutboxStore
from tests.conftest import (
    TOKEN,
    ConnectorFactory,
    RunningConnector,
    RunningSandbox,
    SandboxFactory,
    connection_toml,
    connector_env,
)

ENGAGEMENT = {
    "type": "track",
    "event": "Flex - Engagement Completed",
    "properties": {
        "channelSid": "CH123",
        "interactionSid": "KD123",
        "codes": {"dispositionCode": "resolved", "topic": "billing"},
        "sentiment": "positive",
    },
}


STUDIO = ("studio", "studio-basic-password")


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    return make_sandbox(data="demo")


@pytest.fixture
def connector(make_connector: ConnectorFactory, sandbox: RunningSandbox) -> RunningConnector:
    # A Studio flow with Basic auth too, for drills that write more than one agent may.
    extra = (
        f'\n[auth]\nstudio_basic_auth_env = "STUDIO_BASIC_AUTH"\n'
        f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n'
    )
    return make_connector(sandbox, extra, env={"STUDIO_BASIC_AUTH": ":".join(STUDIO)})


def outbox(connector: RunningConnector) -> OutboxStore:
    lazy: LazyOutbox = services_of(connector.app).outbox
    return lazy.get()


def sqlite_outbox(connector: RunningConnector) -> Outbox:
    box = outbox(connector)
    assert isinstance(box, Outbox)
    return box


def drained(connector: RunningConnector, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while outbox(connector).depth().pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox(connector).depth().pending == 0, "the outbox did not drain"


def post(connector: RunningConnector, body: dict[str, Any], as_flow: bool = False) -> Any:
    """An event from the connector's agent, or from a Studio flow (Basic auth)."""
    if as_flow:
        return connector.http.post("/v1/events", json=body, auth=STUDIO)
    return connector.http.post("/v1/events", json=body)


def test_an_engagement_event_shows_on_the_next_card(connector: RunningConnector) -> None:
    assert connector.card(**{"from": "+14155550123"}).json()["found"]  # cached now
    response = post(connector, {**ENGAGEMENT, "from": "+14155550123"})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["queued"] is True and len(accepted["messageId"]) < 100
    drained(connector)
    card = connector.card(**{"from": "+14155550123"}).json()
    latest = card["events"][0]
    assert latest["event"] == "Flex - Engagement Completed"
    assert latest["properties"]["codes"] == {"dispositionCode": "resolved", "topic": "billing"}


def test_a_card_cached_before_delivery_is_refreshed_after_it(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    sandbox.control.set_faults(latency_ms=500, targets=["tracking"])  # delivery takes a while
    assert post(connector, {**ENGAGEMENT, "from": "+14155550123"}).status_code == 202
    before = connector.card(**{"from": "+14155550123"}).json()  # cached, without the event
    assert all(e["event"] != ENGAGEMENT["event"] for e in before["events"])
    drained(connector)
    after = connector.card(**{"from": "+14155550123"}).json()  # well within the card's TTL
    assert after["events"][0]["event"] == ENGAGEMENT["event"]


def test_an_event_by_phone_refreshes_the_card_cached_under_the_email(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    """A call by phone wrapped up, then a chat from the same customer's email: the chat's card,
    cached before the call's event was delivered, is out of date too (the profile's addresses
    come from its external ids)."""
    by_email = connector.card(email="ada@example.com").json()  # cached, without the event
    assert all(e["event"] != ENGAGEMENT["event"] for e in by_email["events"])
    someone_else = connector.card(**{"from": "+447700900123"}).json()["freshness"]
    assert post(connector, {**ENGAGEMENT, "from": "+14155550123"}).status_code == 202
    drained(connector)
    after = connector.card(email="ada@example.com").json()  # well within the card's TTL
    assert after["events"][0]["event"] == ENGAGEMENT["event"]
    # Someone else's card, cached before, is still the one fetched then.
    assert connector.card(**{"from": "+447700900123"}).json()["freshness"] == someone_else


def test_the_event_is_about_the_profiles_user_id(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    post(connector, {**ENGAGEMENT, "email": "Ada@Example.com"})
    drained(connector)
    events = sandbox.profile("user_id:u-ada", "events").json()["data"]
    assert events[0]["external_ids"][0] == {
        "collection": "users",
        "type": "user_id",
        "id": "u-ada",
        "encoding": "none",
    }


def test_a_callers_identity_is_looked_up_once_for_a_burst_of_events(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    sandbox.control.reset_stats()
    for n in range(10):
        body = {**ENGAGEMENT, "from": "+14155550123", "properties": {"n": n}}
        assert post(connector, body).status_code == 202
    sections = sandbox.control.stats()["profile_api"]["by_section"]
    assert sections == {"external_ids": 1}


def test_a_profile_without_user_id_is_reached_by_its_identifier(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    sandbox.send(
        {
            "type": "identify",
            "anonymousId": "anon-visitor",
            "traits": {"email": "visitor@example.com", "name": "Visitor"},
        }
    )
    response = post(connector, {**ENGAGEMENT, "email": "Visitor@Example.com"})
    assert response.status_code == 202 and response.json()["identified"] is True
    drained(connector)
    ids = {
        f"{e['type']}:{e['id']}"
        for e in sandbox.profile("email:visitor@example.com", "external_ids").json()["data"]
    }
    assert "anonymous_id:anon-visitor" in ids  # the same profile, not a new one
    events = sandbox.profile("email:visitor@example.com", "events").json()["data"]
    assert events[0]["event"] == ENGAGEMENT["event"]


def test_events_are_kept_when_segment_cannot_identify_the_caller(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    sandbox.control.set_faults(error_rate=1.0, targets=["profile"])  # lookups fail
    response = post(connector, {**ENGAGEMENT, "from": "+447700900123"})
    assert response.status_code == 202 and response.json()["identified"] is False
    drained(connector)
    sandbox.control.clear_faults()
    events = sandbox.profile("user_id:u-alan", "events").json()["data"]
    assert events[0]["event"] == ENGAGEMENT["event"]  # matched on the phone in Segment


def test_studio_posts_a_form_with_dotted_fields(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    # The same parameters as the flow's lookup widget: Twilio's `From`, the flow's SID, and
    # the envelope fields integrators copy from widget to widget.
    response = connector.http.post(
        "/v1/events",
        data={
            "From": "whatsapp:+5511912345678",
            "FlowSid": "FW" + "0" * 32,
            "ExecutionSid": "FN" + "0" * 32,
            "AccountSid": "AC" + "0" * 32,
            "To": "whatsapp:+14155550000",
            "event": "IVR Choice",
            "properties.choice": "2",
            "properties.menu.name": "main",
        },
    )
    assert response.status_code == 202, response.text
    drained(connector)
    event = sandbox.profile("user_id:u-joao", "events").json()["data"][0]
    assert (event["event"], event["properties"]) == (
        "IVR Choice",
        {"choice": "2", "menu": {"name": "main"}},
    )
    opt_out = connector.http.post(
        "/v1/events",
        data={
            "type": "subscriptions",
            "from": "sms:+5511912345678",
            "sms_subscription_status": "false",
        },
    )
    assert opt_out.status_code == 202, opt_out.text
    drained(connector)
    profile = sandbox.control.profile("users", "user_id:u-joao")
    assert profile is not None
    sms = next(s for s in profile["subscriptions"] if s["type"] == "SMS")
    assert (sms["key"], sms["status"]) == ("+5511912345678", "UNSUBSCRIBED")


def test_a_subscription_change_lands_on_the_profile(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    response = post(
        connector,
        {
            "type": "subscriptions",
            "from": "whatsapp:+5511912345678",
            "whatsapp_subscription_status": False,
            "email": "joao.silva@example.com.br",
            "email_subscription_status": "true",
            "email_subscription_groups": {"newsletter": "false"},
        },
    )
    assert response.status_code == 202, response.text
    drained(connector)
    profile = sandbox.control.profile("users", "user_id:u-joao")
    assert profile is not None
    statuses = {(s["type"], s["key"]): s["status"] for s in profile["subscriptions"]}
    assert statuses[("WHATSAPP", "+5511912345678")] == "UNSUBSCRIBED"
    assert statuses[("EMAIL", "joao.silva@example.com.br")] == "SUBSCRIBED"


def test_identify_traits_change_the_card(connector: RunningConnector) -> None:
    post(connector, {"type": "identify", "from": "+14155550123", "traits": {"plan": "platinum"}})
    drained(connector)
    traits = connector.card(**{"from": "+14155550123"}).json()["traits"]
    assert traits[0] == {"key": "plan", "label": "Plan", "value": "platinum", "display": "platinum"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({**ENGAGEMENT, "from": "+14155550100"}, 404),  # nobody in Segment has this number
        ({"type": "track", "from": "+14155550123"}, 400),
        ({"type": "group", "from": "+14155550123"}, 400),
        ({"type": "subscriptions", "from": "+14155550123"}, 400),
        (
            {
                "type": "subscriptions",
                "identifier": "user_id:u-ada",
                "sms_subscription_status": "yes",
            },
            400,
        ),
        (
            {
                "type": "subscriptions",
                "identifier": "user_id:u-ada",
                "sms_subscription_status": "true",
            },
            400,
        ),  # no phone to subscribe
        ({**ENGAGEMENT}, 400),  # no caller
        ({**ENGAGEMENT, "from": "hello"}, 404),  # no customer's address: nothing to write to
        ({**ENGAGEMENT, "from": "anonymous"}, 404),
        ({**ENGAGEMENT, "From": ""}, 404),
        ({**ENGAGEMENT, "from": "client:agent_bob"}, 404),
        ({**ENGAGEMENT, "from": "+14155550123", "From": "+14155550199"}, 400),
        ({**ENGAGEMENT, "from": "+14155550123", "email": "ada@example.com"}, 400),
        ({**ENGAGEMENT, "phone": "anonymous"}, 400),
        ({**ENGAGEMENT, "from": "+14155550123", "surprise": 1}, 400),
        ({**ENGAGEMENT, "from": "+14155550123", "token": "x"}, 400),  # Flex's is `Token`
        ({**ENGAGEMENT, "from": "+14155550123", "evnt": "Typo"}, 400),
        ({**ENGAGEMENT, "from": "+14155550123", "properties": {"blob": "x" * 40_000}}, 400),
        ({**ENGAGEMENT, "from": "+14155550123", "messageId": "m" * 100}, 400),
    ],
)
def test_refusals(connector: RunningConnector, body: dict[str, Any], status: int) -> None:
    response = post(connector, body)
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message"}
    assert outbox(connector).depth().pending == 0


@pytest.mark.parametrize(
    ("caller", "why"),
    [("anonymous", "withheld"), ("+266696687", "withheld"), ("client:agent_bob", "customer")],
)
def test_an_event_about_no_customer_records_nothing_and_asks_no_one(
    connector: RunningConnector, sandbox: RunningSandbox, caller: str, why: str
) -> None:
    before = sandbox.control.stats()["profile_api"]["requests"]
    response = connector.http.post("/v1/events", data={"From": caller, "event": "IVR Choice"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found" and "nothing was recorded" in error["message"]
    assert why in error["message"] and caller not in error["message"]
    assert outbox(connector).depth().pending == 0
    assert sandbox.control.stats()["profile_api"]["requests"] == before


def test_a_form_field_repeated_with_different_values_is_refused(
    connector: RunningConnector,
) -> None:
    body = [("from", "+14155550123"), ("event", "A"), ("event", "B")]
    response = connector.http.post(
        "/v1/events",
        content="&".join(f"{k}={v}" for k, v in body).replace("+", "%2B"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text
    caller_twice = connector.http.post(
        "/v1/events", params={"From": "+14155550199"}, json={**ENGAGEMENT, "from": "+14155550123"}
    )
    assert caller_twice.status_code == 400
    assert outbox(connector).depth().pending == 0


def test_a_subscriptions_call_subscribes_the_email_it_names_for_the_caller_it_names(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    response = post(
        connector,
        {
            "type": "subscriptions",
            "from": "+14155550123",
            "email": " Ada.Work@Example.com ",
            "email_subscription_status": "true",
        },
    )
    assert response.status_code == 202, response.text
    drained(connector)
    profile = sandbox.control.profile("users", "user_id:u-ada")
    assert profile is not None
    statuses = {(s["type"], s["key"]): s["status"] for s in profile["subscriptions"]}
    assert statuses[("EMAIL", "ada.work@example.com")] == "SUBSCRIBED"


def wrong_space(connector: RunningConnector) -> None:
    text = connector.config.read_text()
    connector.config.write_text(text.replace('space_id = "spa_test"', 'space_id = "spa_tset"'))


@pytest.mark.parametrize("cause", ["space_not_found", "token_refused"])
def test_an_event_whose_caller_segment_cannot_be_asked_about_is_a_503_to_retry(
    make_connector: ConnectorFactory, sandbox: RunningSandbox, cause: str
) -> None:
    extra = f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n'
    token = "wrong-token" if cause == "token_refused" else TOKEN
    connector = make_connector(sandbox, extra, token=token)
    if cause == "space_not_found":
        wrong_space(connector)
    response = post(connector, {**ENGAGEMENT, "from": "+14155550123"})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == cause
    assert outbox(connector).depth().pending == 0  # not accepted into nothing


def test_an_over_long_field_name_is_not_echoed(connector: RunningConnector) -> None:
    long_name, half = "n" * 60_000, "n" * 30_000  # the form names it twice: under 64 KB
    refusals = [
        post(connector, {**ENGAGEMENT, "from": "+14155550123", long_name: 1}),
        connector.http.post(  # a form whose dotted names conflict, as Studio might send
            "/v1/events", data={"event": "E", "from": "+14155550123", half: "1", f"{half}.x": "2"}
        ),
    ]
    for response in refusals:
        assert response.status_code == 400, response.text
        assert len(response.content) < 1024
        assert response.json()["error"]["message"].startswith("Invalid event: nnn")


def chunks(body: bytes, size: int = 4096) -> Iterator[bytes]:
    """The body as a generator: httpx sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_is_limited_like_a_sized_one(connector: RunningConnector) -> None:
    event = {**ENGAGEMENT, "from": "+14155550123", "properties": {"blob": "x" * 70_000}}
    over = json.dumps(event).encode()
    form = urlencode({"event": "E", "from": "+14155550123", "properties.blob": "x" * 70_000})
    json_type = {"content-type": "application/json"}
    form_type = {"content-type": "application/x-www-form-urlencoded"}
    for path, body, headers in [
        ("/v1/events", over, json_type),
        ("/v1/events", form.encode(), form_type),
        (
            "/v1/cards",
            json.dumps({"from": "+14155550123", "pad": "x" * 70_000}).encode(),
            json_type,
        ),
    ]:
        sized = connector.http.post(path, content=body, headers=headers)
        chunked = connector.http.post(path, content=chunks(body), headers=headers)
        assert "content-length" in sized.request.headers
        assert chunked.request.headers["transfer-encoding"] == "chunked"
        assert sized.status_code == chunked.status_code == 413, chunked.text
        assert chunked.json() == sized.json() and set(chunked.json()["error"]) == {
            "code",
            "message",
        }
    assert outbox(connector).depth().pending == 0


def test_a_chunked_body_under_the_limit_is_read_whole(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    properties = {f"p{n:03}": "y" * 200 for n in range(100)} | {"last": "all of it"}
    event = {**ENGAGEMENT, "from": "+14155550123", "properties": properties}
    body = json.dumps(event).encode()
    headers = {"content-type": "application/json"}
    response = connector.http.post("/v1/events", content=chunks(body), headers=headers)
    assert response.status_code == 202, response.text
    drained(connector)
    delivered = sandbox.profile("user_id:u-ada", "events").json()["data"][0]
    assert delivered["properties"] == properties
    card = connector.http.post(
        "/v1/cards", content=chunks(b'{"from": "+14155550123"}', size=5), headers=headers
    )
    assert card.status_code == 200 and card.json()["found"] is True


def test_non_ascii_events_are_refused_at_the_api_or_delivered_never_dead(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    # 30 KB of UTF-8 (60 KB once escaped), then events straddling 32 KB as sent: each property
    # is about 71 bytes escaped, so the limit falls between 440 and 476 properties.
    events = [{**ENGAGEMENT, "properties": {"note": "\u4e2d" * 10_000}}]
    events += [
        {**ENGAGEMENT, "properties": {f"p{n:04}": "\u4e2d\u00e9" * 5 for n in range(count)}}
        for count in range(440, 480, 4)
    ]
    outcomes: dict[int, list[str]] = {}
    for event in events:
        response = post(connector, {**event, "from": "+14155550123"})
        assert response.status_code in (202, 400, 413), response.text
        outcomes.setdefault(response.status_code, []).append(response.text)
    nan = b'{"event": "E", "from": "+14155550123", "properties": {"x": NaN}}'
    refused = connector.http.post(
        "/v1/events", content=nan, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 400, refused.text
    drained(connector)
    accepted = [json.loads(text)["messageId"] for text in outcomes.get(202, [])]
    assert accepted and outcomes.get(400), outcomes.keys()  # the limit was straddled
    receipts = sandbox.control.stats(detail=True)["tracking"]["receipts"]
    assert all(receipts.get(m) == 1 for m in accepted)
    assert outbox(connector).dead_letters() == []


def test_no_outbox_file_until_write_back_is_on_with_all_it_needs(
    make_connector: ConnectorFactory, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    running = make_connector(sandbox, env={"SEGMENT_WRITE_KEY": ""})  # no write key here
    assert running.card(**{"from": "+14155550123"}).json()["found"] is True
    assert post(running, {**ENGAGEMENT, "from": "+14155550123"}).status_code == 403
    assert list(tmp_path.glob("*.sqlite*")) == []
    # The admin turns write-back on by an edit; the write key's variable is not set.
    turned_on = f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n'
    running.config.write_text(running.config.read_text() + turned_on, encoding="utf-8")
    config = running.http.get("/readyz").json()["config"]
    assert config["valid"] is False
    assert "SEGMENT_WRITE_KEY is not set: export SEGMENT_WRITE_KEY=" in config["error"]
    assert post(running, {**ENGAGEMENT, "from": "+14155550123"}).status_code == 403
    assert list(tmp_path.glob("*.sqlite*")) == []


def test_write_back_off_is_403(make_connector: ConnectorFactory, sandbox: RunningSandbox) -> None:
    response = post(make_connector(sandbox), {**ENGAGEMENT, "from": "+14155550123"})
    assert response.status_code == 403


def test_a_retried_request_is_recorded_once(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    body = {**ENGAGEMENT, "from": "+14155550123", "timestamp": "2026-11-23T10:00:00Z"}
    first, again = post(connector, body).json(), post(connector, body).json()
    assert first["messageId"] == again["messageId"] and again["duplicate"] is True
    drained(connector)
    receipts = sandbox.control.stats(detail=True)["tracking"]["receipts"]
    assert receipts[first["messageId"]] == 1


def test_1000_events_during_an_outage_are_all_delivered_once(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    sandbox.control.set_faults(error_rate=1.0, targets=["tracking"])
    callers = ["+14155550123", "+447700900123", "whatsapp:+5511912345678", "+33612345678"]
    ids = set()
    for n in range(1000):
        response = post(
            connector,
            {
                "type": "track",
                "event": "Outage Drill",
                "properties": {"n": n},
                "from": callers[n % 4],
            },
            as_flow=True,  # more events than one agent may write in a minute
        )
        assert response.status_code == 202
        ids.add(response.json()["messageId"])
    time.sleep(1.0)
    assert outbox(connector).depth().pending == 1000  # nothing got through, nothing lost
    sandbox.control.clear_faults()
    drained(connector, within=60)
    tracking = sandbox.control.stats(detail=True)["tracking"]
    assert {m for m in tracking["receipts"] if m in ids} == ids
    assert all(tracking["receipts"][m] == 1 for m in ids)
    assert tracking["dropped"] == {}


def test_an_event_past_the_give_up_age_is_parked_not_sent(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    then = time.time() - 21 * 3600  # past the default 20 h, inside Segment's 24 h window
    late = Outbox(sqlite_outbox(connector).path, clock=lambda: then)
    assert late.add({"type": "track", "userId": "u-ada", "event": "Late", "messageId": "late-1"})
    drained(connector)
    assert "late-1" not in sandbox.control.stats(detail=True)["tracking"]["receipts"]
    assert [(m, r) for m, r, _ in outbox(connector).dead_letters()] == [
        ("late-1", "not delivered before the give-up age")
    ]


def test_a_poisoned_message_is_parked_and_the_rest_delivered(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    sandbox.control.set_faults(error_rate=1.0, targets=["tracking"])  # so they batch together
    good = [
        post(connector, {"type": "track", "event": f"Good {n}", "from": "+14155550123"}).json()[
            "messageId"
        ]
        for n in range(9)
    ]
    poison = {
        "type": "track",
        "userId": "u-ada",
        "event": "Too Big",
        "messageId": "poison-1",
        "properties": {"blob": "x" * 40_000},
    }  # what an older version might have queued
    assert outbox(connector).add(poison)
    sandbox.control.clear_faults()
    drained(connector)
    receipts = sandbox.control.stats(detail=True)["tracking"]["receipts"]
    assert all(receipts.get(m) == 1 for m in good)
    assert "poison-1" not in receipts
    dead = outbox(connector).dead_letters()
    assert [(m, "32 KB" in reason) for m, reason, _ in dead] == [("poison-1", True)]


OUTBOX_BOUND = 64 * 1024  # an outbox with nothing pending: its schema and a few pages


def test_the_outbox_shrinks_back_once_sent_events_are_past_their_keeping_time(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    config = tmp_path / "connection.toml"
    writeback = f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n'
    config.write_text(connection_toml(sandbox.url, writeback), encoding="utf-8")
    connection = load_connection(config, connector_env(sandbox.url))
    now = [time.time()]
    box = Outbox(connection.outbox_path, clock=lambda: now[0])
    lazy = LazyOutbox(lambda: box)
    wal = box.path.with_name(box.path.name + "-wal")
    for n in range(2000):
        message = {"type": "track", "userId": f"u{n % 7}", "event": "Bulk", "messageId": f"b{n}"}
        assert box.add({**message, "properties": {"blob": "x" * 2000}}, subject=f"s{n}")
    with httpx.Client() as http:
        drainer = Drainer(lazy, http, lambda: connection, clock=lambda: now[0])
        drainer.start(idle=0.05)
        try:
            until(lambda: box.depth().pending == 0)
            assert box.file_bytes() > 4_000_000  # 2,000 events of 2 KB went through it
            now[0] += TIDY_EVERY_SECONDS + 1  # tidied, but sent rows still serve for a day
            until(lambda: not wal.exists() or wal.stat().st_size == 0)  # checkpointed
            assert box.depth().sent == 2000 and box.delivered_since(("s5",), now[0] - 3600)
            now[0] += KEEP_SENT_SECONDS
            until(lambda: box.file_bytes() < OUTBOX_BOUND)
            assert box.depth() == Depth(pending=0, oldest_pending_age=None, sent=0, dead=0)
        finally:
            drainer.stop()
    receipts = sandbox.control.stats(detail=True)["tracking"]["receipts"]
    assert all(receipts.get(f"b{n}") == 1 for n in range(2000))


def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)
