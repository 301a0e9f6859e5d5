"""Who is asking: every route that does not declare itself public (connector.auth.policy: the
health checks, the OpenAPI document, the card page's data-free shell and its script), and every
request but CORS preflights, needs one of

- an agent's Flex token: `Authorization: Bearer`, or a `Token` field (the Flex convention) in a
  form or JSON body, never in a URL (the CRM container's page posts it from the URL's fragment);
  checked with Twilio, refused for guests and for roles the connection does not allow;
- Studio's `X-Twilio-Signature` (see connector.auth.studio);
- Studio's Basic-auth credentials, when the connection names a variable holding them.

Each agent and each flow then has its own lookup rate limit, so a stolen token cannot page
through the customer base. A signed Studio request may name its flow (`FlowSid`, signed with the
rest) so the audit trail and the limit are per flow.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flask import g, request
from werkzeug.datastructures import Authorization

from connector.auth.failed import FailedAuthentications
from connector.auth.flex_tokens import FlexTokens
from connector.auth.policy import current_policy
from connector.auth.studio import SIGNATURE_HEADER, basic_auth_valid, signature_valid
from connector.config.loading import Connection
from connector.errors import BadRequest, Forbidden, TooManyLookups, Unauthenticated
from connector.logs import caller_hash
from connector.metrics import figures
from connector.state.rates import LocalRateBudget
from connector.state.redis import SharedRedis
from connector.state.shared_limits import SharedLimits

FLOW_SID = re.compile(r"FW[0-9a-f]{32}")


@dataclass(frozen=True)
class Principal:
    """An authenticated agent, Studio flow or Basic-auth user, as the audit trail names it."""

    kind: Literal["agent", "flow", "basic"]
    id: str
    # An agent's Flex roles (what masked values they may read); flows and Basic users have none.
    roles: frozenset[str] = frozenset()
    admin: bool = False  # a Flex admin, or the admin's Basic credentials

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.id}"


def current_principal() -> Principal | None:
    principal: Principal | None = g.get("principal")
    return principal


class Gate:
    """Admits or refuses each request (a Flask `before_request` hook)."""

    def __init__(
        self, tokens: FlexTokens, processes: int, shared: SharedRedis | None = None
    ) -> None:
        self.tokens = tokens
        self.processes = max(1, processes)
        self.failures = FailedAuthentications()
        # With Redis, the limits are the deployment's (each worker's own share stands in while
        # Redis is down).
        self._shared_lookups = SharedLimits(shared, "lookups") if shared else None
        self._shared_failures = SharedLimits(shared, "failed-auth") if shared else None
        self._lock = threading.Lock()
        self._version = ""
        # Per-minute limits as token buckets, each worker process taking its share; an edit of
        # the connection file changes their rates, never refills them.
        self._agents = LocalRateBudget(1.0)
        self._flows = LocalRateBudget(1.0)

    def admit(self, connection: Connection, body: Mapping[str, Any]) -> None:
        """Run before every route with the request's connection snapshot and its body's fields
        (a form or a JSON object; empty when unreadable, which the route then refuses)."""
        route = current_policy()
        if request.method == "OPTIONS" or route.access == "public":
            return
        if request.endpoint is None:
            return  # no such route: the 404 tells nothing
        fields = OfferedFields(body)
        if route.access == "probe" and not fields.brings_credentials():
            return
        address = request.remote_addr or "unknown"
        try:
            try:
                blocked_for = self._blocked_for(address, connection)
                principal = self.identify(connection, fields, blocked_for, admin=route.admin)
            except Unauthenticated:
                self.failures.record(address)
                if self._shared_failures is not None:
                    per_minute = connection.file.auth.failed_auth_per_minute
                    self._shared_failures.take(address, per_minute)
                raise
            if route.admin and not principal.admin:
                raise Forbidden(
                    "This is the connector's admin's: send a Flex token with the admin role, "
                    "or the admin's Basic credentials ([auth] admin_basic_auth_env)."
                )
            g.principal = principal
            if route.customer_data:
                self._limit(principal, connection)
        except (Unauthenticated, Forbidden, TooManyLookups) as refused:
            figures().auth_refused(refused.status)
            raise

    def identify(
        self,
        connection: Connection,
        fields: OfferedFields,
        blocked_for: float = 0.0,
        *,
        admin: bool = False,
    ) -> Principal:
        """Who is asking. While the client's address is `blocked_for` failed authentications,
        only a Flex token already known to be valid gets in: agents behind the same office NAT
        as a misbehaving client keep working, and nothing else is checked at all.

        On an `admin` route, Basic credentials are the admin's, and a Flex token needs the
        admin role rather than one of `allowed_roles` (which say who reads customers)."""
        credentials = request.authorization
        if blocked_for > 0 and not self._known_agent(credentials, fields, connection):
            raise TooManyLookups(
                "Too many failed authentications from this address; "
                f"try again in {math.ceil(blocked_for)} s.",
                blocked_for,
            )
        signed = SIGNATURE_HEADER in request.headers
        if signed and signature_valid(request, connection.twilio.auth_token):
            return Principal("flow", fields.flow_sid() or "studio")
        # A widget with Basic credentials is signed too: valid credentials stand on their own.
        if credentials is not None and credentials.type == "basic" and admin:
            basic = connection.admin_basic_auth
            if basic is None or not basic_auth_valid(credentials, basic):
                raise Unauthenticated("These Basic auth credentials are not the admin's.")
            return Principal("basic", basic[0], admin=True)
        if credentials is not None and credentials.type == "basic":
            basic = connection.studio_basic_auth
            if basic is None or not basic_auth_valid(credentials, basic):
                raise Unauthenticated("These Basic auth credentials are not accepted.")
            return Principal("basic", basic[0])
        if signed:
            raise Unauthenticated(_signature_mismatch(connection))
        token = fields.flex_token(credentials)
        verdict = self.tokens.verdict(token, connection.twilio)
        if not verdict.valid:
            raise Unauthenticated(f"The Flex token was refused ({verdict.message[:120]}).")
        roles = set(verdict.roles)
        who = verdict.worker_sid or caller_hash(verdict.identity or "", connection.token)
        if admin and "admin" in roles:
            return Principal("agent", who, frozenset(roles), admin=True)
        if admin:
            raise Forbidden("Only a Flex admin may open the connector's console and figures.")
        if "guest" in roles or not roles & set(connection.file.auth.allowed_roles):
            raise Forbidden("This Flex user's role may not read customer profiles.")
        # The worker SID names the agent without their login (often an email) in the logs.
        return Principal("agent", who, frozenset(roles))

    def _known_agent(
        self, credentials: Authorization | None, fields: OfferedFields, connection: Connection
    ) -> bool:
        if SIGNATURE_HEADER in request.headers or (credentials and credentials.type == "basic"):
            return False
        token = fields.offered_token(credentials)
        return token is not None and self.tokens.known_valid(token, connection.twilio)

    def _blocked_for(self, address: str, connection: Connection) -> float:
        """Seconds until `address` may try credentials again (0: now)."""
        per_minute = connection.file.auth.failed_auth_per_minute
        shared = self._shared_failures
        wait = shared.wait(address, per_minute) if shared is not None else None
        if wait is None:
            wait = self.failures.wait(address, per_minute / self.processes)
        return wait

    def _limit(self, principal: Principal, connection: Connection) -> None:
        auth = connection.file.auth
        agent = principal.kind == "agent"
        per_minute = auth.agent_lookups_per_minute if agent else auth.flow_lookups_per_minute
        shared = self._shared_lookups
        wait = shared.take(principal.name, per_minute) if shared is not None else None
        if wait is None:
            agents, flows = self._budgets(connection)
            wait = (agents if agent else flows).take(principal.name)
        if wait > 0:
            raise TooManyLookups(
                f"Too many lookups by this {principal.kind}; try again in {math.ceil(wait)} s.",
                wait,
            )

    def _budgets(self, connection: Connection) -> tuple[LocalRateBudget, LocalRateBudget]:
        with self._lock:
            if self._version != connection.version:
                self._version = connection.version
                auth = connection.file.auth
                for budget, per_minute in (
                    (self._agents, auth.agent_lookups_per_minute),
                    (self._flows, auth.flow_lookups_per_minute),
                ):
                    share = per_minute / self.processes
                    budget.set_rate(share / 60, burst=share)
            return self._agents, self._flows


def _signature_mismatch(connection: Connection) -> str:
    """Most mismatches in the field are a proxy: Twilio signed the public URL, and the
    connector rebuilds it only through the proxies the connection trusts."""
    message = "The X-Twilio-Signature does not match this request."
    forwarded = any(name.lower().startswith("x-forwarded-") for name, _ in request.headers.items())
    trusted = connection.file.auth.trusted_proxies
    if forwarded and trusted == 0:
        return (
            f"{message} It came through a proxy (X-Forwarded-* headers) that the connection "
            "does not trust: set [auth] trusted_proxies to the number of proxies in front of "
            "the connector (1 on Heroku), so that the URL Twilio signed is rebuilt."
        )
    return (
        f"{message} Twilio signs the exact URL the widget calls (with the auth token of "
        f"TWILIO_ACCOUNT_SID); behind {trusted} trusted prox{'y' if trusted == 1 else 'ies'} "
        "([auth] trusted_proxies), check that count and the widget's URL."
    )


@dataclass(frozen=True)
class OfferedFields:
    """The credentials a request's fields offer: a Flex token (`Token`, never from a URL) and a
    Studio flow's `FlowSid` (the query string too: Studio signs it with the rest)."""

    body: Mapping[str, Any]

    def __post_init__(self) -> None:
        for name in ("Token", "FlowSid"):  # read or not, a body that sends them sends strings
            _string(self.body, name)

    def brings_credentials(self) -> bool:
        headers = request.headers
        return (
            "Authorization" in headers or SIGNATURE_HEADER in headers or bool(self._body("Token"))
        )

    def offered_token(self, credentials: Authorization | None) -> str | None:
        """A Flex token as Bearer or as a Token body field; never from a URL, where logs keep it."""
        bearer = credentials.token if credentials is not None else None
        return bearer or self._body("Token")

    def flex_token(self, credentials: Authorization | None) -> str:
        token = self.offered_token(credentials)
        if not token and "Token" in request.args:
            raise Unauthenticated(
                "A Flex token is never read from a URL, where logs would keep it: send it as "
                "Authorization: Bearer, or as a Token field in the body."
            )
        if not token:
            raise Unauthenticated(
                "Send the agent's Flex token (Authorization: Bearer, or a Token field), "
                "or sign the request as Twilio Studio does."
            )
        return token

    def flow_sid(self) -> str | None:
        sid = _string(request.args, "FlowSid") or self._body("FlowSid")
        return sid if sid and FLOW_SID.fullmatch(sid) else None

    def _body(self, name: str) -> str | None:
        return _string(self.body, name)


def _string(source: Mapping[str, Any], name: str) -> str | None:
    value = source.get(name)
    if value is not None and not isinstance(value, str):  # a JSON number, list or object
        raise BadRequest(f"The field {name} must be a string.")
    return value or None
