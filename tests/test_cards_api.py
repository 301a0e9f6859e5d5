"""The connector end to end: HTTP in, the sandbox's Profile API over loopback, a card out."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest

from connector.serving.processes import served_process
from connector.tls import tls_context
from tests.conftest import (
    ConnectorFactory,
    RunningConnector,
    RunningSandbox,
    SandboxFactory,
    connection_toml,
    connector_env,
)

CARD_KEYS = [
    "found",
    "connection",
    "lookup",
    "profile",
    "identifiers",
    "traits",
    "audiences",
    "computed_traits",
    "events",
    "accounts",
    "freshness",
]
FLEX = "https://flex.twilio.com"


def test_a_phone_lookup_gives_the_agent_card(connector: RunningConnector) -> None:
    response = connector.card(**{"from": "+1 (415) 555-0123"})
    assert response.status_code == 200
    card = response.json()
    assert list(card) == CARD_KEYS
    assert card["found"] is True and card["connection"] == "Owl Goods (demo)"
    assert card["lookup"] == {
        "input": "+1 (415) 555-0123",
        "identifier": "phone:+14155550123",
        "reason": None,
        "other_matches": [],  # (415) 555-0123, the second format, finds nobody else
    }
    assert card["profile"]["name"] == "Ada Lovelace"
    assert card["profile"]["subtitle"] == "Customer since 2021"
    assert card["profile"]["segment_id"].startswith("use_")
    assert [i["label"] for i in card["identifiers"]] == ["Customer ID", "Email", "Phone"]
    assert card["identifiers"][0]["values"] == ["u-ada"]
    traits = {t["key"]: t for t in card["traits"]}
    assert [t["label"] for t in card["traits"]][:3] == ["Plan", "Lifetime value", "Customer since"]
    assert traits["lifetime_value"]["display"] == "$1,850.00"
    assert traits["plan"]["value"] == "gold"
    assert [a["key"] for a in card["audiences"]] == ["vip"]
    assert {c["key"] for c in card["computed_traits"]} == {"orders_90d", "favorite_category"}
    assert 1 <= len(card["events"]) <= 10
    assert card["accounts"][0]["group_id"] == "acct-initech"
    assert {"key": "name", "label": "Name", "value": "Initech", "display": "Initech"} in card[
        "accounts"
    ][0]["traits"]
    assert card["freshness"]["stale"] is False and card["freshness"]["missing"] == []


@pytest.mark.parametrize(
    ("params", "name", "matched"),
    [
        ({"email": "  ADA@Example.com "}, "Ada Lovelace", "email:ada@example.com"),
        ({"from": "whatsapp:+5511912345678"}, "João Silva", "phone:+5511912345678"),
        ({"from": "sms:+447700900123"}, "Alan Turing", "phone:+447700900123"),
        ({"from": "tel:+14155550199"}, "Ben Carter", "phone:(415) 555-0199"),  # national format
        ({"phone": "(201) 555-0111"}, "Peter Parker", "phone:+12015550111"),
        ({"identifier": "user_id:u-fatima"}, "Fatima Zahra", "user_id:u-fatima"),
        ({"from": "Fatima.Zahra@Example.com"}, "Fatima Zahra", "email:fatima.zahra@example.com"),
    ],
)
def test_lookups_by_every_kind_of_address(
    connector: RunningConnector, params: dict[str, str], name: str, matched: str
) -> None:
    card = connector.card(**params).json()
    assert (card["profile"]["name"], card["lookup"]["identifier"]) == (name, matched)


def test_post_as_json_and_as_a_form(connector: RunningConnector) -> None:
    by_json = connector.http.post("/v1/cards", json={"from": "+14155550123"}).json()
    by_form = connector.http.post("/v1/cards", data={"From": "+14155550123"}).json()
    assert by_json["profile"]["name"] == by_form["profile"]["name"] == "Ada Lovelace"


def test_not_found_is_a_successful_lookup(connector: RunningConnector) -> None:
    response = connector.card(**{"from": "+14155550100"})
    assert response.status_code == 200
    card = response.json()
    assert list(card) == CARD_KEYS
    assert card["found"] is False and card["profile"] is None and card["traits"] == []
    assert card["lookup"] == {
        "input": "+14155550100",
        "identifier": None,
        "reason": None,
        "other_matches": [],
    }


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"from": "+14155550123", "email": "a@example.com"},
        {"from": "+14155550123", "From": "+14155550199"},
        {"from": "+1415555\x000123"},
        {"from": "+1" + "4" * 300},
        {"phone": "12"},
        {"phone": "anonymous"},
        {"phone": ""},
        {"email": "not-an-email"},
        {"identifier": "nocolon"},
    ],
)
def test_bad_input_is_a_clean_400(connector: RunningConnector, params: dict[str, str]) -> None:
    response = connector.card(**params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request_error"
    for value in filter(None, params.values()):
        assert value not in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"identifier": "nocolon"}, "The identifier given is not an identifier: give type:value,"),
        ({"from": "+1415\x07555"}, "The from given is not plain text: it has control characters."),
        ({"phone": "12"}, "The phone given is not a phone number."),
        ({"email": ""}, "The email given is empty."),
    ],
)
def test_a_bad_address_is_named_in_a_sentence(
    connector: RunningConnector, params: dict[str, str], message: str
) -> None:
    """What an agent reads through a plugin: a sentence, not two glued together."""
    response = connector.card(**params)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)


# --- callers that are no customer ----------------------------------------------------------

WITHHELD = ["anonymous", "Restricted", "Unknown", "+266696687", "+7378742833", "+86282452253", ""]
NOT_A_CUSTOMER = ["client:agent_bob", "sip:ada@example.com", "86753", "OwlGoods", "hello"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(raw, "withheld") for raw in WITHHELD]
    + [(raw, "not_a_customer_address") for raw in NOT_A_CUSTOMER],
)
def test_withheld_and_non_customer_callers_are_not_found_without_asking_segment(
    connector: RunningConnector, demo: RunningSandbox, raw: str, reason: str
) -> None:
    before = demo.control.stats()["profile_api"]["requests"]
    response = connector.card(**{"from": raw})
    assert response.status_code == 200, response.text
    card = response.json()
    assert list(card) == CARD_KEYS
    assert (card["found"], card["profile"]) == (False, None)
    assert card["lookup"] == {
        "input": raw,
        "identifier": None,
        "reason": reason,
        "other_matches": [],
    }
    flat = connector.http.post("/v1/studio/lookup", data={"From": raw}).json()
    assert (flat["found"], flat["status"], flat["reason"]) == (False, "not_found", reason)
    assert demo.control.stats()["profile_api"]["requests"] == before


def test_a_withheld_caller_is_audited_as_not_found(
    connector: RunningConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connector.audit")
    assert connector.card(**{"from": "anonymous"}).status_code == 200
    audits = [r for r in caplog.records if r.name == "connector.audit"]
    assert audits[-1].outcome == "not_found"  # type: ignore[attr-defined]
    assert audits[-1].caller.startswith("h_")  # type: ignore[attr-defined]


# --- one reader of caller fields, for every route ---------------------------------------------


def test_a_field_repeated_with_the_same_value_is_one_field(connector: RunningConnector) -> None:
    query = httpx.QueryParams(
        [("from", "+14155550123"), ("from", "+14155550123"), ("From", "+14155550123")]
    )
    assert connector.http.get("/v1/cards", params=query).json()["found"] is True
    both = connector.http.post(
        "/v1/cards", params={"from": "+14155550123"}, data={"From": "+14155550123"}
    )
    assert both.json()["profile"]["name"] == "Ada Lovelace"


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ([("from", "+14155550123"), ("from", "+14155550199")], None),  # repeated in the query
        ([("from", "+14155550123")], {"From": "+14155550199"}),  # query and body
        ([("phone", "+14155550123")], {"phone": "+14155550199"}),
        ([], {"from": "+14155550123", "From": "+14155550199"}),  # from and From
        ([], {"from": "+14155550123", "identifier": "user_id:u-ada"}),  # two kinds
        ([("email", "ada@example.com")], {"From": "+14155550123"}),
    ],
)
@pytest.mark.parametrize("path", ["/v1/cards", "/v1/studio/lookup"])
def test_conflicting_caller_fields_are_a_400_that_names_no_value(
    connector: RunningConnector,
    path: str,
    query: list[tuple[str, str | int | float | bool | None]],
    body: dict[str, str] | None,
) -> None:
    params = httpx.QueryParams(query)
    for as_json in (False, True):
        response = (
            connector.http.post(path, params=params, json=body)
            if as_json
            else connector.http.post(path, params=params, data=body)
        )
        assert response.status_code == 400, response.text
        message = response.json()["error"]["message"]
        assert "4155550" not in message and "@" not in message and "u-ada" not in message


def test_twilio_envelope_fields_are_accepted_on_every_lookup(connector: RunningConnector) -> None:
    envelope = {
        "FlowSid": "FW" + "0" * 32,
        "ExecutionSid": "FN" + "0" * 32,
        "AccountSid": "AC" + "0" * 32,
        "CallSid": "CA" + "0" * 32,
        "To": "+14155550000",
        "Direction": "inbound",
    }
    studio = connector.http.post("/v1/studio/lookup", data={"From": "+14155550123", **envelope})
    assert studio.json()["status"] == "found"
    card = connector.http.post("/v1/cards", json={"from": "+14155550123", **envelope})
    assert card.json()["found"] is True


@pytest.mark.parametrize(
    "body", ["[1, 2]", '{"from": 14155550123}', "{broken", "[" * 5000 + "]" * 5000]
)
def test_bad_json_bodies_are_400(connector: RunningConnector, body: str) -> None:
    response = connector.http.post(
        "/v1/cards", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"]


def test_an_oversized_body_is_413(connector: RunningConnector) -> None:
    response = connector.http.post("/v1/cards", data={"from": "+14155550123", "pad": "x" * 70_000})
    assert response.status_code == 413 and response.json()["error"]["code"]


# --- Studio ---------------------------------------------------------------------------------


def test_studio_gets_a_flat_object(connector: RunningConnector) -> None:
    response = connector.http.post("/v1/studio/lookup", data={"From": "whatsapp:+5511912345678"})
    assert response.status_code == 200
    flat = response.json()
    assert all(not isinstance(v, dict | list) for v in flat.values())
    assert flat["found"] is True and flat["status"] == "found" and flat["matches"] == 1
    assert flat["name"] == "João Silva" and flat["trait_plan"] == "gold"
    assert flat["identifier_user_id"] == "u-joao" and flat["audience_vip"] is True
    assert len(response.content) < 64 * 1024


def test_studio_not_found_and_bad_input(connector: RunningConnector) -> None:
    flat = connector.http.post("/v1/studio/lookup", data={"From": "+14155550100"}).json()
    assert (flat["found"], flat["status"], flat["matches"]) == (False, "not_found", 0)
    assert connector.http.post("/v1/studio/lookup", data={}).status_code == 400


# --- upstream trouble -----------------------------------------------------------------------


@pytest.fixture
def own_sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    return make_sandbox(data="demo")


def test_an_outage_is_served_stale_from_cache(
    make_connector: ConnectorFactory, own_sandbox: RunningSandbox
) -> None:
    # Cards expire at once (TTLs on a clock are the unit layer's: tests/unit/test_card_cache.py).
    connector = make_connector(own_sandbox, card_ttl_seconds=0, stale_for_seconds=60)
    fresh = connector.card(**{"from": "+14155550123"}).json()
    assert fresh["freshness"]["stale"] is False
    own_sandbox.control.set_faults(outage="refuse", seconds=10)
    try:
        started = time.monotonic()
        stale = connector.card(**{"from": "+14155550123"}).json()
        assert time.monotonic() - started < 5
        assert stale["freshness"]["stale"] is True
        assert stale["profile"] == fresh["profile"] and stale["traits"] == fresh["traits"]
        never_seen = connector.card(**{"from": "+447700900123"})
        assert never_seen.status_code == 503
        assert never_seen.json()["error"]["code"] == "upstream_unavailable"
        studio = connector.http.post("/v1/studio/lookup", data={"From": "+447700900123"})
        assert studio.status_code == 200 and studio.json()["status"] == "unavailable"
    finally:
        own_sandbox.sandbox.faults.clear()


def test_a_hanging_segment_is_answered_within_the_lookup_timeout(
    make_connector: ConnectorFactory, own_sandbox: RunningSandbox
) -> None:
    connector = make_connector(own_sandbox, timeout_seconds=1.0)
    own_sandbox.control.set_faults(outage="hang")
    try:
        started = time.monotonic()
        flat = connector.http.post("/v1/studio/lookup", data={"From": "+14155550123"}).json()
        assert flat["status"] == "unavailable"
        assert time.monotonic() - started < 2.0
    finally:
        own_sandbox.control.clear_faults()


def test_a_429_storm_is_absorbed(
    make_connector: ConnectorFactory, own_sandbox: RunningSandbox
) -> None:
    connector = make_connector(own_sandbox)
    own_sandbox.control.set_faults(storm_rate=1.0, retry_after=0.2, seconds=0.5)
    card = connector.card(**{"from": "+14155550123"}).json()
    assert card["found"] is True and card["freshness"]["missing"] == []
    assert own_sandbox.control.stats()["profile_api"]["by_status"]["429"] >= 1


def test_a_section_segment_fails_to_give_is_named_and_cached_briefly(
    make_connector: ConnectorFactory, own_sandbox: RunningSandbox
) -> None:
    connector = make_connector(own_sandbox, not_found_ttl_seconds=0)  # at once: see above
    own_sandbox.control.set_faults(error_rate=1.0, path_contains="/events")
    card = connector.card(**{"from": "+14155550123"}).json()
    assert card["found"] is True and card["events"] == []
    assert card["freshness"]["missing"] == ["events"]
    assert card["traits"] and card["accounts"]  # the rest of the card is there
    own_sandbox.control.clear_faults()  # a partial card lives only as long as a "not found"
    healed = connector.card(**{"from": "+14155550123"}).json()
    assert healed["events"] and healed["freshness"]["missing"] == []


def test_200_concurrent_lookups_make_one_fetch_per_section(
    make_connector: ConnectorFactory, own_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    reference = make_connector(own_sandbox)
    assert reference.card(**{"from": "+14155550123"}).json()["found"]
    one_lookup = own_sandbox.control.stats(detail=True)["profile_api"]["by_lookup"]
    # traits, audiences, computed, ids, events, links, the account's traits, and the traits of
    # the second candidate (the national format: another profile?)
    assert sum(one_lookup.values()) == 8
    own_sandbox.control.reset_stats()
    own_sandbox.control.set_faults(latency_ms=50)  # so that the 200 overlap

    # The connector as it runs in production, under gunicorn in its own process.
    config = tmp_path / "serve.toml"
    # One agent's 200 lookups: above the default per-agent limit, which is not under test here.
    extra = "\n[auth]\nagent_lookups_per_minute = 1000\n"
    config.write_text(connection_toml(own_sandbox.url, extra), encoding="utf-8")
    with served_process(config, connector_env(own_sandbox.url), threads=200) as served:
        url = served.url
        barrier = threading.Barrier(200)
        names: list[str] = []
        auth = {"Authorization": f"Bearer {reference.agent_token}"}
        tls = tls_context()  # one for the 200 clients: each would read the CA bundle

        def lookup() -> None:
            with httpx.Client(base_url=url, timeout=15, headers=auth, verify=tls) as client:
                barrier.wait()
                card = client.get("/v1/cards", params={"from": "+14155550123"}).json()
                names.append(card["profile"]["name"])

        threads = [threading.Thread(target=lookup) for _ in range(200)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert names == ["Ada Lovelace"] * 200
    assert own_sandbox.control.stats(detail=True)["profile_api"]["by_lookup"] == one_lookup


# --- CORS, health, reload ---------------------------------------------------------------------


@pytest.mark.parametrize(("params", "status"), [({"from": "+14155550123"}, 200), ({}, 400)])
def test_cors_for_flex_on_answers_and_errors(
    connector: RunningConnector, params: dict[str, str], status: int
) -> None:
    response = connector.http.get("/v1/cards", params=params, headers={"Origin": FLEX})
    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == FLEX
    other = connector.http.get(
        "/v1/cards", params=params, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_preflight(connector: RunningConnector) -> None:
    response = connector.http.options(
        "/v1/cards",
        headers={
            "Origin": FLEX,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == FLEX
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_health_and_readiness(connector: RunningConnector) -> None:
    assert connector.http.get("/healthz").json() == {"status": "ok"}
    ready = connector.http.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["config"] == {"valid": True, "error": None}
    assert body["upstream"]["token_accepted"] is True


def test_readiness_reports_a_refused_token(
    make_connector: ConnectorFactory, own_sandbox: RunningSandbox
) -> None:
    connector = make_connector(own_sandbox, token="wrong-token")
    ready = connector.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["upstream"]["token_accepted"] is False
    assert ready.json()["upstream"]["code"] == "token_refused"
    assert "wrong-token" not in ready.text


def wrong_space(connector: RunningConnector) -> str:
    """Mistype the connection's space_id (the file is re-read on every request); the good text."""
    good = connector.config.read_text()
    connector.config.write_text(good.replace('space_id = "spa_test"', 'space_id = "spa_tset"'))
    return good


def test_a_missing_space_is_a_503_that_names_it_not_an_unknown_customer(
    make_connector: ConnectorFactory, own_sandbox: RunningSandbox
) -> None:
    connector = make_connector(own_sandbox)
    good = wrong_space(connector)
    response = connector.card(**{"from": "tel:+14155550199"})  # two candidate formats
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "space_not_found" and "check space_id" in error["message"]
    assert response.headers["Request-Id"] in error["message"]  # Segment's, for support
    # Not a "no" about this customer: the next candidate is not tried, and nothing is cached.
    asked = own_sandbox.control.stats(detail=True)["profile_api"]["by_lookup"]
    assert len({key.split(" ", 1)[1] for key in asked}) == 1  # the first candidate's sections
    flat = connector.http.post("/v1/studio/lookup", data={"From": "+14155550199"})
    assert flat.status_code == 200
    assert (flat.json()["status"], flat.json()["reason"]) == ("unavailable", "space_not_found")
    assert "space_id" in flat.json()["message"]
    ready = connector.http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["upstream"]["code"] == "space_not_found"
    assert "space_id" in ready.json()["upstream"]["detail"]
    connector.config.write_text(good)
    assert connector.card(**{"from": "tel:+14155550199"}).json()["found"] is True


def test_a_refused_token_is_a_503_that_names_it(
    make_connector: ConnectorFactory, own_sandbox: RunningSandbox
) -> None:
    connector = make_connector(own_sandbox, token="wrong-token")
    response = connector.card(**{"from": "+14155550123"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "token_refused"
    flat = connector.http.post("/v1/studio/lookup", data={"From": "+14155550123"}).json()
    assert (flat["status"], flat["reason"]) == ("unavailable", "token_refused")
    assert "wrong-token" not in response.text + str(flat)


def test_readiness_when_segment_is_down(
    make_connector: ConnectorFactory, own_sandbox: RunningSandbox
) -> None:
    connector = make_connector(own_sandbox)
    # The agent's token is checked (and cached) before the outage, which also silences the
    # sandbox's Twilio side.
    assert connector.card(**{"from": "+14155550123"}).status_code == 200
    own_sandbox.control.set_faults(outage="refuse", seconds=10)
    try:
        ready = connector.http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["upstream"]["reachable"] is False
    finally:
        own_sandbox.sandbox.faults.clear()


def test_a_good_edit_applies_and_a_bad_one_keeps_the_last_good(
    connector: RunningConnector,
) -> None:
    good = connector.config.read_text()
    connector.config.write_text(good.replace("Owl Goods (demo)", "Owl Goods (edited)"))
    assert connector.card(**{"from": "+14155550123"}).json()["connection"] == "Owl Goods (edited)"
    connector.config.write_text(good.replace("friendly_name", "frendly_name"))
    card = connector.card(**{"from": "+14155550123"}).json()
    assert card["connection"] == "Owl Goods (edited)"
    config = connector.http.get("/readyz").json()["config"]
    assert config["valid"] is False and "connection.frendly_name" in config["error"]
    assert "did you mean friendly_name" in config["error"]


def test_card_json_is_stable(connector: RunningConnector) -> None:
    first = connector.card(**{"from": "+14155550123"}).json()
    second = connector.card(**{"from": "+14155550123"}).json()
    for card in (first, second):
        card["freshness"].pop("age_seconds")
    assert json.dumps(first) == json.dumps(second)
