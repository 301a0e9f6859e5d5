"""All log output of a full scenario: no phone number, email, token or write key in clear."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest

from connector.logs import JsonFormatter
from tests.conftest import TOKEN, WRITE_KEY, ConnectorFactory, SandboxFactory

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
        sandbox, f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n'
    )
    http = connector.http
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
    while connector.app.extensions["outbox"].depth().pending and time.monotonic() < deadline:
        time.sleep(0.05)

    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    text = "\n".join(lines) + "\n".join(repr(r.__dict__) for r in caplog.records)
    for needle in SECRETS_AND_PII:
        assert needle not in text, f"{needle!r} appears in the logs"

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
