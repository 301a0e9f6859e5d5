"""The gate, through the app factory and Flask's test client; Twilio and Segment are a mock."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from connector.app import AppSettings, close_app, create_app
from connector.auth.flex_tokens import not_a_flex_token
from tests.unit.connection import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    ENVIRON,
    IAM_URL,
    PROFILE_TOKEN,
    write_connection,
)

CALLER = {"from": "+14155550123"}
VALIDATE_PATH = f"/v1/Accounts/{ACCOUNT_SID}/Tokens/validate"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def jose(header: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
    """A JOSE compact token with these (unsigned) segments."""

    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    parts = [segment(header), segment(claims or {}), "c2lnbmF0dXJl"]
    return ".".join(parts)


@dataclass
class Agent:
    roles: list[str] = field(default_factory=lambda: ["agent"])
    identity: str = "ada@example.com"
    worker_sid: str | None = "WK" + "1" * 32
    expires_in: float = 3600


@dataclass
class Upstream:
    """Twilio's token validation and Segment's Profile API, as one MockTransport handler."""

    agents: dict[str, Agent] = field(default_factory=dict)
    twilio_status: int = 200
    twilio_down: bool = False
    twilio: list[httpx.Request] = field(default_factory=list)
    segment: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == httpx.URL(IAM_URL).host:
            self.twilio.append(request)
            return self.validate(request)
        self.segment.append(request)
        error = {"error": {"code": "not_found", "message": "Profile was not found."}}
        return httpx.Response(404, json=error)

    def validate(self, request: httpx.Request) -> httpx.Response:
        if self.twilio_down:
            raise httpx.ConnectError("no route to Twilio")
        if self.twilio_status != 200:
            return httpx.Response(self.twilio_status, json={"code": 20003, "message": "no"})
        agent = self.agents.get(json.loads(request.content)["token"])
        if agent is None:
            return httpx.Response(200, json={"valid": False, "message": "Invalid Access Token"})
        expires = time.gmtime(time.time() + agent.expires_in)
        return httpx.Response(
            200,
            json={
                "valid": True,
                "code": 0,
                "message": None,
                "expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", expires),
                "identity": agent.identity,
                "roles": agent.roles,
                "worker_sid": agent.worker_sid,
            },
        )

    def checked(self) -> list[str]:
        """The tokens Twilio was asked about, in order."""
        return [json.loads(r.content)["token"] for r in self.twilio]


@dataclass
class Rig:
    app: Flask
    client: FlaskClient
    upstream: Upstream

    def card(self, token: str | None = None, address: str = "127.0.0.1", **params: str) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(
            "/v1/cards",
            query_string={**CALLER, **params},
            headers=headers,
            environ_base={"REMOTE_ADDR": address},
        )


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[MakeRig]:
    apps: list[Flask] = []

    def build(auth: str = "", **agents: Agent) -> Rig:
        config = write_connection(tmp_path, auth=auth)
        upstream = Upstream(dict(agents))
        settings = AppSettings(
            config_path=config,
            environ=ENVIRON,
            processes=1,
            reload_every=0.0,
            settle=0.0,
            last_good=None,
        )
        app = create_app(settings, transport=httpx.MockTransport(upstream))
        apps.append(app)
        return Rig(app, app.test_client(), upstream)

    yield build
    for app in apps:
        close_app(app)


AGENT = "agent-token-0001"  # opaque, like the sandbox's: only Twilio can tell


def test_a_valid_agent_gets_in_and_twilio_is_asked_properly(make_rig: MakeRig) -> None:
    rig = make_rig(**{AGENT: Agent()})
    response = rig.card(AGENT)
    assert response.status_code == 200, response.text
    assert response.json["found"] is False
    (check,) = rig.upstream.twilio
    assert check.method == "POST"
    assert check.url.path == VALIDATE_PATH
    assert check.headers["Authorization"] == basic(ACCOUNT_SID, AUTH_TOKEN)
    assert json.loads(check.content) == {"token": AGENT}
    # the lookup went on to Segment with the connector's own token, never the agent's
    assert rig.upstream.segment
    assert all(r.headers["Authorization"] == basic(PROFILE_TOKEN, "") for r in rig.upstream.segment)


def test_a_token_is_checked_once_then_cached(make_rig: MakeRig) -> None:
    rig = make_rig(**{AGENT: Agent(), "agent-token-0002": Agent()})
    for _ in range(3):
        assert rig.card(AGENT).status_code == 200
    assert rig.upstream.checked() == [AGENT]
    assert rig.card("agent-token-0002").status_code == 200
    assert rig.upstream.checked() == [AGENT, "agent-token-0002"]


def test_a_token_valid_until_a_past_moment_is_checked_each_time(make_rig: MakeRig) -> None:
    rig = make_rig(**{AGENT: Agent(expires_in=-5)})
    rig.card(AGENT)
    rig.card(AGENT)
    assert rig.upstream.checked() == [AGENT, AGENT]


def test_a_missing_token_is_401_without_asking_twilio(make_rig: MakeRig) -> None:
    rig = make_rig()
    response = rig.card()
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="connector"'
    assert response.json["error"]["code"] == "authentication_error"
    assert rig.upstream.twilio == []
    assert rig.upstream.segment == []


def test_public_routes_need_no_token(make_rig: MakeRig) -> None:
    rig = make_rig()
    assert rig.client.get("/healthz").status_code == 200
    assert rig.upstream.twilio == []


JUNK = {
    "too short": "abc",
    "spaces": "not a token at all",
    "non-ascii": "t\u00f6ken-12345678",
    "bad header": "bm90LWpzb24.e30.c2ln",
    "header without alg": jose({"typ": "JWT"}),
    "another account": jose({"alg": "HS256"}, {"sub": "AC" + "f" * 32, "exp": 2**40}),
    "expired": jose({"alg": "HS256"}, {"sub": ACCOUNT_SID, "exp": 1}),
    "too long": "a" * 8193,
}


@pytest.mark.parametrize("token", JUNK.values(), ids=JUNK.keys())
def test_junk_tokens_are_refused_without_asking_twilio(make_rig: MakeRig, token: str) -> None:
    rig = make_rig()
    response = rig.client.get(
        "/v1/cards", query_string=CALLER, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert rig.upstream.twilio == []
    assert rig.upstream.segment == []
    assert token not in response.text


@pytest.mark.parametrize(
    ("token", "refusal"),
    [
        ("short", "not a Flex token"),
        ("opaque-sandbox-token", None),
        ("abcd.efgh", None),  # two segments, not JOSE-shaped: Twilio decides
        (jose({"alg": "dir", "enc": "A256GCM"}) + ".x.y", None),  # a JWE: claims unreadable
        (jose({"alg": "HS256"}, {"sub": ACCOUNT_SID, "exp": 2**40}), None),
        (jose({"alg": "HS256"}, {"sub": "AC" + "f" * 32}), "a token of another Twilio account"),
        (jose({"alg": "HS256"}, {"exp": 1_700_000_000}), "expired"),  # 2023: a fixed id
        (jose({"alg": 7}), "not a Flex token"),
    ],
)
def test_not_a_flex_token(token: str, refusal: str | None) -> None:
    assert not_a_flex_token(token, ACCOUNT_SID) == refusal


def test_a_token_twilio_refuses_is_401_and_remembered(make_rig: MakeRig) -> None:
    rig = make_rig()
    for _ in range(3):
        response = rig.card("forged-token-0001")
        assert response.status_code == 401
        assert "Invalid Access Token" in response.json["error"]["message"]
    assert rig.upstream.checked() == ["forged-token-0001"]


@pytest.mark.parametrize(
    ("roles", "status"),
    [
        (["agent"], 200),
        (["supervisor"], 200),
        (["admin", "wfo.team_leader"], 200),
        (["guest"], 403),
        (["agent", "guest"], 403),  # a guest is refused whatever else it is
        (["wfo.quality_process_manager"], 403),
        ([], 403),
    ],
)
def test_roles(make_rig: MakeRig, roles: list[str], status: int) -> None:
    rig = make_rig(**{AGENT: Agent(roles=roles)})
    response = rig.card(AGENT)
    assert response.status_code == status
    assert len(rig.upstream.twilio) == 1
    assert bool(rig.upstream.segment) == (status == 200)


def test_allowed_roles_come_from_the_connection(make_rig: MakeRig) -> None:
    rig = make_rig('allowed_roles = ["supervisor"]', **{AGENT: Agent(roles=["agent"])})
    assert rig.card(AGENT).status_code == 403
    assert rig.upstream.segment == []


def test_a_token_in_the_query_string_is_refused(make_rig: MakeRig) -> None:
    rig = make_rig(**{AGENT: Agent()})
    response = rig.card(Token=AGENT)
    assert response.status_code == 401
    assert "never read from a URL" in response.json["error"]["message"]
    assert AGENT not in response.text
    assert rig.upstream.twilio == []


@pytest.mark.parametrize("form", [True, False])
def test_a_token_field_in_a_post_body_is_read(make_rig: MakeRig, form: bool) -> None:
    rig = make_rig(**{AGENT: Agent()})
    body = {**CALLER, "Token": AGENT}
    response = (
        rig.client.post("/v1/cards", data=body) if form else rig.client.post("/v1/cards", json=body)
    )
    assert response.status_code == 200, response.text
    assert rig.upstream.checked() == [AGENT]


@pytest.mark.parametrize("field", ["Token", "FlowSid"])
def test_a_gate_field_that_is_no_string_is_a_400(make_rig: MakeRig, field: str) -> None:
    """Even beside a valid Bearer token: the body says something the connector cannot read."""
    rig = make_rig(**{AGENT: Agent()})
    response: Any = rig.client.post(
        "/v1/cards", json={**CALLER, field: 12345}, headers={"Authorization": f"Bearer {AGENT}"}
    )
    assert response.status_code == 400
    assert response.json["error"]["message"] == f"The field {field} must be a string."
    assert rig.upstream.segment == []


@pytest.mark.parametrize(
    ("twilio_status", "twilio_down", "code"),
    [
        (401, False, "auth_unavailable"),  # Twilio refused our account SID and auth token
        (404, False, "auth_unavailable"),
        (500, False, "auth_unavailable"),
        (200, True, "auth_unavailable"),
    ],
)
def test_twilio_failing_is_503_and_not_remembered(
    make_rig: MakeRig, twilio_status: int, twilio_down: bool, code: str
) -> None:
    rig = make_rig(**{AGENT: Agent()})
    rig.upstream.twilio_status, rig.upstream.twilio_down = twilio_status, twilio_down
    response = rig.card(AGENT)
    assert response.status_code == 503
    assert response.json["error"]["code"] == code
    assert rig.upstream.segment == []
    rig.upstream.twilio_status, rig.upstream.twilio_down = 200, False
    assert rig.card(AGENT).status_code == 200
    assert rig.upstream.checked() == [AGENT, AGENT]


# --- limits ------------------------------------------------------------------------------------


def test_each_agent_has_a_lookup_limit(make_rig: MakeRig) -> None:
    other = "agent-token-0002"
    rig = make_rig(
        "agent_lookups_per_minute = 2",
        **{AGENT: Agent(), other: Agent(worker_sid="WK" + "2" * 32)},
    )
    assert [rig.card(AGENT).status_code for _ in range(2)] == [200, 200]
    lookups = len(rig.upstream.segment)
    refused = rig.card(AGENT)
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "rate_limit_error"
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert len(rig.upstream.segment) == lookups  # refused before any Profile API request
    assert rig.card(other).status_code == 200  # another agent has their own budget


def test_the_lookup_limit_counts_only_lookups(make_rig: MakeRig) -> None:
    rig = make_rig("agent_lookups_per_minute = 1", **{AGENT: Agent()})
    headers = {"Authorization": f"Bearer {AGENT}"}
    for _ in range(3):
        assert rig.client.get("/readyz", headers=headers).status_code in (200, 503)
    assert rig.card(AGENT).status_code == 200
    assert rig.card(AGENT).status_code == 429


def test_failed_authentications_are_limited_per_address(make_rig: MakeRig) -> None:
    fresh = "agent-token-0002"
    rig = make_rig("failed_auth_per_minute = 3", **{AGENT: Agent(), fresh: Agent()})
    assert rig.card(AGENT).status_code == 200  # known valid from now on
    assert [rig.card("junk").status_code for _ in range(3)] == [401, 401, 401]
    blocked = rig.card("junk")
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    # while blocked, nothing new is checked with Twilio, not even a valid token ...
    assert rig.card(fresh).status_code == 429
    assert rig.card().status_code == 429
    assert rig.upstream.checked() == [AGENT]
    # ... but an agent whose token is already known valid keeps working (same office NAT)
    assert rig.card(AGENT).status_code == 200
    # and other addresses are not affected
    assert rig.card("junk", address="10.0.0.2").status_code == 401
    assert rig.card(fresh, address="10.0.0.2").status_code == 200
