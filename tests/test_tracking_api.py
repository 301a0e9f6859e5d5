"""Segment's tracking API in the sandbox: statuses, limits, write keys, dedupe, batch context."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.conftest import WRITE_KEY, RunningSandbox, SandboxFactory


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    return make_sandbox()


def post(
    sandbox: RunningSandbox, path: str, body: Any, key: str | None = WRITE_KEY
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key is None:
        return sandbox.http.post(path, content=content, headers=headers)
    return sandbox.http.post(path, content=content, auth=(key, ""), headers=headers)


def name_of(sandbox: RunningSandbox, identifier: str) -> Any:
    response = sandbox.profile(identifier, "traits", include="name")
    return response.json()["traits"].get("name") if response.status_code == 200 else None


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/identify", {"userId": "u1", "traits": {"name": "Identified"}}),
        ("/v1/track", {"userId": "u1", "event": "Clicked", "properties": {"x": 1}}),
        ("/v1/page", {"anonymousId": "a1", "name": "Home"}),
        ("/v1/screen", {"anonymousId": "a1", "name": "Home"}),
        ("/v1/group", {"userId": "u1", "groupId": "g1", "traits": {"name": "G"}}),
        ("/v1/alias", {"userId": "u1", "previousId": "a1"}),
        ("/v1/batch", {"batch": [{"type": "track", "userId": "u1", "event": "E"}]}),
        ("/v1/import", {"batch": [{"type": "track", "userId": "u1", "event": "E"}]}),
    ],
)
def test_every_endpoint_answers_200_success(
    sandbox: RunningSandbox, path: str, body: dict[str, Any]
) -> None:
    response = post(sandbox, path, body)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert response.headers["Request-Id"]


def test_identify_lands_on_the_profile_immediately(sandbox: RunningSandbox) -> None:
    post(sandbox, "/v1/identify", {"userId": "u1", "traits": {"name": "Ada"}})
    post(
        sandbox,
        "/v1/track",
        {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 12}},
    )
    assert name_of(sandbox, "user_id:u1") == "Ada"
    event = sandbox.profile("user_id:u1", "events").json()["data"][0]
    assert (event["event"], event["properties"]) == ("Order Completed", {"revenue": 12})


def test_write_key_in_the_body_is_accepted(sandbox: RunningSandbox) -> None:
    post(
        sandbox,
        "/v1/identify",
        {"userId": "u2", "traits": {"name": "Body"}, "writeKey": WRITE_KEY},
        key=None,
    )
    assert name_of(sandbox, "user_id:u2") == "Body"


@pytest.mark.parametrize("key", ["wrong-key", None])
def test_wrong_or_missing_write_key_is_200_but_dropped(
    sandbox: RunningSandbox, key: str | None
) -> None:
    response = post(sandbox, "/v1/identify", {"userId": "u3", "traits": {"name": "Lost"}}, key=key)
    assert response.status_code == 200
    assert name_of(sandbox, "user_id:u3") is None
    assert sandbox.control.stats()["tracking"]["dropped"] == {"invalid_write_key": 1}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"type": "track", "event": "No One"}, "missing_user_id_and_anonymous_id"),
        ({"type": "track", "userId": "u4"}, "missing_event_name"),
        ({"type": "track", "userId": "u4", "event": ""}, "missing_event_name"),
        ({"type": "group", "userId": "u4"}, "missing_group_id"),
        ({"type": "group", "userId": "u4", "groupId": "null"}, "no_usable_group_id"),
        ({"type": "launch", "userId": "u4"}, "unknown_type"),
        ("just a string", "not_an_object"),
        (
            {"type": "identify", "userId": "null", "anonymousId": "anonymous"},
            "no_usable_identifier",
        ),
    ],
)
def test_unusable_messages_are_accepted_then_dropped(
    sandbox: RunningSandbox, message: Any, reason: str
) -> None:
    assert post(sandbox, "/v1/batch", {"batch": [message]}).status_code == 200
    assert sandbox.control.stats()["tracking"]["dropped"] == {reason: 1}
    assert sandbox.profile("user_id:u4", "metadata").status_code == 404  # nothing half-applied


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"\xff\xfe",
        b'{"userId": "u1", "traits": {"name": "unterminated',
        b'{"userId": "u1", "traits": {"n": NaN}}',
        b'{"userId": Infinity}',
    ],
)
def test_invalid_json_is_400(sandbox: RunningSandbox, body: bytes) -> None:
    response = post(sandbox, "/v1/identify", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request_error"


def test_a_message_over_32_kb_is_400(sandbox: RunningSandbox) -> None:
    big = {"userId": "u1", "event": "Big", "properties": {"blob": "x" * 33_000}}
    assert post(sandbox, "/v1/track", big).status_code == 400
    fits = {"userId": "u1", "event": "Fits", "properties": {"blob": "x" * 30_000}}
    assert post(sandbox, "/v1/track", fits).status_code == 200


def test_batch_limits(sandbox: RunningSandbox) -> None:
    small = {"type": "track", "userId": "u1", "event": "E"}
    assert post(sandbox, "/v1/batch", {"batch": [small] * 2_500}).status_code == 200
    assert post(sandbox, "/v1/batch", {"batch": [small] * 2_501}).status_code == 400
    one_big = {**small, "properties": {"blob": "x" * 33_000}}
    assert post(sandbox, "/v1/batch", {"batch": [small, one_big]}).status_code == 400
    many_medium = [{**small, "properties": {"blob": "x" * 30_000}}] * 18  # ~540 KB
    assert post(sandbox, "/v1/batch", {"batch": many_medium}).status_code == 400


def test_message_id_deduplicates(sandbox: RunningSandbox) -> None:
    message = {"type": "track", "userId": "u5", "event": "Once", "messageId": "m-1"}
    for _ in range(3):
        post(sandbox, "/v1/batch", {"batch": [message]})
    assert len(sandbox.profile("user_id:u5", "events").json()["data"]) == 1
    stats = sandbox.control.stats(detail=True)["tracking"]
    assert stats["dropped"] == {"duplicate": 2}
    assert stats["receipts"] == {"m-1": 3} and stats["repeated_message_ids"] == 1


def test_batch_context_merges_into_each_message(sandbox: RunningSandbox) -> None:
    post(
        sandbox,
        "/v1/batch",
        {
            "context": {
                "library": {"name": "connector"},
                "traits": {"email": "shared@example.com"},
            },
            "batch": [
                {
                    "type": "track",
                    "userId": "u6",
                    "event": "E",
                    "context": {"library": {"version": "1"}},
                }
            ],
        },
    )
    event = sandbox.profile("user_id:u6", "events").json()["data"][0]
    assert event["context"]["library"] == {"name": "connector", "version": "1"}
    # context.traits.email identifies the user, so the batch context reached identity resolution
    assert name_of(sandbox, "email:shared@example.com") is None
    assert sandbox.profile("email:shared@example.com", "metadata").status_code == 200


def test_basic_auth_header_variants(sandbox: RunningSandbox) -> None:
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    response = sandbox.http.post(
        "/v1/identify",
        json={"userId": "u7", "traits": {"name": "H"}},
        headers={"Authorization": f"basic {token}"},
    )
    assert response.status_code == 200 and name_of(sandbox, "user_id:u7") == "H"


def test_get_on_tracking_endpoints_is_405_in_segments_shape(sandbox: RunningSandbox) -> None:
    response = sandbox.http.get("/v1/track")
    assert response.status_code == 405
    assert set(response.json()["error"]) == {"code", "message"}


def test_fields_of_the_wrong_type_are_tolerated(sandbox: RunningSandbox) -> None:
    odd = {
        "type": "identify",
        "userId": 1,
        "context": True,
        "traits": ["not", "an", "object"],
        "properties": 5,
        "timestamp": {"when": "now"},
        "messageId": None,
    }
    response = post(sandbox, "/v1/batch", {"batch": [odd]})
    assert response.status_code == 200
    assert sandbox.control.stats()["tracking"]["accepted"] == 1
    assert sandbox.profile("user_id:1", "events").json()["data"][0]["context"] == {}
