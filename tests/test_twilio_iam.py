"""Twilio's Flex token validation, offline: the shape Flex backends rely on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connector.sandbox import SandboxConfig
from tests.conftest import RunningSandbox, SandboxFactory

SID = SandboxConfig().twilio_account_sid
AUTH = (SID, SandboxConfig().twilio_auth_token)


def validate(
    sandbox: RunningSandbox, token: Any, auth: tuple[str, str] = AUTH, sid: str = SID
) -> httpx.Response:
    return sandbox.http.post(
        f"/v1/Accounts/{sid}/Tokens/validate", json={"token": token}, auth=auth
    )


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    return make_sandbox()


def test_an_issued_agent_token_is_valid(sandbox: RunningSandbox) -> None:
    issued = sandbox.control.issue_agent_token(identity="ada@owl.example", roles=["agent"])
    body = validate(sandbox, issued["token"]).json()
    assert body["valid"] is True and body["code"] == 0
    assert body["identity"] == "ada@owl.example" and body["roles"] == ["agent"]
    assert body["worker_sid"].startswith("WK") and body["expiration"].endswith("Z")
    assert set(body) == {
        "valid",
        "code",
        "message",
        "expiration",
        "identity",
        "roles",
        "worker_sid",
        "realm_user_id",
    }


def test_a_chosen_token_string_can_be_registered(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.agent_tokens.issue(token="my-fixed-token", roles=("supervisor",))
    body = validate(sandbox, "my-fixed-token").json()
    assert body["valid"] is True and body["roles"] == ["supervisor"]


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda c: "never-issued", 20101),
        (lambda c: c.issue_agent_token(ttl_seconds=-1)["token"], 20104),
    ],
)
def test_unknown_and_expired_tokens_are_invalid(
    sandbox: RunningSandbox, make: Any, code: int
) -> None:
    response = validate(sandbox, make(sandbox.control))
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False and body["code"] == code and body["identity"] is None


def test_guest_tokens_say_so(sandbox: RunningSandbox) -> None:
    token = sandbox.control.issue_agent_token(roles=["guest"])["token"]
    body = validate(sandbox, token).json()
    assert body["valid"] is True and body["roles"] == ["guest"] and body["worker_sid"] is None


def test_wrong_credentials_are_401_in_twilios_shape(sandbox: RunningSandbox) -> None:
    response = validate(sandbox, "t", auth=(SID, "wrong"))
    assert response.status_code == 401
    assert response.json()["code"] == 20003 and response.json()["status"] == 401


def test_another_account_is_404(sandbox: RunningSandbox) -> None:
    other = "AC" + "9" * 32
    response = validate(sandbox, "t", auth=AUTH, sid=other)
    assert response.status_code == 404 and response.json()["code"] == 20404


@pytest.mark.parametrize("token", [None, "", 42])
def test_a_missing_token_is_400(sandbox: RunningSandbox, token: Any) -> None:
    assert validate(sandbox, token).status_code == 400


def test_twilio_can_be_faulted_separately(sandbox: RunningSandbox) -> None:
    token = sandbox.control.issue_agent_token()["token"]
    sandbox.control.set_faults(error_rate=1.0)  # default targets: Segment's APIs only
    assert validate(sandbox, token).status_code == 200
    sandbox.control.set_faults(error_rate=1.0, targets=["twilio"])
    assert validate(sandbox, token).status_code == 503
