"""Whatever arrives, the sandbox answers in Segment's shape and never with a 5xx or a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SPACE, TOKEN, RunningSandbox, start_sandbox

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SECTIONS = st.sampled_from(["traits", "external_ids", "events", "metadata", "links", "x", ""])
PARAMS = st.dictionaries(
    st.sampled_from(
        ["limit", "next", "include", "exclude", "class", "verbose", "start", "end", "sort", "other"]
    ),
    st.text(max_size=30),
    max_size=4,
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox([{"type": "identify", "userId": "u1", "traits": {"name": "Hostile"}}])
    yield running
    running.close()


def assert_segment_shaped(status: int, body: bytes) -> None:
    assert status < 500, body
    if status >= 400:
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message"}


@SETTINGS
@given(
    identifier=st.text(max_size=60),
    safe=st.sampled_from(["", ":", ":/", ":+%", ":@+"]),
    section=SECTIONS,
    collection=st.sampled_from(["users", "accounts", "Users", "us!ers"]),
    params=PARAMS,
)
def test_profile_api_never_fails(
    sandbox: RunningSandbox,
    identifier: str,
    safe: str,
    section: str,
    collection: str,
    params: dict[str, str],
) -> None:
    path = (
        f"/v1/spaces/{SPACE}/collections/{collection}/profiles/"
        f"{quote(identifier, safe=safe)}/{section}"
    )
    response = sandbox.http.get(path, params=params, auth=(TOKEN, ""))
    assert_segment_shaped(response.status_code, response.content)
    assert response.headers["Request-Id"]


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["identify", "track", "group", "page", "alias", "x"]),
        "userId": JSON,
        "anonymousId": JSON,
        "event": JSON,
        "groupId": JSON,
        "traits": JSON,
        "properties": JSON,
        "context": JSON,
        "timestamp": JSON,
        "messageId": JSON,
    },
)


@SETTINGS
@given(
    endpoint=st.sampled_from(["identify", "track", "group", "page", "batch"]),
    body=st.one_of(
        MESSAGE, JSON, st.fixed_dictionaries({"batch": st.lists(MESSAGE | JSON, max_size=5)})
    ),
)
def test_tracking_api_never_fails(sandbox: RunningSandbox, endpoint: str, body: Any) -> None:
    response = sandbox.http.post(f"/v1/{endpoint}", json=body, auth=("test-write-key", ""))
    assert_segment_shaped(response.status_code, response.content)


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_raw_bytes_never_fail(sandbox: RunningSandbox, raw: bytes) -> None:
    for path in ("/v1/batch", "/v1/track", "/_sandbox/faults"):
        response = sandbox.http.post(path, content=raw)
        assert_segment_shaped(response.status_code, response.content)
