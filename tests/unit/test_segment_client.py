"""ProfileClient against httpx.MockTransport: what it sends, when it retries, what it raises."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connector.errors import (
    AuthenticationFailed,
    ProfileApiError,
    ProfileNotFound,
    RateLimited,
    SpaceNotFound,
    UpstreamInvalidRequest,
    UpstreamUnavailable,
)
from connector.segment.client import (
    OPENING_PATIENCE,
    REQUEST_TIMEOUT,
    USER_AGENT,
    ProfileClient,
    RetryPolicy,
    build_http_client,
    encode_identifier,
    error_for,
)
from connector.segment.deadline import Deadline
from connector.state import rates
from connector.state.pacing import LocalPacer
from tests.unit.fakes import FakeClock

BASE = "https://profiles.example.test"
SPACE = "spa_unit"
TOKEN = "profile-token"
Handler = Callable[[httpx.Request], httpx.Response]


def segment_error(
    status: int, message: str, code: str = "not_found", **headers: str
) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


@dataclass
class Budget:
    """A RateBudget that says yes (or no) and counts the asks."""

    allow: bool = True
    asked: list[str] = field(default_factory=list)
    paused: list[tuple[str, float]] = field(default_factory=list)

    def acquire(self, space_id: str, deadline: rates.Deadline) -> bool:
        self.asked.append(space_id)
        return self.allow

    def back_off(self, space_id: str, seconds: float) -> None:
        self.paused.append((space_id, seconds))


@dataclass
class Segment:
    """A scripted Profile API: answers in turn (the last one repeats), every request kept."""

    answers: list[httpx.Response | Exception]
    clock: FakeClock
    latency: float = 0.0
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.clock.advance(self.latency)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http() -> Iterator[Callable[[Handler], httpx.Client]]:
    clients: list[httpx.Client] = []

    def build(handler: Handler) -> httpx.Client:
        clients.append(build_http_client(httpx.MockTransport(handler)))
        return clients[-1]

    yield build
    for client in clients:
        client.close()


def make_client(
    http: Callable[[Handler], httpx.Client],
    segment: Segment,
    budget: rates.RateBudget | None = None,
    retry: RetryPolicy | None = None,
    space: str = SPACE,
) -> ProfileClient:
    return ProfileClient(
        http(segment),
        BASE,
        space,
        SecretStr(TOKEN),
        budget or Budget(),
        retry=retry or RetryPolicy(attempts=4, base=0.0),
        sleep=segment.clock.sleep,
    )


def lookup(client: ProfileClient, clock: FakeClock, seconds: float = 4.0) -> dict[str, Any]:
    return client.get("users", "user_id:u1", "traits", Deadline(seconds, clock=clock))


# --- what is sent ---------------------------------------------------------------------------


def test_sends_basic_auth_with_the_token_as_user_and_an_encoded_path(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment([httpx.Response(200, json={"traits": {"plan": "gold"}})], clock)
    client = make_client(http, segment, space="spa/1 x")
    identifier = encode_identifier("Email", "Jane+Doe@Example.com")

    body = client.get(
        "users", identifier, "traits", Deadline(4, clock=clock), params={"include": "plan,a b"}
    )

    assert body == {"traits": {"plan": "gold"}}
    (request,) = segment.requests
    assert request.method == "GET"
    expected = base64.b64encode(f"{TOKEN}:".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.url.host == "profiles.example.test"
    assert request.url.raw_path.decode() == (
        "/v1/spaces/spa%2F1%20x/collections/users/profiles/"
        "email:jane%2Bdoe%40example.com/traits?include=plan%2Ca+b"
    )


@pytest.mark.parametrize(
    ("type_", "value", "encoded"),
    [
        ("phone", "+14155550123", "phone:%2B14155550123"),
        ("Email", "A.B@Example.COM", "email:a.b%40example.com"),
        ("user_id", "a/b?c#d", "user_id:a%2Fb%3Fc%23d"),
        ("user_id", "caf\u00e9", "user_id:caf%C3%A9"),
        ("anonymous_id", "x:y", "anonymous_id:x%3Ay"),
    ],
)
def test_encode_identifier_escapes_every_reserved_character(
    type_: str, value: str, encoded: str
) -> None:
    assert encode_identifier(type_, value) == encoded


def test_each_request_timeout_is_bounded_by_what_is_left_of_the_deadline(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment([httpx.Response(200, json={})], clock)
    client = make_client(http, segment)

    lookup(client, clock, seconds=0.5)

    timeout = segment.requests[0].extensions["timeout"]
    assert timeout["read"] == pytest.approx(0.5)
    assert timeout["connect"] == pytest.approx(0.5)


def test_a_long_deadline_keeps_the_client_timeouts(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment([httpx.Response(200, json={})], clock)
    lookup(make_client(http, segment), clock, seconds=30)
    timeout = segment.requests[0].extensions["timeout"]
    assert timeout["read"] == REQUEST_TIMEOUT.read
    assert timeout["connect"] == REQUEST_TIMEOUT.connect


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retries_5xx_and_429_then_succeeds(
    http: Callable[[Handler], httpx.Client], clock: FakeClock, status: int
) -> None:
    segment = Segment(
        [segment_error(status, "busy", "server_error"), httpx.Response(200, json={"ok": 1})], clock
    )
    budget = Budget()
    assert lookup(make_client(http, segment, budget), clock) == {"ok": 1}
    assert len(segment.requests) == 2
    assert budget.asked == [SPACE, SPACE]  # every attempt asks the space's budget


def test_retry_after_is_the_wait_between_attempts(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment(
        [
            segment_error(429, "slow down", "rate_limit_error", **{"Retry-After": "1.5"}),
            segment_error(503, "down", "server_error", **{"Retry-After": "0.25"}),
            httpx.Response(200, json={"ok": 1}),
        ],
        clock,
    )
    budget = Budget()
    assert lookup(make_client(http, segment, budget), clock, seconds=10) == {"ok": 1}
    assert clock.slept == [1.5, 0.25]
    assert budget.paused == [(SPACE, 1.5)]  # a 429 pauses the space's budget, a 503 does not


def test_backoff_without_retry_after_stays_within_the_policy() -> None:
    policy = RetryPolicy(attempts=6, base=0.1, cap=0.5)
    for attempt in range(6):
        ceiling = min(0.5, 0.1 * 2**attempt)
        delays = [policy.delay(attempt, None) for _ in range(50)]
        assert all(0 <= d <= ceiling for d in delays)
    assert policy.delay(3, 7.0) == 7.0


def test_gives_up_after_the_policy_attempts_with_the_last_error(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment(
        [segment_error(503, "down", "server_error", **{"Request-Id": "req-1"})], clock
    )
    with pytest.raises(UpstreamUnavailable) as raised:
        lookup(make_client(http, segment, retry=RetryPolicy(attempts=3, base=0.0)), clock)
    assert len(segment.requests) == 3
    assert len(clock.slept) == 2  # no pause after the last attempt
    assert raised.value.request_id == "req-1"
    assert raised.value.upstream_status == 503


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_4xx_is_never_retried(
    http: Callable[[Handler], httpx.Client], clock: FakeClock, status: int
) -> None:
    segment = Segment([segment_error(status, "Profile was not found."), httpx.Response(200)], clock)
    with pytest.raises(ProfileApiError):
        lookup(make_client(http, segment), clock)
    assert len(segment.requests) == 1
    assert clock.slept == []


def test_a_retry_after_longer_than_the_deadline_ends_the_retries(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment(
        [segment_error(429, "slow", "rate_limit_error", **{"Retry-After": "5"})], clock
    )
    with pytest.raises(RateLimited) as raised:
        lookup(make_client(http, segment), clock, seconds=4)
    assert len(segment.requests) == 1
    assert clock.slept == []
    assert raised.value.retry_after == 5


def test_a_pause_that_overruns_the_deadline_keeps_segments_own_error(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    """A real sleep overshoots a little: the error raised is still Segment's 503 (with its
    Request-Id), not a bare "the deadline passed"."""
    segment = Segment(
        [segment_error(503, "down", "server_error", **{"Retry-After": "1", "Request-Id": "r-1"})],
        clock,
    )
    client = ProfileClient(
        http(segment),
        BASE,
        SPACE,
        SecretStr(TOKEN),
        Budget(),
        retry=RetryPolicy(attempts=4, base=0.0),
        sleep=lambda seconds: clock.advance(seconds + 0.01),  # wakes a little late
    )
    with pytest.raises(UpstreamUnavailable) as raised:
        lookup(client, clock, seconds=1.005)
    assert len(segment.requests) == 1
    assert raised.value.request_id == "r-1"


def test_slow_answers_use_up_the_deadline(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    # Each answer takes 0.35 s and asks for 0.2 s: at t=0.9 a 0.2 s pause no longer fits in 1 s.
    segment = Segment(
        [segment_error(503, "down", "server_error", **{"Retry-After": "0.2"})], clock, latency=0.35
    )
    with pytest.raises(UpstreamUnavailable):
        lookup(make_client(http, segment, retry=RetryPolicy(attempts=10)), clock, seconds=1.0)
    assert len(segment.requests) == 2
    assert clock.slept == [0.2]


def test_an_expired_deadline_sends_nothing(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment([httpx.Response(200, json={})], clock)
    client = make_client(http, segment)
    deadline = Deadline(1.0, clock=clock)
    clock.advance(1.0)
    with pytest.raises(UpstreamUnavailable, match="deadline"):
        client.get("users", "user_id:u1", "traits", deadline)
    assert segment.requests == []


def test_deadline_counts_from_when_the_request_arrived(clock: FakeClock) -> None:
    deadline = Deadline(2.0, clock=clock, started=clock() - 1.5)
    assert deadline.remaining() == pytest.approx(0.5)
    clock.advance(0.5)
    assert deadline.expired
    assert deadline.remaining() == 0.0


def test_no_room_in_the_budget_is_rate_limited_without_a_request(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment([httpx.Response(200, json={})], clock)
    with pytest.raises(RateLimited):
        lookup(make_client(http, segment, Budget(allow=False)), clock)
    assert segment.requests == []


def test_an_opening_request_waits_for_a_slot_less_than_the_rest_of_a_lookup(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    """With the space's pace queued 2 s ahead, a new lookup (4 s) is refused at once, since it
    could not finish; a lookup under way waits for its slot."""
    segment = Segment([httpx.Response(200, json={})], clock)
    pacer = LocalPacer(10, clock=clock, sleep=clock.sleep)
    while pacer.reserve(SPACE, 10.0)[0] < 2.0:
        pass
    client = make_client(http, segment, pacer)
    deadline = Deadline(4.0, clock=clock)
    with pytest.raises(RateLimited):
        client.get("users", "user_id:u1", "traits", deadline, patience=OPENING_PATIENCE)
    assert segment.requests == [] and clock.slept == []
    assert client.get("users", "user_id:u1", "traits", deadline) == {}
    assert len(segment.requests) == 1 and 2.0 <= sum(clock.slept) < 4.0


# --- Segment's answers become our errors -------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "error", "upstream_status"),
    [
        (segment_error(401, "bad token", "authentication_error"), AuthenticationFailed, 401),
        (segment_error(403, "forbidden", "forbidden"), AuthenticationFailed, 403),
        (segment_error(404, "Profile was not found."), ProfileNotFound, 404),
        (segment_error(404, "Space was not found."), SpaceNotFound, 404),
        (segment_error(404, "space spa_x NOT  found"), SpaceNotFound, 404),
        (httpx.Response(404, text="<html>nginx</html>"), UpstreamInvalidRequest, 404),
        (segment_error(400, "bad include", "invalid_request_error"), UpstreamInvalidRequest, 400),
        (segment_error(422, "nope", "invalid_request_error"), UpstreamInvalidRequest, 422),
        (segment_error(429, "slow", "rate_limit_error"), RateLimited, 429),
        (segment_error(500, "boom", "server_error"), UpstreamUnavailable, 500),
        (httpx.Response(502, text="bad gateway"), UpstreamUnavailable, 502),
        (httpx.Response(503), UpstreamUnavailable, 503),
        (httpx.Response(302, headers={"Location": "/elsewhere"}), UpstreamUnavailable, 302),
    ],
)
def test_error_for_maps_each_status(
    response: httpx.Response, error: type[ProfileApiError], upstream_status: int
) -> None:
    response.headers["Request-Id"] = "req-42"
    mapped = error_for(response)
    assert type(mapped) is error
    assert mapped.upstream_status == upstream_status
    assert mapped.request_id == "req-42"


def test_error_for_keeps_segment_message_and_retry_after() -> None:
    mapped = error_for(segment_error(429, "Too many", "rate_limit_error", **{"Retry-After": "7"}))
    assert mapped.message == "rate_limit_error: Too many"
    assert mapped.retry_after == 7.0
    assert error_for(httpx.Response(503, headers={"Retry-After": "soon"})).retry_after is None
    assert error_for(httpx.Response(500)).message == "HTTP 500 from Segment"


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (segment_error(404, "Profile was not found."), ProfileNotFound, "Profile was not found"),
        (segment_error(404, "Space was not found."), SpaceNotFound, "Space"),
        (segment_error(401, "nope", "authentication_error"), AuthenticationFailed, "nope"),
        (httpx.ConnectError("refused"), UpstreamUnavailable, "cannot reach Segment"),
        (httpx.ReadTimeout("slow"), UpstreamUnavailable, "did not answer in time"),
        (httpx.ConnectTimeout("slow"), UpstreamUnavailable, "did not answer in time"),
        (httpx.RemoteProtocolError("eh"), UpstreamUnavailable, "RemoteProtocolError"),
        (httpx.Response(200, text="not json"), UpstreamUnavailable, "invalid JSON"),
        (httpx.Response(200, json=[1, 2]), UpstreamUnavailable, "unexpected body"),
    ],
)
def test_client_raises_only_connector_errors(
    http: Callable[[Handler], httpx.Client],
    clock: FakeClock,
    answer: httpx.Response | Exception,
    error: type[ProfileApiError],
    message: str,
) -> None:
    segment = Segment([answer], clock)
    with pytest.raises(error, match=message) as raised:
        lookup(make_client(http, segment, retry=RetryPolicy(attempts=2, base=0.0)), clock)
    assert not isinstance(raised.value.__cause__, httpx.HTTPError)
    # transport errors and bad bodies are retried like a 5xx; Segment's 4xx answers are not
    assert len(segment.requests) == (2 if error is UpstreamUnavailable else 1)


def test_an_undecodable_body_does_not_escape_as_an_httpx_error(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment(
        [
            httpx.Response(
                200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
            )
        ],
        clock,
    )
    with pytest.raises(UpstreamUnavailable, match="unreadable"):  # one attempt: a stream reads once
        lookup(make_client(http, segment, retry=RetryPolicy(attempts=1)), clock)


def test_a_retry_sends_the_same_request(
    http: Callable[[Handler], httpx.Client], clock: FakeClock
) -> None:
    segment = Segment([httpx.Response(503), httpx.Response(200, json={"a": 1})], clock)
    client = make_client(http, segment)
    client.get("users", "user_id:u1", "events", Deadline(4, clock=clock), params={"limit": "3"})
    first, second = segment.requests
    assert first.url == second.url
    assert first.headers["Authorization"] == second.headers["Authorization"]
    assert dict(second.url.params) == {"limit": "3"}
