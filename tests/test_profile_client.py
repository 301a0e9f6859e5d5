"""The Profile API client against the sandbox: encoding, typed errors, retries, deadline, budget."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from connector.errors import (
    AuthenticationFailed,
    ProfileNotFound,
    RateLimited,
    SpaceNotFound,
    UpstreamInvalidRequest,
    UpstreamUnavailable,
)
from connector.segment.client import (
    ProfileClient,
    RetryPolicy,
    build_http_client,
    encode_identifier,
)
from connector.segment.deadline import Deadline
from connector.state.pacing import LocalPacer
from tests.conftest import SPACE, TOKEN, RunningSandbox, SandboxFactory

MESSAGES = [
    {
        "type": "identify",
        "userId": "u1",
        "traits": {"name": "Ada", "phone": "+14155550123", "email": "Ada@Example.com"},
    },
    {
        "type": "identify",
        "userId": "u2",
        "traits": {"name": "Odd"},
        "context": {
            "externalIds": [{"id": "a/b?c#d e&f=g%h+i", "type": "crm_id", "collection": "users"}]
        },
    },
]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with build_http_client() as client:
        yield client


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    return make_sandbox(MESSAGES)


def client(
    http: httpx.Client,
    sandbox: RunningSandbox,
    token: str = TOKEN,
    rate: float = 1000,
    attempts: int = 4,
    space: str = SPACE,
) -> ProfileClient:
    return ProfileClient(
        http,
        sandbox.url,
        space,
        SecretStr(token),
        LocalPacer(rate),
        RetryPolicy(attempts=attempts, base=0.05),
    )


def name(profile_client: ProfileClient, type_: str, value: str, seconds: float = 5) -> str:
    body = profile_client.get(
        "users", encode_identifier(type_, value), "traits", Deadline(seconds), {"include": "name"}
    )
    found: str = body["traits"]["name"]
    return found


def lookups(sandbox: RunningSandbox) -> dict[str, int]:
    found: dict[str, int] = sandbox.control.stats(detail=True)["profile_api"]["by_lookup"]
    return found


def test_phone_plus_is_sent_as_2b(http: httpx.Client, sandbox: RunningSandbox) -> None:
    assert name(client(http, sandbox), "phone", "+14155550123") == "Ada"
    assert lookups(sandbox) == {"traits phone:%2B14155550123": 1}


def test_values_are_lowercased_and_every_reserved_character_escaped(
    http: httpx.Client, sandbox: RunningSandbox
) -> None:
    assert name(client(http, sandbox), "email", "ADA@EXAMPLE.COM") == "Ada"
    assert name(client(http, sandbox), "crm_id", "A/B?C#D E&F=G%H+I") == "Odd"
    assert encode_identifier("crm_id", "a/b?c#d e") == "crm_id:a%2Fb%3Fc%23d%20e"


def test_not_found_carries_segments_request_id(http: httpx.Client, sandbox: RunningSandbox) -> None:
    with pytest.raises(ProfileNotFound) as caught:
        name(client(http, sandbox), "user_id", "nobody")
    assert caught.value.request_id and caught.value.upstream_status == 404


def test_a_wrong_token_fails_at_once_without_retrying(
    http: httpx.Client, sandbox: RunningSandbox
) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        name(client(http, sandbox, token="wrong"), "user_id", "u1")
    assert caught.value.request_id
    assert (caught.value.status, caught.value.code) == (503, "token_refused")
    assert "wrong" not in str(caught.value) and "wrong" not in caught.value.public_message
    assert sandbox.control.stats()["profile_api"]["requests"] == 1


def test_a_missing_space_is_not_a_missing_profile(
    http: httpx.Client, sandbox: RunningSandbox
) -> None:
    with pytest.raises(SpaceNotFound) as caught:
        name(client(http, sandbox, space="spa_typo"), "user_id", "u1")
    assert not isinstance(caught.value, ProfileNotFound)  # a lookup must not move on
    assert caught.value.code == "space_not_found" and caught.value.status == 503
    assert "space_id" in caught.value.public_message and caught.value.request_id
    assert sandbox.control.stats()["profile_api"]["requests"] == 1  # not retried


def test_a_404_that_is_not_segments_is_not_a_missing_profile() -> None:
    """Something else at profile_api_url (a proxy, a wrong path) answering 404: if it were
    read as "no such profile", every customer would be unknown."""

    def elsewhere(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html><h1>Not Found</h1></html>")

    with httpx.Client(transport=httpx.MockTransport(elsewhere)) as http:
        wrong = ProfileClient(
            http, "http://proxy.invalid", SPACE, SecretStr(TOKEN), LocalPacer(1000)
        )
        with pytest.raises(UpstreamInvalidRequest) as caught:
            wrong.get("users", "user_id:u1", "traits", Deadline(5))
    assert "profile_api_url" in caught.value.public_message


def test_invalid_requests_are_not_retried(http: httpx.Client, sandbox: RunningSandbox) -> None:
    with pytest.raises(UpstreamInvalidRequest):
        client(http, sandbox).get("users", "user_id:u1", "traits", Deadline(5), {"limit": "999"})
    assert sandbox.control.stats()["profile_api"]["requests"] == 1


def test_a_429_storm_is_absorbed_by_retries(http: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(storm_rate=1.0, retry_after=0.3, seconds=0.5)
    started = time.monotonic()
    assert name(client(http, sandbox), "user_id", "u1") == "Ada"
    assert time.monotonic() - started >= 0.3  # Retry-After was honoured
    assert sandbox.control.stats()["profile_api"]["by_status"].get("429", 0) >= 1


def test_a_storm_longer_than_the_deadline_fails_in_time(
    http: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.control.set_faults(storm_rate=1.0, retry_after=0.4)
    started = time.monotonic()
    with pytest.raises(RateLimited):
        name(client(http, sandbox, attempts=10), "user_id", "u1", seconds=1.0)
    assert time.monotonic() - started < 1.2


def test_server_errors_are_retried_then_reported(
    http: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.control.set_faults(error_rate=1.0)
    with pytest.raises(UpstreamUnavailable) as caught:
        name(client(http, sandbox, attempts=3), "user_id", "u1")
    assert caught.value.upstream_status == 503 and caught.value.request_id
    assert sandbox.control.stats()["profile_api"]["requests"] == 3


def test_flaky_server_errors_mostly_succeed(http: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(error_rate=0.3)
    results = []
    for _ in range(30):
        try:
            results.append(name(client(http, sandbox, attempts=6), "user_id", "u1"))
        except UpstreamUnavailable:
            results.append("failed")
    assert results.count("Ada") >= 28  # 0.3^6 per lookup: failures are rare


def test_a_refused_connection_is_unavailable(http: httpx.Client, sandbox: RunningSandbox) -> None:
    sandbox.control.set_faults(outage="refuse", seconds=5)
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="cannot reach"):
        name(client(http, sandbox), "user_id", "u1", seconds=1.0)
    assert time.monotonic() - started < 1.2
    sandbox.sandbox.faults.clear()


def test_a_hanging_segment_cannot_hold_a_lookup_past_its_deadline(
    http: httpx.Client, sandbox: RunningSandbox
) -> None:
    sandbox.control.set_faults(outage="hang")
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        name(client(http, sandbox), "user_id", "u1", seconds=0.8)
    assert time.monotonic() - started < 1.1
    sandbox.control.clear_faults()


def test_the_budget_keeps_a_burst_under_the_spaces_rate(
    make_sandbox: SandboxFactory, http: httpx.Client
) -> None:
    sandbox = make_sandbox(MESSAGES, rate_limit=10)
    profile_client = client(http, sandbox, rate=10)
    started = time.monotonic()
    for _ in range(30):
        assert name(profile_client, "user_id", "u1") == "Ada"
    assert time.monotonic() - started >= 2.9  # one every 0.105 s at 10/s
    profile_api = sandbox.control.stats(detail=True)["profile_api"]
    assert profile_api["by_status"].get("429", 0) == 0
    assert profile_api["max_per_second"] <= 10
