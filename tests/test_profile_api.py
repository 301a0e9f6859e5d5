"""The Profile API contract (reference/004), over real HTTP against the sandbox."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import SPACE, TOKEN, RunningSandbox, SandboxFactory, start_sandbox

NOW = datetime.now(UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def contract_messages() -> list[dict[str, Any]]:
    many = {f"t_{n:03d}": n for n in range(250)}
    messages: list[dict[str, Any]] = [
        {"type": "identify", "userId": "u-many", "traits": many, "timestamp": ago(days=1)},
        {
            "type": "identify",
            "userId": "u-many",
            "traits": {"orders_90d": 7},
            "context": {"personas": {"computation_class": "computed_trait"}},
        },
        {
            "type": "identify",
            "userId": "u-many",
            "traits": {"vip": True},
            "context": {"personas": {"computation_class": "audience"}},
        },
        {
            "type": "identify",
            "userId": "u-phone",
            "anonymousId": "anon-phone",
            "traits": {"phone": "+14155550123", "email": "Mixed.Case@Example.com", "name": "Pat"},
        },
        {
            "type": "identify",
            "userId": "u-slash",
            "traits": {"name": "Slash"},
            "context": {
                "externalIds": [
                    {"id": "a/b", "type": "crm_id", "collection": "users", "encoding": "none"}
                ]
            },
        },
    ]
    for n in range(25):
        messages.append(
            {
                "type": "track",
                "userId": "u-events",
                "event": f"Event {n % 3}",
                "properties": {"n": n},
                "timestamp": ago(hours=n * 10 + 1),
                "messageId": f"ev-{n:02d}",
            }
        )
    for n in range(3):
        messages.append(
            {
                "type": "track",
                "userId": "u-events",
                "event": "Too Old",
                "timestamp": ago(days=15 + n),
                "messageId": f"old-{n}",
            }
        )
    for n in range(25):
        messages.append(
            {
                "type": "group",
                "userId": f"u-member-{n:02d}",
                "groupId": "acct-big",
                "traits": {"name": "Big Co", "employees": 5000},
            }
        )
    return messages


@pytest.fixture(scope="module")
def api() -> Iterator[RunningSandbox]:
    running = start_sandbox(contract_messages())
    yield running
    running.close()


def error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return response.status_code, body["error"]["code"]


# --- authentication and errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        None,
        ("wrong-token", ""),
        (TOKEN, "not-blank"),
        "Bearer " + TOKEN,
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(TOKEN.encode()).decode(),
    ],
    ids=["none", "wrong", "password", "bearer", "garbage", "no-colon"],
)
def test_bad_credentials_get_401_authentication_error(api: RunningSandbox, auth: Any) -> None:
    path = f"/v1/spaces/{SPACE}/collections/users/profiles/user_id:u-phone/traits"
    headers = {"Authorization": auth} if isinstance(auth, str) else {}
    response = api.http.get(path, auth=auth if isinstance(auth, tuple) else None, headers=headers)
    assert error(response) == (401, "authentication_error")
    assert response.headers["Request-Id"]


def test_every_response_has_a_distinct_request_id(api: RunningSandbox) -> None:
    responses = [
        api.profile("user_id:u-phone", "traits"),
        api.profile("user_id:nobody", "traits"),
        api.http.get("/nowhere"),
        api.http.post("/v1/track", content=b"{"),
    ]
    ids = {r.headers["Request-Id"] for r in responses}
    assert len(ids) == 4


def test_unknown_profile_is_404_with_segments_message(api: RunningSandbox) -> None:
    response = api.profile("user_id:nobody", "traits")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Profile was not found."}}


def test_unknown_space_collection_and_route(api: RunningSandbox) -> None:
    base = "/v1/spaces/{}/collections/{}/profiles/user_id:u-phone/{}"
    assert error(api.http.get(base.format("spa_other", "users", "traits"), auth=(TOKEN, ""))) == (
        404,
        "not_found",
    )
    assert error(api.http.get(base.format(SPACE, "things", "traits"), auth=(TOKEN, ""))) == (
        404,
        "not_found",
    )
    assert error(api.http.get(base.format(SPACE, "users", "friends"), auth=(TOKEN, ""))) == (
        404,
        "not_found",
    )


def test_collection_with_invalid_characters_is_a_validation_error(api: RunningSandbox) -> None:
    response = api.http.get(
        f"/v1/spaces/{SPACE}/collections/users!/profiles/user_id:x/traits", auth=(TOKEN, "")
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "The parameter `collection` has invalid character(s) `!`",
    }


@pytest.mark.parametrize(
    "identifier",
    ["user_id:", ":u-phone", "user id:x", "us%C3%A9r:x", "a" * 1100 + ":x", "%FF%FE:x"],
)
def test_malformed_identifiers_are_validation_errors(api: RunningSandbox, identifier: str) -> None:
    assert error(api.profile(identifier, "traits", encode=False)) == (400, "validation_error")


def test_wrong_method_gets_segments_error_shape(api: RunningSandbox) -> None:
    response = api.http.post(
        f"/v1/spaces/{SPACE}/collections/users/profiles/user_id:x/traits", auth=(TOKEN, "")
    )
    assert response.status_code == 405
    assert error(response)[1] == "invalid_request_error"


# --- identifiers ----------------------------------------------------------------------------


def test_plus_must_be_sent_as_percent_2b(api: RunningSandbox) -> None:
    hit = api.profile("phone:%2B14155550123", "traits", encode=False)
    miss = api.profile("phone:+14155550123", "traits", encode=False)
    assert hit.status_code == 200 and hit.json()["traits"]["name"] == "Pat"
    assert miss.status_code == 404


def test_identifier_values_match_lowercase(api: RunningSandbox) -> None:
    for value in (
        "email:mixed.case@example.com",
        "email:MIXED.CASE@EXAMPLE.COM",
        "EMAIL:Mixed.Case@Example.com",
    ):
        assert api.profile(value, "traits").json()["traits"]["name"] == "Pat"


def test_encoded_slash_stays_inside_the_identifier(api: RunningSandbox) -> None:
    assert api.profile("crm_id:a%2Fb", "traits", encode=False).json()["traits"]["name"] == "Slash"


def test_profiles_are_found_by_segment_id(api: RunningSandbox) -> None:
    segment_id = api.profile("user_id:u-phone", "events").json()["data"][0]["related"]["users"]
    assert segment_id.startswith("use_") and len(segment_id) == 31
    assert api.profile(segment_id, "traits").json()["traits"]["name"] == "Pat"


# --- traits ---------------------------------------------------------------------------------


def test_cursor_urls_name_the_profile_by_segment_id(api: RunningSandbox) -> None:
    cursor = api.profile("user_id:u-many", "traits").json()["cursor"]
    assert cursor["url"].startswith(f"/v1/spaces/{SPACE}/collections/users/profiles/use_")
    assert (
        cursor["url"].split("/")[7]
        == api.profile("user_id:u-many", "events", limit=1).json()["cursor"]["url"].split("/")[7]
    )


def test_traits_default_to_a_page_of_ten(api: RunningSandbox) -> None:
    body = api.profile("user_id:u-many", "traits").json()
    assert list(body["traits"]) == ["orders_90d"] + [f"t_{n:03d}" for n in range(9)]
    assert body["cursor"]["has_more"] is True and body["cursor"]["next"] == "t_009"


def test_paging_250_traits_with_limit_100_returns_each_exactly_once(api: RunningSandbox) -> None:
    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"limit": 100}
    while True:
        body = api.profile("user_id:u-many", "traits", **params).json()
        pages += 1
        seen += list(body["traits"])
        if not body["cursor"]["has_more"]:
            break
        params["next"] = body["cursor"]["next"]
        # The cursor's url is the next page's address, usable as is.
        by_url = api.http.get(body["cursor"]["url"], auth=(TOKEN, "")).json()
        assert (
            by_url["traits"] == api.profile("user_id:u-many", "traits", **params).json()["traits"]
        )
    assert pages == 3
    assert len(seen) == len(set(seen)) == 252  # 250 traits, a computed trait, an audience
    assert body["cursor"] == {
        "url": body["cursor"]["url"],
        "has_more": False,
        "next": "",
        "limit": 100,
    }


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten", "1.5", ""])
def test_trait_limit_outside_1_to_200_is_rejected(api: RunningSandbox, limit: str) -> None:
    assert error(api.profile("user_id:u-many", "traits", limit=limit)) == (400, "validation_error")


def test_trait_limit_200_is_accepted(api: RunningSandbox) -> None:
    assert len(api.profile("user_id:u-many", "traits", limit=200).json()["traits"]) == 200


def test_include_selects_trait_keys(api: RunningSandbox) -> None:
    body = api.profile("user_id:u-many", "traits", include="t_007,t_100, vip,absent").json()
    assert body["traits"] == {"t_007": 7, "t_100": 100, "vip": True}


def test_class_selects_audiences_or_computed_traits(api: RunningSandbox) -> None:
    def of_class(name: str) -> httpx.Response:
        params: dict[str, Any] = {"class": name}
        return api.profile("user_id:u-many", "traits", **params)

    assert of_class("audience").json()["traits"] == {"vip": True}
    assert of_class("computed_trait").json()["traits"] == {"orders_90d": 7}
    assert error(of_class("trait")) == (400, "validation_error")


def test_verbose_traits_carry_source_and_update_time(api: RunningSandbox) -> None:
    trait = api.profile("user_id:u-many", "traits", include="t_001", verbose="true").json()[
        "traits"
    ]["t_001"]
    assert set(trait) == {"value", "source_id", "updated_at"} and trait["value"] == 1
    assert error(api.profile("user_id:u-many", "traits", verbose="yes")) == (
        400,
        "validation_error",
    )


# --- events ---------------------------------------------------------------------------------


def test_events_only_from_the_last_14_days_newest_first(api: RunningSandbox) -> None:
    events = api.profile("user_id:u-events", "events", limit=100).json()["data"]
    assert [e["message_id"] for e in events] == [f"ev-{n:02d}" for n in range(25)]
    first = events[0]
    assert {
        "external_ids",
        "context",
        "type",
        "message_id",
        "source_id",
        "timestamp",
        "properties",
        "event",
        "related",
    } <= set(first)
    assert first["external_ids"] == [
        {"collection": "users", "type": "user_id", "id": "u-events", "encoding": "none"}
    ]


def test_events_page_through_everything_once_in_both_orders(api: RunningSandbox) -> None:
    for sort in ("desc", "asc"):
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 7, "sort": sort}
        while True:
            body = api.profile("user_id:u-events", "events", **params).json()
            seen += [e["message_id"] for e in body["data"]]
            if not body["cursor"]["has_more"]:
                break
            params["next"] = body["cursor"]["next"]
        expected = [f"ev-{n:02d}" for n in range(25)]
        assert seen == (expected if sort == "desc" else expected[::-1])


def test_event_filters(api: RunningSandbox) -> None:
    def ids(**params: Any) -> list[str]:
        data = api.profile("user_id:u-events", "events", limit=100, **params).json()["data"]
        return [e["message_id"] for e in data]

    assert ids(include="Event 0") == [f"ev-{n:02d}" for n in range(0, 25, 3)]
    assert len(ids(exclude="Event 0,Event 1")) == 8
    assert ids(start=ago(hours=35)) == ["ev-00", "ev-01", "ev-02", "ev-03"]
    assert ids(end=ago(hours=225)) == ["ev-23", "ev-24"]
    assert ids(start=ago(days=30), end=ago(days=9.5)) == ["ev-23", "ev-24"]


@pytest.mark.parametrize(
    "params", [{"sort": "up"}, {"start": "yesterday"}, {"end": "2026-13-01"}, {"limit": "101"}]
)
def test_invalid_event_parameters(api: RunningSandbox, params: dict[str, Any]) -> None:
    assert error(api.profile("user_id:u-events", "events", **params)) == (400, "validation_error")


@pytest.mark.parametrize("cursor", ["garbage!", base64.urlsafe_b64encode(b"x::y").decode()])
def test_invalid_cursor_is_an_invalid_request(api: RunningSandbox, cursor: str) -> None:
    assert error(api.profile("user_id:u-events", "events", next=cursor)) == (
        400,
        "invalid_request_error",
    )
    assert error(api.profile("user_id:u-phone", "external_ids", next=cursor)) == (
        400,
        "invalid_request_error",
    )


# --- external ids, metadata, links ------------------------------------------------------------


def test_external_ids(api: RunningSandbox) -> None:
    body = api.profile("user_id:u-phone", "external_ids").json()
    assert {(e["type"], e["id"]) for e in body["data"]} == {
        ("user_id", "u-phone"),
        ("anonymous_id", "anon-phone"),
        ("phone", "+14155550123"),
        ("email", "mixed.case@example.com"),
    }
    assert set(body["data"][0]) == {
        "source_id",
        "collection",
        "id",
        "type",
        "created_at",
        "encoding",
        "first_message_id",
    }
    only = api.profile("user_id:u-phone", "external_ids", include="email,phone").json()["data"]
    assert sorted(e["type"] for e in only) == ["email", "phone"]


def test_external_ids_page(api: RunningSandbox) -> None:
    first = api.profile("user_id:u-phone", "external_ids", limit=3).json()
    assert len(first["data"]) == 3 and first["cursor"]["has_more"]
    rest = api.profile(
        "user_id:u-phone", "external_ids", limit=3, next=first["cursor"]["next"]
    ).json()
    assert len(rest["data"]) == 1 and not rest["cursor"]["has_more"]


def test_metadata(api: RunningSandbox) -> None:
    metadata = api.profile("user_id:u-phone", "metadata").json()["metadata"]
    assert set(metadata) == {
        "created_at",
        "updated_at",
        "expires_at",
        "first_message_id",
        "first_source_id",
        "last_message_id",
        "last_source_id",
    }
    assert metadata["expires_at"] is None


def test_links_between_users_and_accounts(api: RunningSandbox) -> None:
    user_links = api.profile("user_id:u-member-03", "links").json()["data"]
    assert user_links == [
        {
            "to_collection": "accounts",
            "external_ids": [
                {
                    **user_links[0]["external_ids"][0],
                    "type": "group_id",
                    "id": "acct-big",
                    "collection": "accounts",
                }
            ],
        }
    ]
    account = api.profile("group_id:acct-big", "traits", collection="accounts").json()
    assert account["traits"] == {"employees": 5000, "name": "Big Co"}
    members: list[str] = []
    params: dict[str, Any] = {}
    while True:
        body = api.profile("group_id:acct-big", "links", collection="accounts", **params).json()
        assert len(body["data"]) <= 20
        members += [
            e["id"] for link in body["data"] for e in link["external_ids"] if e["type"] == "user_id"
        ]
        if not body["cursor"]["has_more"]:
            break
        params["next"] = body["cursor"]["next"]
    assert sorted(members) == [f"u-member-{n:02d}" for n in range(25)]
    assert error(api.profile("group_id:acct-big", "links", collection="accounts", limit=21)) == (
        400,
        "validation_error",
    )


# --- rate limit -----------------------------------------------------------------------------


def test_more_than_the_space_rate_gets_429_rate_limit_error(make_sandbox: SandboxFactory) -> None:
    # 5 per second: 30 quick requests meet the limit unless each takes over 200 ms.
    running = make_sandbox(contract_messages()[:1], rate_limit=5)
    statuses = [running.profile("user_id:u-many", "metadata").status_code for _ in range(30)]
    assert statuses.count(200) >= 5 and 429 in statuses
    limited = next(
        r
        for r in (running.profile("user_id:u-many", "metadata") for _ in range(5))
        if r.status_code == 429
    )
    assert limited.json()["error"]["code"] == "rate_limit_error"
    stats = running.control.stats()["profile_api"]["by_status"]
    assert stats["429"] >= 1


def test_stats_count_every_request_by_section_and_identifier_as_sent(
    make_sandbox: SandboxFactory,
) -> None:
    running = make_sandbox(contract_messages()[3:4])
    running.profile("phone:%2B14155550123", "traits", encode=False)
    running.profile("phone:+14155550123", "traits", encode=False)
    running.profile("user_id:nobody", "events")
    running.profile("user_id:u-phone", "links", limit=500)
    stats = running.control.stats(detail=True)["profile_api"]
    assert stats["by_section"] == {"traits": 2, "events": 1, "links": 1}
    assert stats["by_status"] == {"200": 1, "404": 2, "400": 1}
    assert stats["by_lookup"]["traits phone:%2B14155550123"] == 1
    assert stats["by_lookup"]["traits phone:+14155550123"] == 1
