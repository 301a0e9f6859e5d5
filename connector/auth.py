"""Who is asking: every route but `/healthz`, the card page's data-free shell and its script (and
CORS preflights) needs one of

- an agent's Flex token: `Authorization: Bearer`, or a `Token` field (the Flex convention) in a
  form or JSON body, never in a URL (the CRM container's page posts it from the URL's fragment);
  checked with Twilio, refused for guests and for roles the connection does not allow;
- Studio's `X-Twilio-Signature` (see connector.studio_auth);
- Studio's Basic-auth credentials, when the connection names a variable holding them.

Each agent and each flow then has its own lookup rate limit, so a stolen token cannot page
through the customer base. A signed Studio request may name its flow (`FlowSid`, signed with the
rest) so the audit trail and the limit are per flow.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Literal

from flask import g, request

from connector.budget import LocalRateBudget
from connector.errors import Forbidden, TooManyLookups, Unauthenticated
from connector.flex_tokens import FlexTokens
from connector.hot_reload import ConnectionHolder
from connector.logs import caller_hash
from connector.settings import Connection
from connector.studio_auth import SIGNATURE_HEADER, basic_auth_valid, signature_valid

# The card page's shell and script hold no data (connector.routes.pages).
PUBLIC_ENDPOINTS = frozenset({"health.healthz", "pages.card_page", "pages.card_script"})
# Routes that read or write one customer's data: rate-limited per principal and audited.
LOOKUP_ENDPOINTS = frozenset(
    {"cards.card", "cards.studio_lookup", "events.record_event", "pages.card_view"}
)
FLOW_SID = re.compile(r"FW[0-9a-f]{32}")
MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True)
class Principal:
    """An authenticated agent, Studio flow or Basic-auth user, as the audit trail names it."""

    kind: Literal["agent", "flow", "basic"]
    id: str

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.id}"


def current_principal() -> Principal | None:
    principal: Principal | None = g.get("principal")
    return principal


class Gate:
    """Admits or refuses each request (a Flask `before_request` hook)."""

    def __init__(self, holder: ConnectionHolder, tokens: FlexTokens, processes: int) -> None:
        self.holder = holder
        self.tokens = tokens
        self.processes = max(1, processes)
        self._lock = threading.Lock()
        self._limits: tuple[str, LocalRateBudget, LocalRateBudget] | None = None

    def admit(self) -> None:
        if request.method == "OPTIONS" or request.endpoint in PUBLIC_ENDPOINTS:
            return
        if request.endpoint is None:
            return  # no such route: the 404 tells nothing
        connection = self.holder.current()
        principal = self.identify(connection)
        g.principal = principal
        if request.endpoint in LOOKUP_ENDPOINTS:
            self._limit(principal, connection)

    def identify(self, connection: Connection) -> Principal:
        signed = SIGNATURE_HEADER in request.headers
        if signed and signature_valid(request, connection.twilio.auth_token):
            return Principal("flow", _flow_sid() or "studio")
        credentials = request.authorization
        # A widget with Basic credentials is signed too: valid credentials stand on their own.
        if credentials is not None and credentials.type == "basic":
            basic = connection.studio_basic_auth
            if basic is None or not basic_auth_valid(credentials, basic):
                raise Unauthenticated("These Basic auth credentials are not accepted.")
            return Principal("basic", basic[0])
        if signed:
            raise Unauthenticated("The X-Twilio-Signature does not match this request.")
        token = _flex_token(credentials.token if credentials is not None else None)
        verdict = self.tokens.verdict(token, connection.twilio)
        if not verdict.valid:
            raise Unauthenticated(f"The Flex token was refused ({verdict.message[:120]}).")
        roles = set(verdict.roles)
        if "guest" in roles or not roles & set(connection.file.auth.allowed_roles):
            raise Forbidden("This Flex user's role may not read customer profiles.")
        # The worker SID names the agent without their login (often an email) in the logs.
        who = verdict.worker_sid or caller_hash(verdict.identity or "", connection.token)
        return Principal("agent", who)

    def _limit(self, principal: Principal, connection: Connection) -> None:
        agents, flows = self._budgets(connection)
        budget = agents if principal.kind == "agent" else flows
        wait = budget.take(principal.name)
        if wait > 0:
            raise TooManyLookups(
                f"Too many lookups by this {principal.kind}; try again in {math.ceil(wait)} s.",
                wait,
            )

    def _budgets(self, connection: Connection) -> tuple[LocalRateBudget, LocalRateBudget]:
        """Per-minute limits as token buckets, each worker process taking its share."""
        with self._lock:
            if self._limits is None or self._limits[0] != connection.version:
                auth = connection.file.auth
                self._limits = (
                    connection.version,
                    _per_minute(auth.agent_lookups_per_minute / self.processes),
                    _per_minute(auth.flow_lookups_per_minute / self.processes),
                )
            return self._limits[1], self._limits[2]


def _per_minute(limit: float) -> LocalRateBudget:
    return LocalRateBudget(limit / 60, burst=limit)


def _flex_token(bearer: str | None) -> str:
    token = bearer or _field("Token", in_query=False)  # a token in a URL ends up in logs
    if not token:
        raise Unauthenticated(
            "Send the agent's Flex token (Authorization: Bearer, or a Token field), "
            "or sign the request as Twilio Studio does."
        )
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise Unauthenticated("The Flex token was refused (not a token).")
    return token


def _flow_sid() -> str | None:
    sid = _field("FlowSid", in_query=True)
    return sid if sid and FLOW_SID.fullmatch(sid) else None


def _field(name: str, *, in_query: bool) -> str | None:
    """A string field from the form or JSON body (and the query string, when allowed)."""
    sources: list[Any] = [request.args] if in_query else []
    if request.method == "POST":
        if request.is_json:
            body = _json_body()
            if isinstance(body, dict):
                sources.append(body)
        else:
            sources.append(request.form)
    for source in sources:
        value = source.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _json_body() -> object:
    try:
        return request.get_json(silent=True)
    except RecursionError:  # deeply nested JSON: the route refuses it with a 400
        return None
