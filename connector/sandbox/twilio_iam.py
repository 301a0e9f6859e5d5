"""Twilio's Flex token validation endpoint, offline: `POST /v1/Accounts/{Sid}/Tokens/validate`."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from connector.sandbox.ingest import utc_now
from connector.sandbox.wsgi import basic_user

DEFAULT_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class AgentToken:
    token: str
    identity: str
    roles: tuple[str, ...]
    worker_sid: str | None
    expires_at: datetime


class AgentTokens:
    """Tokens the sandbox accepts as Flex agent tokens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, AgentToken] = {}

    def issue(
        self,
        token: str | None = None,
        identity: str | None = None,
        roles: tuple[str, ...] = ("agent",),
        ttl: timedelta = DEFAULT_TTL,
    ) -> AgentToken:
        """Register (or mint, when `token` is None) a token for an agent."""
        value = token or "sandbox-agent-" + secrets.token_urlsafe(24)
        with self._lock:
            number = len(self._tokens) + 1
            agent = AgentToken(
                token=value,
                identity=identity or f"agent{number}@example.com",
                roles=roles,
                worker_sid=None if "guest" in roles else f"WK{number:032x}",
                expires_at=utc_now() + ttl,
            )
            self._tokens[value] = agent
        return agent

    def get(self, token: str) -> AgentToken | None:
        with self._lock:
            return self._tokens.get(token)


def twilio_error(status: int, code: int, message: str) -> Response:
    response = jsonify(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
    )
    response.status_code = status
    return response


def _result(agent: AgentToken | None, now: datetime) -> dict[str, Any]:
    if agent is None:
        return _invalid(20101, "Invalid Access Token")
    if agent.expires_at <= now:
        return _invalid(20104, "Access Token expired or expiration date invalid")
    return {
        "valid": True,
        "code": 0,
        "message": None,
        "expiration": agent.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "identity": agent.identity,
        "roles": list(agent.roles),
        "worker_sid": agent.worker_sid,
        "realm_user_id": None,
    }


def _invalid(code: int, message: str) -> dict[str, Any]:
    return {
        "valid": False,
        "code": code,
        "message": message,
        "expiration": None,
        "identity": None,
        "roles": None,
        "worker_sid": None,
        "realm_user_id": None,
    }


twilio_iam = Blueprint("twilio", __name__)


@twilio_iam.post("/v1/Accounts/<account_sid>/Tokens/validate")
def validate(account_sid: str) -> Response:
    sandbox = current_app.extensions["sandbox"]
    credentials = basic_user()
    if credentials != (sandbox.config.twilio_account_sid, sandbox.config.twilio_auth_token):
        sandbox.stats.twilio_request("unauthenticated")
        return twilio_error(401, 20003, "Authenticate")
    if account_sid != sandbox.config.twilio_account_sid:
        sandbox.stats.twilio_request("wrong_account")
        return twilio_error(
            404,
            20404,
            f"The requested resource /Accounts/{account_sid}/Tokens/validate was not found",
        )
    body = request.get_json(silent=True)
    token = body.get("token") if isinstance(body, dict) else request.form.get("token")
    if not isinstance(token, str) or not token:
        sandbox.stats.twilio_request("missing_token")
        return twilio_error(400, 20001, "Missing required parameter token")
    result = _result(sandbox.agent_tokens.get(token), utc_now())
    sandbox.stats.twilio_request("valid" if result["valid"] else "invalid")
    return jsonify(result)
