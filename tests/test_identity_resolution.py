"""Identity resolution as tables: message sequences in, expected profiles out."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningSandbox, SandboxFactory

Msg = dict[str, Any]


def identify(traits: dict[str, Any] | None = None, **ids: Any) -> Msg:
    return {"type": "identify", **ids, "traits": traits or {}}


def track(event: str = "Viewed", **fields: Any) -> Msg:
    return {"type": "track", "event": event, **fields}


def ctx_email(email: str) -> dict[str, Any]:
    return {"traits": {"email": email}}


# Each case: messages in order, then the profiles that must exist, each given by the exact set of
# its identifiers; `absent` identifiers must resolve to no profile at all.
CASES: dict[str, tuple[list[Msg], list[set[str]], set[str]]] = {
    "anonymous visitor identifies later": (
        [
            track(anonymousId="a1"),
            track(anonymousId="a1", event="Pricing Viewed"),
            identify({"email": "Ann@Example.com"}, userId="u1", anonymousId="a1"),
        ],
        [{"user_id:u1", "anonymous_id:a1", "email:ann@example.com"}],
        set(),
    ),
    "cross-device merge": (
        [
            track(anonymousId="phone"),
            track(anonymousId="laptop"),
            identify(userId="u1", anonymousId="phone"),
            track(userId="u1", anonymousId="laptop"),
        ],
        [{"user_id:u1", "anonymous_id:phone", "anonymous_id:laptop"}],
        set(),
    ),
    "blocked values never merge": (
        [
            identify(userId="u1", anonymousId="anonymous"),
            identify(userId="u2", anonymousId="anonymous"),
            identify({"email": "null"}, userId="u3"),
            identify({"email": "NULL"}, userId="u4"),
            identify({"phone": "0000000"}, userId="u5"),
            identify({"phone": "-1"}, userId="u6"),
            identify({"phone": "0000000"}, userId="u7"),
        ],
        [
            {"user_id:u1"},
            {"user_id:u2"},
            {"user_id:u3"},
            {"user_id:u4"},
            {"user_id:u5"},
            {"user_id:u6"},
            {"user_id:u7"},
        ],
        {"anonymous_id:anonymous", "email:null", "phone:0000000", "phone:-1"},
    ),
    "two user_ids sharing an email do not merge": (
        [
            identify({"email": "family@example.com"}, userId="u-parent"),
            identify({"email": "family@example.com"}, userId="u-child"),
        ],
        [{"user_id:u-parent", "email:family@example.com"}, {"user_id:u-child"}],
        set(),
    ),
    "emails match whatever their case": (
        [
            identify({"email": "Case@Example.COM"}, userId="u1"),
            track(anonymousId="a9", context=ctx_email("case@example.com")),
        ],
        [{"user_id:u1", "email:case@example.com", "anonymous_id:a9"}],
        set(),
    ),
    "anonymous profiles merge through shared identifiers": (
        [
            identify({"email": "e@example.com"}, anonymousId="a1"),
            identify({"phone": "+15550001"}, anonymousId="a2"),
            identify({"email": "e@example.com", "phone": "+15550001"}, anonymousId="a3"),
        ],
        [
            {
                "anonymous_id:a1",
                "anonymous_id:a2",
                "anonymous_id:a3",
                "email:e@example.com",
                "phone:+15550001",
            }
        ],
        set(),
    ),
    "a merge that would give two user_ids drops identifiers instead": (
        [
            identify({"email": "one@example.com"}, userId="u1"),
            identify({"phone": "+15550002"}, userId="u2"),
            identify({"email": "one@example.com", "phone": "+15550002"}, anonymousId="ax"),
        ],
        [{"user_id:u1", "email:one@example.com"}, {"user_id:u2", "phone:+15550002"}],
        {"anonymous_id:ax"},
    ),
    "a sixth anonymous_id is over the limit of five": (
        [identify(userId="u1", anonymousId=f"a{n}") for n in range(1, 7)],
        [{"user_id:u1", *(f"anonymous_id:a{n}" for n in range(1, 6))}],
        {"anonymous_id:a6"},
    ),
    "a user logging in on a shared device keeps their own profile": (
        [identify(userId="u1", anonymousId="kiosk"), identify(userId="u2", anonymousId="kiosk")],
        [{"user_id:u1", "anonymous_id:kiosk"}, {"user_id:u2"}],
        set(),
    ),
    "custom identifiers from context.externalIds": (
        [
            identify(
                userId="u1",
                context={
                    "externalIds": [
                        {"id": "CRM-9", "type": "crm_id", "collection": "users", "encoding": "none"}
                    ]
                },
            ),
            track(anonymousId="a1", context={"externalIds": [{"id": "crm-9", "type": "CRM_ID"}]}),
        ],
        [{"user_id:u1", "crm_id:crm-9", "anonymous_id:a1"}],
        set(),
    ),
    "numbers are identifiers too": (
        [identify(userId=12345), track(userId="12345", anonymousId="a1")],
        [{"user_id:12345", "anonymous_id:a1"}],
        set(),
    ),
}


def external_ids(sandbox: RunningSandbox, identifier: str) -> frozenset[str] | None:
    """All identifiers of the profile holding `identifier`, or None when none holds it."""
    response = sandbox.profile(identifier, "external_ids", limit=100)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return frozenset(f"{e['type']}:{e['id']}" for e in response.json()["data"])


@pytest.mark.parametrize(("messages", "profiles", "absent"), CASES.values(), ids=CASES.keys())
def test_resolution(
    make_sandbox: SandboxFactory, messages: list[Msg], profiles: list[set[str]], absent: set[str]
) -> None:
    sandbox = make_sandbox()
    sandbox.send(*messages)
    for expected in profiles:
        holders = {external_ids(sandbox, identifier) for identifier in expected}
        assert holders == {frozenset(expected)}, f"{expected} should be exactly one profile"
    for identifier in absent:
        assert external_ids(sandbox, identifier) is None, identifier


def test_merged_profiles_keep_every_event(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    sandbox.send(
        track(anonymousId="phone", event="A"),
        track(anonymousId="laptop", event="B"),
        identify(userId="u1", anonymousId="phone"),
        track(userId="u1", anonymousId="laptop", event="C"),
    )
    events = sandbox.profile("user_id:u1", "events", limit=100).json()["data"]
    assert sorted(e["event"] for e in events) == ["A", "B", "C", "Identify"]
    assert len({e["related"]["users"] for e in events}) == 1


def test_old_segment_ids_follow_the_merge(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    sandbox.send(track(anonymousId="a1"))
    before = sandbox.profile("anonymous_id:a1", "events").json()["data"][0]["related"]["users"]
    sandbox.send(
        track(anonymousId="a2"),
        identify(userId="u1", anonymousId="a2"),
        identify(userId="u1", anonymousId="a1"),
    )
    after = sandbox.profile("user_id:u1", "events").json()["data"][0]["related"]["users"]
    assert sandbox.profile(before, "external_ids").status_code == 200
    assert sandbox.profile(after, "traits").status_code == 200


# --- traits ---------------------------------------------------------------------------------


def traits(sandbox: RunningSandbox, identifier: str, **params: Any) -> dict[str, Any]:
    found: dict[str, Any] = sandbox.profile(identifier, "traits", limit=200, **params).json()[
        "traits"
    ]
    return found


TRAIT_CASES: dict[str, tuple[list[Msg], dict[str, Any]]] = {
    "the last update wins": (
        [
            identify({"plan": "gold"}, userId="u1", timestamp="2026-11-20T10:00:00Z"),
            identify({"plan": "silver"}, userId="u1", timestamp="2026-11-19T10:00:00Z"),
            identify({"city": "Lyon"}, userId="u1", timestamp="2026-11-18T10:00:00Z"),
        ],
        {"plan": "gold", "city": "Lyon"},
    ),
    "null removes a trait": (
        [identify({"a": 1, "b": 2}, userId="u1"), identify({"a": None}, userId="u1")],
        {"b": 2},
    ),
    "a merge keeps the newest value of each trait": (
        [
            identify(
                {"plan": "old", "seen": "anon"}, anonymousId="a1", timestamp="2026-11-01T00:00:00Z"
            ),
            identify({"plan": "new"}, userId="u1", timestamp="2026-11-10T00:00:00Z"),
            identify(userId="u1", anonymousId="a1", timestamp="2026-11-11T00:00:00Z"),
        ],
        {"plan": "new", "seen": "anon"},
    ),
    "values keep their JSON types": (
        [identify({"n": 1.5, "ok": False, "tags": ["a", "b"], "nested": {"x": None}}, userId="u1")],
        {"n": 1.5, "ok": False, "tags": ["a", "b"], "nested": {"x": None}},
    ),
    "track calls' context.traits identify but do not set traits": (
        [
            identify({"name": "N"}, userId="u1"),
            track(userId="u1", context={"traits": {"name": "Other", "email": "n@example.com"}}),
        ],
        {"name": "N"},
    ),
}


@pytest.mark.parametrize(("messages", "expected"), TRAIT_CASES.values(), ids=TRAIT_CASES.keys())
def test_traits(
    make_sandbox: SandboxFactory, messages: list[Msg], expected: dict[str, Any]
) -> None:
    sandbox = make_sandbox()
    sandbox.send(*messages)
    assert traits(sandbox, "user_id:u1") == expected


def test_engage_computations_land_as_classes_not_events(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    personas = {"computation_key": "k", "computation_id": "id"}
    sandbox.send(
        identify({"name": "N"}, userId="u1"),
        identify(
            {"orders_90d": 4},
            userId="u1",
            context={"personas": {**personas, "computation_class": "computed_trait"}},
        ),
        identify(
            {"vip": True},
            userId="u1",
            context={"personas": {**personas, "computation_class": "audience"}},
        ),
    )
    assert traits(sandbox, "user_id:u1") == {"name": "N", "orders_90d": 4, "vip": True}
    assert traits(sandbox, "user_id:u1", **{"class": "audience"}) == {"vip": True}
    assert traits(sandbox, "user_id:u1", **{"class": "computed_trait"}) == {"orders_90d": 4}
    events = sandbox.profile("user_id:u1", "events").json()["data"]
    assert [e["event"] for e in events] == ["Identify"]


def test_group_calls_make_accounts_and_links(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    sandbox.send(
        {
            "type": "group",
            "userId": "u1",
            "groupId": "G-1",
            "traits": {"name": "Initech", "email": "ops@initech.com"},
        },
        {"type": "group", "userId": "u2", "groupId": "g-1", "traits": {"plan": "enterprise"}},
    )
    account = traits(sandbox, "group_id:g-1", collection="accounts")
    assert account == {"name": "Initech", "email": "ops@initech.com", "plan": "enterprise"}
    # traits.email on a group call describes the account: it is not a user identifier
    assert sandbox.profile("email:ops@initech.com", "traits").status_code == 404
    links = sandbox.profile("group_id:g-1", "links", collection="accounts").json()["data"]
    assert len(links) == 2 and {link["to_collection"] for link in links} == {"users"}
    assert sandbox.profile("user_id:u1", "links").json()["data"][0]["to_collection"] == "accounts"


def test_subscriptions_are_kept_per_profile(make_sandbox: SandboxFactory) -> None:
    sandbox = make_sandbox()
    sandbox.send(
        identify(
            userId="u1",
            context={
                "messaging_subscriptions": [
                    {"key": "+14155550123", "type": "SMS", "status": "SUBSCRIBED"},
                    {
                        "key": "U@Example.com",
                        "type": "EMAIL",
                        "status": "unsubscribed",
                        "groups": [{"name": "newsletter", "status": "UNSUBSCRIBED"}],
                    },
                    {"key": "x", "type": "SMS", "status": "MAYBE"},
                ]
            },
        )
    )
    profile = sandbox.control.profile("users", "user_id:u1")
    assert profile is not None
    subscriptions = {(s["type"], s["key"]): s["status"] for s in profile["subscriptions"]}
    assert subscriptions == {
        ("EMAIL", "u@example.com"): "UNSUBSCRIBED",
        ("SMS", "+14155550123"): "SUBSCRIBED",
    }
