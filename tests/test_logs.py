"""All log output of a full scenario: no phone number, email, token or write key in clear."""

from __future__ import annotations

import base64
import json
import logging
import time

import httpx
import pytest
from twilio.request_validator import RequestValidator

from connector.logs import JsonFormatter
from connector.web.registry import services_of
from tests.conftest import (
    TOKEN,
    TWILIO_AUTH_TOKEN,
    WRITE_KEY,
    ConnectorFactory,
    RunningConnector,
    RunningSandbox,
    SandboxFactory,
)

STUDIO = ("studio", "basic-password-for-the-log-test")
SECRETS_AND_PII = [
    TOKEN,
    WRITE_KEY,
    base64.b64encode(f"{TOKEN}:".encode()).decode(),
    base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
    "4155550123",
    "4155550199",
    "5511912345678",
    "447700900123",
    "7700 900123",
    "ada@example.com",
    "Ada@Example.com",
    "fatima.zahra",
    "joao.silva",
]


def test_a_full_scenario_logs_no_secret_and_no_caller_in_clear(
    make_sandbox: SandboxFactory,
    make_connector: ConnectorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything the root logger lets through
    sandbox = make_sandbox(data="demo")
    connector = make_connector(
        sandbox,
        '\n[auth]\nstudio_basic_auth_env = "STUDIO_BASIC_AUTH"\n'
        f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n',
        env={"STUDIO_BASIC_AUTH": ":".join(STUDIO)},
    )
    http = connector.http
    credentials = _authenticate_every_way(connector, sandbox)
    for params in (
        {"from": "+14155550123"},
        {"from": "+14155550123"},
        {"email": "Ada@Example.com"},
        {"from": "whatsapp:+5511912345678"},
        {"from": "tel:+14155550199"},
        {"from": "+447700900123"},
        {"from": "+14155550100"},
        {"from": "not a number 4155550123"},
        {"email": "fatima.zahra@example.com"},
    ):
        http.get("/v1/cards", params=params)
    http.post("/v1/studio/lookup", data={"From": "whatsapp:+5511912345678"})
    http.post(
        "/v1/events",
        json={
            "event": "Flex - Engagement Completed",
            "from": "+14155550123",
            "properties": {"sentiment": "ok"},
        },
    )
    http.post(
        "/v1/events",
        json={
            "type": "subscriptions",
            "from": "whatsapp:+5511912345678",
            "whatsapp_subscription_status": "false",
            "email": "joao.silva@example.com.br",
            "email_subscription_status": "true",
        },
    )
    http.post("/v1/events", json={"event": "E", "from": "+14155550100"})  # unknown caller
    http.get("/readyz")
    connector.config.write_text(connector.config.read_text().replace("friendly_name", "nme"))
    http.get("/readyz")
    sandbox.control.set_faults(outage="refuse", seconds=5)
    try:
        http.get("/v1/cards", params={"from": "+33612345678"})
    finally:
        sandbox.sandbox.faults.clear()
    deadline = time.monotonic() + 20
    while services_of(connector.app).outbox.get().depth().pending and time.monotonic() < deadline:
        time.sleep(0.05)

    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    text = "\n".join(lines) + "\n".join(repr(r.__dict__) for r in caplog.records)
    for needle in SECRETS_AND_PII + credentials:
        assert needle not in text, f"{needle!r} appears in the logs"
    audit = [json.loads(line) for line in lines if json.loads(line)["message"] == "audit"]
    assert {"agent", "flow", "basic", "anonymous"} <= {a["principal"].split(":")[0] for a in audit}

    lookups = [json.loads(line) for line in lines if json.loads(line)["message"] == "lookup"]
    assert len(lookups) >= 10
    assert all(entry["caller"].startswith("h_") for entry in lookups)
    ada = [
        e["caller"]
        for e in lookups
        if e.get("matched_type") == "phone" and e["kind"] == "phone" and e["outcome"] == "found"
    ]
    assert ada[0] == ada[1]  # the same caller hashes alike: their lookups can be correlated
    assert {"found", "not_found", "unavailable"} <= {e["outcome"] for e in lookups}
    events = [json.loads(line) for line in lines if json.loads(line)["message"] == "event accepted"]
    assert len(events) == 2 and all(e["caller"].startswith("h_") for e in events)


def _authenticate_every_way(connector: RunningConnector, sandbox: RunningSandbox) -> list[str]:
    """Valid, refused and failing credentials of every kind; returns what must never be logged."""
    url = f"{connector.url}/v1/studio/lookup"
    form = {"From": "+14155550123"}
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form)
    expired = sandbox.control.issue_agent_token(identity="eve@owl.example", ttl_seconds=-1)
    guest = sandbox.control.issue_agent_token(identity="gus@owl.example", roles=["guest"])
    fresh = sandbox.control.issue_agent_token(identity="fay@owl.example")
    with httpx.Client(base_url=connector.url, timeout=15) as anonymous:
        anonymous.post(url, data=form, headers={"X-Twilio-Signature": signature})
        anonymous.post(url, data=form, headers={"X-Twilio-Signature": "forged"})
        anonymous.post(url, data=form, auth=STUDIO)
        anonymous.post(url, data=form, auth=(STUDIO[0], "wrong-basic-password"))
        for token in (expired["token"], guest["token"], "forged-flex-token"):
            anonymous.get("/v1/cards", params=form, headers={"Authorization": f"Bearer {token}"})
        anonymous.post("/v1/cards", data={**form, "Token": guest["token"]})
        sandbox.control.set_faults(error_rate=1.0, targets=["twilio"])
        try:
            anonymous.get(
                "/v1/cards", params=form, headers={"Authorization": f"Bearer {fresh['token']}"}
            )
        finally:
            sandbox.control.clear_faults()
    agent = sandbox.control.issue_agent_token(identity="ann@owl.example")
    connector.http.get(
        "/v1/cards", params=form, headers={"Authorization": f"Bearer {agent['token']}"}
    )
    return [
        connector.agent_token,
        agent["token"],
        expired["token"],
        guest["token"],
        fresh["token"],
        "forged-flex-token",
        TWILIO_AUTH_TOKEN,
        signature,
        STUDIO[1],
        "wrong-basic-password",
        base64.b64encode(":".join(STUDIO).encode()).decode(),
        "ann@owl.example",  # an agent's login: agents appear by worker SID
        "eve@owl.example",
        "gus@owl.example",
        "fay@owl.example",
    ]
