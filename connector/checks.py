"""What `connector check` proves, step by step: the connection file, the space and the token,
Twilio's acceptance of the account. `connector check` prints the steps; the admin's console's
**Test connection** shows them: one list of steps for both, so they cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from connector.auth.flex_tokens import FlexTokens
from connector.config.errors import ConfigError
from connector.config.holder import ConnectionHolder
from connector.config.loading import Connection
from connector.config.secrets import TwilioAccount
from connector.errors import TwilioRefusedCredentials, TwilioUnavailable
from connector.segment.api import ProfileApi
from connector.segment.probe import ReadinessProbe

INVALID_FILE = 2  # `connector check`'s exit codes
REFUSED = 1


@dataclass(frozen=True)
class Step:
    name: str  # connection file | Segment | Twilio
    ok: bool
    message: str


@dataclass(frozen=True)
class CheckResult:
    steps: list[Step]

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def exit_code(self) -> int:
        if self.ok:
            return 0
        return INVALID_FILE if not self.steps[0].ok else REFUSED


def run_checks(
    path: Path, http: httpx.Client, environ: Mapping[str, str] = os.environ
) -> CheckResult:
    """Every step, in order; a refused file stops there (nothing else can be asked)."""
    try:
        connection = ConnectionHolder(path, environ).current()
    except ConfigError as error:
        return CheckResult([Step("connection file", False, f"invalid connection file: {error}")])
    section = connection.file.connection
    valid = Step(
        "connection file",
        True,
        f"{path}: valid (connection {section.friendly_name!r}, space {section.space_id}, "
        f"{connection.profile_api_url})",
    )
    return CheckResult([valid, segment_step(connection, http), twilio_step(connection, http)])


def segment_step(connection: Connection, http: httpx.Client) -> Step:
    """One request proves the space and the token (a profile that cannot exist: a 404)."""
    upstream = ReadinessProbe(ProfileApi(http)).check(connection, fresh=True)
    section = connection.file.connection
    request_id = f" (Request-Id {upstream.request_id})" if upstream.request_id else ""
    if upstream.ok:
        message = f"OK: the space answered and accepted the token from {section.token_env}"
    elif upstream.code == "token_refused":
        message = f"FAILED (token_refused): Segment refused the token in {section.token_env}"
    elif upstream.code == "space_not_found":
        message = (
            f"FAILED (space_not_found): Segment has no space {section.space_id!r}; "
            f"check space_id in {connection.path}"
        )
    else:
        # For the admin, what happened and where: `cannot reach Segment (ConnectError)` at a URL.
        message = (
            f"FAILED ({upstream.code}): {upstream.cause or upstream.detail} at "
            f"{connection.profile_api_url}"
        )
    return Step("Segment", upstream.ok, message + request_id)


def twilio_step(connection: Connection, http: httpx.Client) -> Step:
    problem = _check_twilio(http, connection.twilio)
    if problem is None:
        return Step(
            "Twilio",
            True,
            f"OK: Twilio ({connection.twilio.iam_url}) accepted TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN for checking Flex tokens",
        )
    return Step("Twilio", False, f"FAILED: {problem}")


def _check_twilio(http: httpx.Client, account: TwilioAccount) -> str | None:
    """None when Twilio accepts the account's credentials, else what went wrong."""
    try:
        FlexTokens(http).verdict("connector-check-not-a-token", account)
    except TwilioRefusedCredentials:
        return "Twilio refused TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN"
    except TwilioUnavailable:
        return f"Twilio's token check ({account.iam_url}) did not answer"
    return None
