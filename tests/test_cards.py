"""Card building is pure: tables of payloads and settings in, cards out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.cards.build import (
    account_name,
    card_body,
    display,
    display_name,
    event,
    for_request,
    studio_payload,
)
from connector.cards.profile import AccountData, ProfileData
from connector.cards.text import humanize
from connector.config.schema import ConnectionFile

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONFIG = ConnectionFile.model_validate(
    {
        "connection": {"friendly_name": "Owl Goods", "space_id": "spa_1"},
        "identifiers": [{"type": "email", "label": "Email"}, {"type": "user_id", "label": "ID"}],
        "traits": [
            {"key": "plan", "label": "Plan"},
            {"key": "ltv", "label": "Lifetime value", "format": "currency"},
            {"key": "absent", "label": "Never there"},
        ],
        "audiences": [{"key": "vip", "label": "VIP"}, {"key": "churn", "label": "Churn risk"}],
    }
)
DATA = ProfileData(
    matched="phone:+14155550123",
    segment_id="use_1",
    traits={
        "plan": "gold",
        "ltv": 1850,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "customer_since": "2021-03-04",
    },
    audiences={"vip": True, "churn": False, "other": True},
    computed_traits={"orders_90d": 7},
    external_ids=[
        {"type": "user_id", "id": "u1"},
        {"type": "email", "id": "a@example.com"},
        {"type": "email", "id": "b@example.com"},
        {"type": "anonymous_id", "id": "x"},
    ],
    events=[
        {
            "event": "Order Completed",
            "timestamp": "2026-11-20T10:00:00Z",
            "properties": {"revenue": 12},
        }
    ],
    accounts=[AccountData("acct_42", {"name": "Initech", "employees": 1200})],
)


def card(
    data: ProfileData | None = DATA, config: ConnectionFile = CONFIG, **kwargs: Any
) -> dict[str, Any]:
    built = for_request(
        card_body(config, data),
        "+1 (415) 555-0123",
        data,
        NOW - timedelta(seconds=3),
        NOW,
        **kwargs,
    )
    result: dict[str, Any] = built.model_dump(mode="json")
    return result


def test_a_found_card() -> None:
    built = card()
    assert built["profile"] == {
        "segment_id": "use_1",
        "name": "Ada Lovelace",
        "subtitle": "Customer since 2021",
    }
    assert built["lookup"] == {
        "input": "+1 (415) 555-0123",
        "identifier": "phone:+14155550123",
        "reason": None,
        "other_matches": [],
    }
    assert built["identifiers"] == [
        {"type": "email", "label": "Email", "values": ["a@example.com", "b@example.com"]},
        {"type": "user_id", "label": "ID", "values": ["u1"]},
    ]
    assert [(t["label"], t["display"]) for t in built["traits"]] == [
        ("Plan", "gold"),
        ("Lifetime value", "$1,850.00"),
    ]
    assert built["audiences"] == [{"key": "vip", "label": "VIP", "value": True, "display": "Yes"}]
    assert built["computed_traits"] == [
        {"key": "orders_90d", "label": "Orders 90d", "value": 7, "display": "7"}
    ]
    assert built["accounts"][0]["traits"][0]["label"] == "Employees"
    assert built["freshness"] == {
        "fetched_at": "2026-11-23T11:59:57Z",
        "age_seconds": 3,
        "stale": False,
        "missing": [],
    }


def test_a_not_found_card_has_every_key_and_nothing_else() -> None:
    built = card(None)
    assert built["found"] is False and built["profile"] is None
    assert all(
        built[k] == []
        for k in ("identifiers", "traits", "audiences", "computed_traits", "events", "accounts")
    )


def test_stale_and_missing_sections_show_in_freshness() -> None:
    partial = ProfileData(
        matched="email:a@example.com", segment_id=None, traits={}, missing=("events",)
    )
    built = card(partial, stale=True)
    assert built["freshness"]["stale"] is True and built["freshness"]["missing"] == ["events"]
    assert built["profile"]["name"] == "a@example.com"  # no name traits: the matched value


def test_unconfigured_sections_show_everything_humanized() -> None:
    bare = ConnectionFile.model_validate({"connection": {"friendly_name": "x", "space_id": "s"}})
    built = card(config=bare)
    assert [a["key"] for a in built["audiences"]] == ["other", "vip"]
    assert {i["type"] for i in built["identifiers"]} == {"user_id", "email", "anonymous_id"}
    assert built["traits"] == []  # traits are shown only when configured


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (1850, "currency", "$1,850.00"),
        (12.5, "currency", "$12.50"),
        ("n/a", "currency", "n/a"),
        (1234567, "number", "1,234,567"),
        (3.5, "number", "3.5"),
        (0.25, "percent", "25%"),
        (40, "percent", "40%"),
        ("2021-03-04", "date", "4 Mar 2021"),
        ("2021-03-04T10:00:00Z", "date", "4 Mar 2021"),
        ("soon", "date", "soon"),
        (True, "boolean", "Yes"),
        (False, "text", "No"),
        ("true", "boolean", "Yes"),
        (["a", "b"], "text", "a, b"),
        ({"b": 1, "a": 2}, "text", '{"a": 2, "b": 1}'),
        (None, "text", "None"),
    ],
)
def test_display_formats(value: Any, fmt: Any, expected: str) -> None:
    assert display(value, fmt) == expected


def test_other_currencies() -> None:
    assert display(10, "currency", "EUR") == "€10.00"
    assert display(10, "currency", "CHF") == "10.00 CHF"


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("orders_90d", "Orders 90d"),
        ("lifetimeValue", "Lifetime value"),
        ("VIP", "Vip"),
        ("cart-abandoners", "Cart abandoners"),
    ],
)
def test_humanize(key: str, label: str) -> None:
    assert humanize(key) == label


@pytest.mark.parametrize(
    ("traits", "name"),
    [
        ({"name": " Ada L "}, "Ada L"),
        ({"first_name": "Ada"}, "Ada"),
        ({"name": 5, "last_name": "L"}, "L"),
        ({}, "+14155550123"),
    ],
)
def test_display_name(traits: dict[str, Any], name: str) -> None:
    data = ProfileData(matched="phone:+14155550123", segment_id=None, traits=traits)
    assert display_name(data) == name


def test_studio_payload_is_flat() -> None:
    built = for_request(card_body(CONFIG, DATA), "x", DATA, NOW, NOW)
    flat = studio_payload(built, "found")
    assert flat["trait_plan"] == "gold" and flat["audience_vip"] is True
    assert flat["identifier_email"] == "a@example.com" and flat["account_name"] == "Initech"
    assert flat["last_event"] == "Order Completed"
    assert all(not isinstance(v, dict | list) for v in flat.values())


def test_studio_payload_stays_under_64_kb() -> None:
    huge = ProfileData(
        matched="user_id:u",
        segment_id=None,
        traits={},
        computed_traits={f"k{n}": "x" * 2000 for n in range(200)},
    )
    bare = ConnectionFile.model_validate({"connection": {"friendly_name": "x", "space_id": "s"}})
    flat = studio_payload(for_request(card_body(bare, huge), "x", huge, NOW, NOW), "found")
    assert len(json.dumps(flat).encode()) < 64 * 1024
    assert flat["status"] == "found" and flat["found"] is True
    assert "reason" in flat and "segment_id" in flat  # the fixed fields stay
    assert all(len(v) <= 500 for v in flat.values() if isinstance(v, str))


@pytest.mark.parametrize("reason", ["withheld", "not_a_customer_address"])
def test_a_caller_who_is_no_customer_is_a_not_found_card_with_the_reason(reason: str) -> None:
    built = for_request(
        card_body(CONFIG, None),
        "anonymous",
        None,
        NOW,
        NOW,
        reason=reason,  # type: ignore[arg-type]
    )
    assert built.found is False and built.lookup.reason == reason
    flat = studio_payload(built, "not_found")
    assert (flat["found"], flat["status"], flat["reason"]) == (False, "not_found", reason)
    not_found = for_request(card_body(CONFIG, None), "x", None, NOW, NOW)
    assert studio_payload(not_found, "not_found")["reason"] is None


def test_one_body_serves_every_request_with_its_own_lookup_and_age() -> None:
    """A warm card's body is built once per fetch and version of the file; what was asked and
    how old the data is belong to each request."""
    body = card_body(CONFIG, DATA)
    fetched = NOW - timedelta(seconds=30)
    first = for_request(body, "+1 415 555 0123", DATA, fetched, NOW)
    later = for_request(body, "whatsapp:+14155550123", DATA, fetched, NOW + timedelta(seconds=90))
    assert (first.lookup.input, first.freshness.age_seconds) == ("+1 415 555 0123", 30)
    assert (later.lookup.input, later.freshness.age_seconds) == ("whatsapp:+14155550123", 120)
    assert first.model_dump(exclude={"lookup", "freshness"}) == later.model_dump(
        exclude={"lookup", "freshness"}
    )
    assert body.lookup.input == "" and body.freshness.fetched_at == ""  # the body is untouched


# --- events as agents read them ------------------------------------------------------------------

SUBSCRIPTION_CHANGE = {
    "type": "identify",
    "event": "Identify",
    "traits": {},
    "context": {
        "messaging_subscriptions": [
            {"key": "ada@example.com", "type": "EMAIL", "status": "UNSUBSCRIBED"},
            {"key": "+14155550123", "type": "WHATSAPP", "status": "SUBSCRIBED"},
        ]
    },
}


@pytest.mark.parametrize(
    ("raw", "kind", "title"),
    [
        ({"type": "track", "event": "Order Completed"}, "track", "Order Completed"),
        ({"event": "Call Ended"}, "track", "Call Ended"),
        ({"type": "track"}, "track", "(unnamed event)"),
        (
            SUBSCRIPTION_CHANGE,
            "subscription_change",
            "Subscription changed: Email unsubscribed, WhatsApp subscribed",
        ),
        (
            {"type": "identify", "event": "Identify", "traits": {"plan": 1, "city": 2}},
            "identify",
            "Profile updated: City, Plan",
        ),
        (
            {"type": "identify", "traits": dict.fromkeys(("a", "b", "c", "d", "e"), 1)},
            "identify",
            "Profile updated: A, B, C and 2 more",
        ),
        ({"type": "identify", "event": "Identify"}, "identify", "Profile updated"),
        (
            {"type": "group", "group_id": "ACCT-1", "traits": {"name": "Initech"}},
            "group",
            "Joined account Initech",
        ),
        ({"type": "group", "group_id": "ACCT-1"}, "group", "Joined account ACCT-1"),
        ({"type": "page", "properties": {"path": "/pricing"}}, "page", "Viewed page /pricing"),
    ],
)
def test_events_are_titled_for_what_they_did(raw: dict[str, Any], kind: str, title: str) -> None:
    shown = event(raw)
    assert (shown.kind, shown.title) == (kind, title)


def test_a_subscription_change_details_channels_not_addresses() -> None:
    details = event(SUBSCRIPTION_CHANGE).details
    assert details == {"Email": "unsubscribed", "WhatsApp": "subscribed"}
    assert "ada@example.com" not in str(details)


def test_an_identify_shows_its_traits_and_a_track_its_properties() -> None:
    assert event({"type": "identify", "traits": {"plan": "gold"}}).details == {"plan": "gold"}
    assert event({"event": "X", "properties": {"n": 1}}).details == {"n": 1}


def test_an_account_is_named_by_its_name_trait() -> None:
    assert account_name({"name": " Initech ", "plan": "x"}) == "Initech"
    assert account_name({"company_name": "Hooli"}) == "Hooli"
    assert account_name({"plan": "x"}) is None
