"""Secrets from the environment: the Profile API token, the write key, Twilio's account."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import (
    SecretStr,
)

from connector.config.errors import ConfigError

TWILIO_IAM_URL = "https://iam.twilio.com"


@dataclass(frozen=True)
class TwilioAccount:
    """The Twilio account whose Flex tokens and Studio signatures the connector accepts."""

    account_sid: str
    auth_token: SecretStr
    iam_url: str = TWILIO_IAM_URL


def _twilio_account(path: Path, environ: Mapping[str, str]) -> TwilioAccount:
    """Twilio's usual variables; without them no Flex token or Studio signature can be checked."""
    sid = environ.get("TWILIO_ACCOUNT_SID", "").strip()
    if not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
        reason = "is not set" if not sid else "is not an account SID (AC and 32 hex digits)"
        raise ConfigError(
            path,
            "auth",
            f"the environment variable TWILIO_ACCOUNT_SID {reason}: "
            + how_to_set("TWILIO_ACCOUNT_SID", "AC..."),
        )
    auth_token = _secret(path, environ, "auth", "TWILIO_AUTH_TOKEN")
    iam_url = environ.get("TWILIO_IAM_URL", "").strip() or TWILIO_IAM_URL
    if not re.fullmatch(r"https?://[^\s/]+/?", iam_url):
        raise ConfigError(path, "auth", "TWILIO_IAM_URL must be a URL like https://iam.twilio.com")
    return TwilioAccount(sid, auth_token, iam_url.rstrip("/"))


def _basic_credentials(
    path: Path, environ: Mapping[str, str], name: str, key: str = "auth.studio_basic_auth_env"
) -> tuple[str, SecretStr]:
    user, colon, password = _secret(path, environ, key, name).get_secret_value().partition(":")
    if not (user and colon and password):
        raise ConfigError(
            path,
            key,
            f"the environment variable {name} must be user:password: "
            + how_to_set(name, "user:password"),
        )
    return user, SecretStr(password)


def _secret(path: Path, environ: Mapping[str, str], key: str, name: str) -> SecretStr:
    value = environ.get(name, "")
    if not value.strip():
        raise ConfigError(
            path, key, f"the environment variable {name} is not set: {how_to_set(name)}"
        )
    return SecretStr(value.strip())


def how_to_set(name: str, example: str = "...") -> str:
    """How an admin sets an environment variable, on a machine and on a platform."""
    return f"export {name}={example} or set it in your platform's config vars"
