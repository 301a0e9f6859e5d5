"""Flex agent tokens, checked with Twilio's `POST /v1/Accounts/{Sid}/Tokens/validate`.

A valid token is cached until its expiration (re-checked at least hourly), so an agent's lookups
cost Twilio one request per token, not one per lookup; a refused token is remembered briefly so
a client retrying with it does not make the connector hammer Twilio.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from connector.config.secrets import TwilioAccount
from connector.errors import TwilioRefusedCredentials, TwilioUnavailable, UpstreamUnavailable
from connector.metrics import figures
from connector.state.cache import SingleFlightCache
from connector.state.redis import SharedRedis
from connector.state.shared_tier import Codec, SharedTier
from connector.timestamps import parse_timestamp

log = logging.getLogger(__name__)
CHECK_TIMEOUT = httpx.Timeout(3.0, connect=2.0)  # a card lookup needs the rest of 10 s
WAIT = 5.0  # for another request's check of the same token
RECHECK_VALID_AFTER = 3600.0
REMEMBER_REFUSED_FOR = 60.0
MAX_TOKENS = 10_000
UNAVAILABLE = "Twilio could not check the Flex token; try again."
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_\-.]{8,8192}")  # base64url segments and dots


@dataclass(frozen=True)
class FlexVerdict:
    """Twilio's answer about one token."""

    valid: bool
    message: str
    identity: str | None = None
    roles: tuple[str, ...] = ()
    worker_sid: str | None = None


class FlexTokens:
    """Validates tokens for one process; shares the process's pooled HTTP client."""

    def __init__(self, http: httpx.Client, shared: SharedRedis | None = None) -> None:
        self._http = http
        # With Redis, each token is checked with Twilio once for the deployment, and a refusal
        # is remembered by every worker. Keyed by a digest: Redis never holds a usable token.
        tier = SharedTier(shared, "tokens", VERDICT_CODEC) if shared is not None else None
        self._cache: SingleFlightCache[FlexVerdict] = SingleFlightCache(MAX_TOKENS, shared=tier)

    def known_valid(self, token: str, account: TwilioAccount) -> bool:
        """Whether Twilio already said this token is valid (and it has not expired since)."""
        cached = self._cache.peek(_key(token, account))
        return cached is not None and cached.value.valid

    def verdict(self, token: str, account: TwilioAccount) -> FlexVerdict:
        refusal = not_a_flex_token(token, account.account_sid)
        if refusal is not None:  # refused here: junk must not cost a request to Twilio
            figures().token_check("junk")
            return FlexVerdict(False, refusal)
        # Keyed by a digest: the cache never holds a usable token. The account is part of the
        # key, so a changed TWILIO_ACCOUNT_SID never reuses another account's verdicts.
        key = _key(token, account)
        try:
            # A concurrent request with the same token waits for the first one's check.
            return self._cache.get(key, lambda: self._check(token, account), 0.0, WAIT).value
        except UpstreamUnavailable:
            raise TwilioUnavailable(UNAVAILABLE) from None

    def _check(self, token: str, account: TwilioAccount) -> tuple[FlexVerdict, float]:
        """Twilio's verdict, counted for /metrics (valid, refused, unavailable)."""
        try:
            verdict = self._ask_twilio(token, account)
        except TwilioUnavailable:
            figures().token_check("unavailable")
            raise
        figures().token_check("valid" if verdict[0].valid else "refused")
        return verdict

    def _ask_twilio(self, token: str, account: TwilioAccount) -> tuple[FlexVerdict, float]:
        url = f"{account.iam_url}/v1/Accounts/{account.account_sid}/Tokens/validate"
        try:
            response = self._http.post(
                url,
                json={"token": token},
                auth=(account.account_sid, account.auth_token.get_secret_value()),
                timeout=CHECK_TIMEOUT,
            )
        except httpx.HTTPError as error:
            log.warning("Twilio token check failed: %s", type(error).__name__)
            raise TwilioUnavailable(UNAVAILABLE) from None
        if response.status_code in (401, 403, 404):
            log.error(
                "Twilio refused the connector's account credentials (HTTP %s); "
                "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
                response.status_code,
            )
            raise TwilioRefusedCredentials(
                "The connector cannot check Flex tokens; tell its admin."
            )
        if response.status_code != 200:
            log.warning("Twilio token check answered HTTP %s", response.status_code)
            raise TwilioUnavailable(UNAVAILABLE)
        return _verdict(response)


VERDICT_CODEC: Codec[FlexVerdict] = Codec(
    asdict, lambda value: FlexVerdict(**{**value, "roles": tuple(value["roles"])})
)


def _key(token: str, account: TwilioAccount) -> str:
    return hashlib.sha256(f"{account.account_sid}:{token}".encode()).hexdigest()


def not_a_flex_token(token: str, account_sid: str) -> str | None:
    """Why `token` cannot be a valid Flex token of this account, if that shows without asking
    Twilio; None when only Twilio can tell.

    Flex tokens are JOSE compact tokens (a JWE today, a JWT before): base64url segments joined
    by dots, the first a JSON header naming its algorithm. A JWT's claims are readable too, so
    an expired one or one for another account is refused here as well.
    """
    if not TOKEN_SHAPE.fullmatch(token):
        return "not a Flex token"
    segments = token.split(".")
    if len(segments) not in (3, 5):
        return None  # not JOSE-shaped: the sandbox's agent tokens, which Twilio (it) checks
    header = _json_segment(segments[0])
    if header is None or not isinstance(header.get("alg"), str):
        return "not a Flex token"
    claims = _json_segment(segments[1]) if len(segments) == 3 else None
    if claims is None:
        return None
    subject, expires = claims.get("sub"), claims.get("exp")
    if isinstance(subject, str) and subject.startswith("AC") and subject != account_sid:
        return "a token of another Twilio account"
    if isinstance(expires, int | float) and expires < time.time():
        return "expired"
    return None


def _json_segment(segment: str) -> dict[str, Any] | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        return None
    return value if isinstance(value, dict) else None


def _verdict(response: httpx.Response) -> tuple[FlexVerdict, float]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TwilioUnavailable(UNAVAILABLE)
    if body.get("valid") is not True:
        message = body.get("message") if isinstance(body.get("message"), str) else None
        return FlexVerdict(False, message or "Invalid Flex token"), REMEMBER_REFUSED_FOR
    roles = body.get("roles")
    roles = roles if isinstance(roles, list) else []
    expires_at = parse_timestamp(body.get("expiration"))
    ttl = RECHECK_VALID_AFTER
    if expires_at is not None:
        ttl = min(ttl, (expires_at - datetime.now(UTC)).total_seconds())
    verdict = FlexVerdict(
        True,
        "valid",
        identity=body.get("identity") if isinstance(body.get("identity"), str) else None,
        roles=tuple(r for r in roles if isinstance(r, str)),
        worker_sid=body.get("worker_sid") if isinstance(body.get("worker_sid"), str) else None,
    )
    return verdict, max(0.0, ttl)
