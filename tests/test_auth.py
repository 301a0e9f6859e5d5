"""Who gets in: Flex tokens (checked with the sandbox's Twilio), Studio signatures, Basic auth."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from connector.auth.flex_tokens import not_a_flex_token
from connector.tls import tls_context
from tests.conftest import (
    TWILIO_AUTH_TOKEN,
    ConnectorFactory,
    RunningConnector,
    RunningSandbox,
)

FLEX = "https://flex.twilio.com"
ACCOUNT = "AC" + "0" * 31 + "1"


def jwt(header: dict[str, Any], claims: dict[str, Any] | None, parts: int = 3) -> str:
    """A JOSE compact token with these (unsigned) segments."""

    def segment(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    rest = [segment(claims)] if parts == 3 else ["a2V5", "aXY", "Y2lwaGVy"]
    return ".".join([segment(header), *rest, "c2ln"])


ADA = "+14155550123"
STUDIO_BASIC = ("studio", "basic-secret-for-tests")
EVENT = {"event": "Auth Matrix", "from": ADA}


@pytest.fixture(scope="module")
def tokens(demo: RunningSandbox) -> dict[str, str]:
    """One token of each kind, issued by the sandbox's Twilio."""
    issue = demo.control.issue_agent_token
    return {
        "valid": issue(roles=["agent"])["token"],
        "expired": issue(roles=["agent"], ttl_seconds=-1)["token"],
        "guest": issue(roles=["guest"])["token"],
        "bad": "not-a-token-twilio-issued",
    }


@pytest.fixture
def connector(make_connector: ConnectorFactory, demo: RunningSandbox) -> RunningConnector:
    extra = (
        '\n[auth]\nstudio_basic_auth_env = "STUDIO_BASIC_AUTH"\n'
        f'\n[writeback]\nenabled = true\ntracking_api_url = "{demo.url}"\n'
    )
    return make_connector(demo, extra, env={"STUDIO_BASIC_AUTH": ":".join(STUDIO_BASIC)})


def anonymous(connector: RunningConnector) -> httpx.Client:
    return httpx.Client(base_url=connector.url, timeout=15, verify=tls_context())


# (method, path, what a valid call sends, its success status)
ROUTES: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/v1/cards", {"params": {"from": ADA}}, 200),
    ("POST", "/v1/cards", {"json": {"from": ADA}}, 200),
    ("POST", "/v1/studio/lookup", {"data": {"From": ADA}}, 200),
    ("POST", "/v1/events", {"json": EVENT}, 202),
    ("GET", "/readyz", {}, 200),
    ("GET", "/openapi.json", {}, 200),
    ("POST", "/cards/view", {"data": {"from": ADA}}, 200),
]
CREDENTIALS = {"none": 401, "bad": 401, "expired": 401, "guest": 403, "valid": None}


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(("method", "path", "send", "ok"), ROUTES, ids=[r[1] for r in ROUTES])
def test_flex_token_matrix(
    connector: RunningConnector,
    tokens: dict[str, str],
    credential: str,
    method: str,
    path: str,
    send: dict[str, Any],
    ok: int,
) -> None:
    headers = {"Origin": FLEX}
    if credential != "none":
        headers["Authorization"] = f"Bearer {tokens[credential]}"
    with anonymous(connector) as client:
        response = client.request(method, path, headers=headers, **send)
    expected = CREDENTIALS[credential] or ok
    if path == "/openapi.json" or (path == "/readyz" and credential == "none"):
        expected = ok  # public, and open to probes without credentials
    assert response.status_code == expected, response.text
    assert response.headers["Access-Control-Allow-Origin"] == FLEX  # errors included
    if expected >= 400 and path == "/cards/view":  # the CRM container's iframe gets a page
        assert response.headers["Content-Type"].startswith("text/html")
        assert ("Not allowed" if expected == 403 else "Sign in again") in response.text
    elif expected >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message"}
        assert error["code"] == ("forbidden" if expected == 403 else "authentication_error")
        for token in tokens.values():
            assert token not in response.text


def test_a_token_in_a_query_string_is_refused_saying_where_it_goes(
    connector: RunningConnector,
) -> None:
    with anonymous(connector) as client:
        refused = client.get("/v1/cards", params={"from": ADA, "Token": connector.agent_token})
    assert refused.status_code == 401
    message = refused.json()["error"]["message"]
    assert "never read from a URL" in message and connector.agent_token not in message


def test_probes_and_the_document_need_no_credentials(connector: RunningConnector) -> None:
    """A load balancer's probe gets readiness and nothing more; credentials get the details."""
    with anonymous(connector) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        probe = client.get("/readyz")
        assert probe.status_code == 200 and probe.json() == {"ready": True}
        forged = client.get("/readyz", headers={"Authorization": "Bearer forged-token-1"})
        assert forged.status_code == 401  # credentials that are given are checked
    details = connector.http.get("/readyz").json()
    assert details["ready"] is True and {"version", "config", "upstream"} <= set(details)


@pytest.mark.parametrize("where", ["form", "json"])
def test_the_flex_token_field_convention(
    connector: RunningConnector, tokens: dict[str, str], where: str
) -> None:
    with anonymous(connector) as client:
        body = {"from": ADA, "Token": tokens["valid"]}
        sent = {"data": body} if where == "form" else {"json": body}
        assert client.post("/v1/cards", **sent).json()["found"] is True  # type: ignore[arg-type]
        refused = {**body, "Token": tokens["expired"]}
        sent = {"data": refused} if where == "form" else {"json": refused}
        assert client.post("/v1/cards", **sent).status_code == 401  # type: ignore[arg-type]
        # A token in a URL ends up in access logs: never read there, on any route.
        query = client.get("/v1/cards", params={"from": ADA, "Token": tokens["valid"]})
        assert query.status_code == 401
        page = client.post("/cards/view", params={"Token": tokens["valid"]}, data={"from": ADA})
        assert page.status_code == 401
        if where == "form":  # as the card page's script posts it
            assert "Ada Lovelace" in client.post("/cards/view", data=body).text
            refused_page = client.post("/cards/view", data=refused)
            assert refused_page.status_code == 401 and "Sign in again" in refused_page.text


def test_roles_follow_the_connection_file(
    make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    connector = make_connector(demo, '\n[auth]\nallowed_roles = ["supervisor"]\n')
    agent = connector.card(**{"from": ADA})
    assert agent.status_code == 403 and agent.json()["error"]["code"] == "forbidden"
    supervisor = demo.control.issue_agent_token(roles=["supervisor"])["token"]
    allowed = connector.http.get(
        "/v1/cards", params={"from": ADA}, headers={"Authorization": f"Bearer {supervisor}"}
    )
    assert allowed.status_code == 200


def test_an_edit_of_the_auth_section_applies_without_a_restart(
    make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    connector = make_connector(demo)
    assert connector.card(**{"from": ADA}).status_code == 200
    text = connector.config.read_text()
    connector.config.write_text(text + '\n[auth]\nallowed_roles = ["supervisor"]\n')
    assert connector.card(**{"from": ADA}).status_code == 403  # the cached token, a new rule
    connector.config.write_text(text + "\n[auth]\nagent_lookups_per_minute = 1\n")
    assert [connector.card(**{"from": ADA}).status_code for _ in range(2)] == [200, 429]


def test_a_token_is_checked_with_twilio_once_until_it_expires(
    connector: RunningConnector, demo: RunningSandbox
) -> None:
    before = demo.control.stats()["twilio"].get("valid", 0)
    for _ in range(20):
        assert connector.card(**{"from": ADA}).status_code == 200
    assert demo.control.stats()["twilio"].get("valid", 0) - before == 1


def test_a_refused_token_is_remembered_briefly(
    connector: RunningConnector, demo: RunningSandbox
) -> None:
    before = demo.control.stats()["twilio"].get("invalid", 0)
    with anonymous(connector) as client:
        for _ in range(10):
            headers = {"Authorization": "Bearer forged-token"}
            assert client.get("/v1/cards", params={"from": ADA}, headers=headers).status_code == 401
    assert demo.control.stats()["twilio"].get("invalid", 0) - before == 1


def twilio_checks(demo: RunningSandbox) -> int:
    return sum(demo.control.stats()["twilio"].values())


def test_junk_tokens_cost_twilio_at_most_the_failed_authentication_limit(
    make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    """2,000 distinct junk tokens from one address: what cannot be a Flex token is refused
    without asking Twilio, and past the limit the address is refused without any check; an
    agent whose token was checked before keeps working from the same address."""
    connector = make_connector(demo, "\n[auth]\nfailed_auth_per_minute = 10\n")
    assert connector.card(**{"from": ADA}).status_code == 200  # the agent's token is checked
    before = twilio_checks(demo)
    junk = [
        *(f"junk token {i}!" for i in range(500)),  # not even the characters of a token
        *(f"eyJub3Q.{i}.a2V5" for i in range(500)),  # JOSE-shaped, but no JSON header
        *(f"opaque-junk-{i:05d}" for i in range(1000)),  # only Twilio could say
    ]
    statuses: list[int] = []
    with anonymous(connector) as client:
        for token in junk:
            response = client.get(
                "/v1/cards", params={"from": ADA}, headers={"Authorization": f"Bearer {token}"}
            )
            statuses.append(response.status_code)
        refused = client.get(
            "/v1/cards", params={"from": ADA}, headers={"Authorization": "Bearer another-junk"}
        )
        fresh = demo.control.issue_agent_token()["token"]
        newcomer = client.get(
            "/v1/cards", params={"from": ADA}, headers={"Authorization": f"Bearer {fresh}"}
        )
    assert twilio_checks(demo) - before == 0  # the first 10 failures were caught locally
    assert set(statuses) == {401, 429} and statuses.count(401) == 10
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limit_error"
    assert newcomer.status_code == 429  # not checked while the address is refused
    assert connector.card(**{"from": ADA}).status_code == 200  # known to be valid: let in


def test_plausible_tokens_reach_twilio_once_each_until_the_limit(
    make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    connector = make_connector(demo, "\n[auth]\nfailed_auth_per_minute = 5\n")
    before = twilio_checks(demo)
    with anonymous(connector) as client:
        statuses = [
            client.get(
                "/v1/cards", params={"from": ADA}, headers={"Authorization": f"Bearer junk-{i:04d}"}
            ).status_code
            for i in range(50)
        ]
    assert statuses == [401] * 5 + [429] * 45
    assert twilio_checks(demo) - before == 5


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("short", "not a Flex token"),
        ("has spaces in it", "not a Flex token"),
        ("x" * 8193, "not a Flex token"),
        ("bm90.anNvbg.c2ln", "not a Flex token"),  # three segments, no JSON header
        (jwt({"alg": "HS256"}, {"sub": "AC" + "1" * 32, "exp": 4102444800}), "another"),
        (jwt({"alg": "HS256"}, {"sub": ACCOUNT, "exp": 946684800}), "expired"),
        (jwt({"alg": "HS256"}, {"sub": ACCOUNT, "exp": 4102444800}), None),
        (jwt({"alg": "dir", "enc": "A256GCM"}, None, parts=5), None),  # a JWE: Twilio decides
        ("sandbox-agent-token-123", None),
    ],
)
def test_what_cannot_be_a_flex_token_is_refused_without_asking(
    token: str, reason: str | None
) -> None:
    verdict = not_a_flex_token(token, ACCOUNT)
    assert verdict is None if reason is None else reason in (verdict or "")


def test_twilio_down_is_a_503_not_a_401_and_not_a_hang(
    connector: RunningConnector, demo: RunningSandbox
) -> None:
    assert connector.card(**{"from": ADA}).status_code == 200  # this agent's token is checked
    fresh = demo.control.issue_agent_token()["token"]
    demo.control.set_faults(error_rate=1.0, targets=["twilio"])
    try:
        with anonymous(connector) as client:
            response = client.get(
                "/v1/cards",
                params={"from": ADA},
                headers={"Authorization": f"Bearer {fresh}", "Origin": FLEX},
            )
    finally:
        demo.control.clear_faults()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "auth_unavailable"
    assert response.headers["Access-Control-Allow-Origin"] == FLEX
    # A token checked before the outage goes on working through it.
    demo.control.set_faults(error_rate=1.0, targets=["twilio"])
    try:
        assert connector.card(**{"from": ADA}).status_code == 200
    finally:
        demo.control.clear_faults()


# --- Studio ------------------------------------------------------------------------------------


def sign(url: str, params: dict[str, str] | None = None) -> str:
    signature: str = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, params or {})
    return signature


def signed_json(url: str, body: dict[str, Any]) -> tuple[str, bytes, str]:
    """As Twilio sends a JSON body: its SHA-256 in the URL, the URL signed."""
    raw = json.dumps(body).encode()
    full = f"{url}?{urlencode({'bodySHA256': hashlib.sha256(raw).hexdigest()})}"
    return full, raw, sign(full)


def test_studio_form_requests_are_checked_by_signature(connector: RunningConnector) -> None:
    url = f"{connector.url}/v1/studio/lookup"
    form = {"From": f"whatsapp:{ADA}", "FlowSid": "FW" + "0" * 32}
    with anonymous(connector) as client:
        good = client.post(url, data=form, headers={"X-Twilio-Signature": sign(url, form)})
        assert good.status_code == 200 and good.json()["status"] == "found"
        tampered = {**form, "From": "+447700900123"}
        forged = client.post(url, data=tampered, headers={"X-Twilio-Signature": sign(url, form)})
        assert forged.status_code == 401
        other_key = RequestValidator("someone-elses-token").compute_signature(url, form)
        assert (
            client.post(url, data=form, headers={"X-Twilio-Signature": other_key}).status_code
            == 401
        )
        unsigned = client.post(url, data=form)
        assert unsigned.status_code == 401


def test_studio_json_bodies_are_checked_against_their_hash(connector: RunningConnector) -> None:
    base = f"{connector.url}/v1/studio/lookup"
    full, raw, signature = signed_json(base, {"from": ADA})
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/json"}
    with anonymous(connector) as client:
        assert client.post(full, content=raw, headers=headers).json()["status"] == "found"
        # Same URL and signature, another body: the hash no longer matches.
        other = json.dumps({"from": "+447700900123"}).encode()
        assert client.post(full, content=other, headers=headers).status_code == 401
        # A JSON body without bodySHA256 in the URL is not covered by the signature.
        bare = {"X-Twilio-Signature": sign(base), "Content-Type": "application/json"}
        assert client.post(base, content=other, headers=bare).status_code == 401


def test_signatures_behind_a_proxy_need_the_proxy_trusted(
    make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    public = "https://connector.example.com/cx/v1/studio/lookup"
    form = {"From": ADA}
    forwarded = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "connector.example.com",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Prefix": "/cx",
        "X-Forwarded-For": "203.0.113.9",
        "X-Twilio-Signature": sign(public, form),
    }
    untrusted = make_connector(demo)
    trusted = make_connector(demo, "\n[auth]\ntrusted_proxies = 1\n")
    with anonymous(untrusted) as client:
        refused = client.post("/v1/studio/lookup", data=form, headers=forwarded)
        assert refused.status_code == 401
        assert "set [auth] trusted_proxies" in refused.json()["error"]["message"]
    with anonymous(trusted) as client:
        answer = client.post("/v1/studio/lookup", data=form, headers=forwarded)
        assert answer.status_code == 200, answer.text
        # The loopback URL is not what Twilio signed, once a proxy is trusted.
        direct = {"X-Twilio-Signature": sign(f"{trusted.url}/v1/studio/lookup", form)}
        spoofed = client.post("/v1/studio/lookup", data=form, headers={**forwarded, **direct})
        assert spoofed.status_code == 401


@pytest.mark.parametrize(
    ("auth", "status"),
    [(STUDIO_BASIC, 200), (("studio", "wrong"), 401), (("other", STUDIO_BASIC[1]), 401)],
)
def test_studio_basic_auth(connector: RunningConnector, auth: tuple[str, str], status: int) -> None:
    with anonymous(connector) as client:
        response = client.post("/v1/studio/lookup", data={"From": ADA}, auth=auth)
    assert response.status_code == status


def test_a_signed_widget_with_basic_credentials_is_let_in_by_either(
    connector: RunningConnector,
) -> None:
    form = {"From": ADA}
    stale_signature = {
        "X-Twilio-Signature": sign("https://old-host.example/v1/studio/lookup", form)
    }
    with anonymous(connector) as client:
        basic = client.post(
            "/v1/studio/lookup", data=form, headers=stale_signature, auth=STUDIO_BASIC
        )
        assert basic.status_code == 200
        wrong = client.post(
            "/v1/studio/lookup", data=form, headers=stale_signature, auth=("studio", "nope")
        )
        assert wrong.status_code == 401


def test_basic_auth_is_refused_when_not_configured(
    make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    connector = make_connector(demo)
    with anonymous(connector) as client:
        response = client.post("/v1/studio/lookup", data={"From": ADA}, auth=STUDIO_BASIC)
    assert response.status_code == 401


# --- limits and the audit trail -----------------------------------------------------------------


def test_each_agent_has_a_lookup_rate_limit(
    make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    connector = make_connector(demo, "\n[auth]\nagent_lookups_per_minute = 5\n")
    statuses = [connector.card(**{"from": ADA}).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    limited = connector.card(**{"from": ADA})
    assert limited.json()["error"]["code"] == "rate_limit_error"
    assert 1 <= int(limited.headers["Retry-After"]) <= 12
    # Another agent is not held back by the first one's limit.
    other = demo.control.issue_agent_token()["token"]
    response = connector.http.get(
        "/v1/cards", params={"from": ADA}, headers={"Authorization": f"Bearer {other}"}
    )
    assert response.status_code == 200


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "connector.audit"]


def test_the_audit_trail_names_agent_flow_customer_and_outcome(
    connector: RunningConnector, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connector")
    worker = connector.http.get("/v1/cards", params={"from": ADA})
    assert worker.status_code == 200
    connector.card(**{"from": "+15005550000"})
    url = f"{connector.url}/v1/studio/lookup"
    form = {"From": ADA, "FlowSid": "FW" + "ab" * 16}
    with anonymous(connector) as client:
        client.post(url, data=form, headers={"X-Twilio-Signature": sign(url, form)})
        client.get("/v1/cards", params={"from": ADA}, headers={"Authorization": "Bearer nope"})
    lines = [
        {k: str(getattr(r, k, "")) for k in ("principal", "outcome", "status", "caller", "route")}
        for r in audit_lines(caplog)
    ]
    agent = lines[0]["principal"]
    assert agent.startswith("agent:WK")  # the worker SID, not the agent's login
    assert [(r["principal"], r["outcome"], r["status"]) for r in lines] == [
        (agent, "found", "200"),
        (agent, "not_found", "200"),
        ("flow:FW" + "ab" * 16, "found", "200"),
        ("anonymous", "unauthenticated", "401"),
    ]
    assert lines[0]["caller"] == lines[2]["caller"] and lines[0]["caller"].startswith("h_")
    assert lines[0]["route"] == "/v1/cards" and lines[2]["route"] == "/v1/studio/lookup"
    for record in audit_lines(caplog):
        text = json.dumps(record.__dict__, default=str)
        assert ADA not in text and "4155550123" not in text
