"""The connection file (`config/connection.toml`): validation, secrets from the environment, reload.

The file is the admin's interface: every key is validated with unknown keys refused, so a typo is
reported with the file, the key and the reason. Secrets never live in it; it names the
environment variables that hold them.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)

REGION_URLS = {"us": "https://profiles.segment.com", "eu": "https://profiles.euw1.segment.com"}
TRACKING_URLS = {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}
TWILIO_IAM_URL = "https://iam.twilio.com"
DEFAULT_CONFIG = Path("config/connection.toml")
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Key = Annotated[str, Field(min_length=1, max_length=200)]
Label = Annotated[str, Field(min_length=1, max_length=100)]
IdentifierType = Annotated[str, Field(pattern=r"^[a-z0-9_.\-]{1,100}$")]
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConnectionSection(_Section):
    friendly_name: Label
    space_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,100}$")]
    region: Literal["us", "eu"] = "us"
    profile_api_url: HttpUrl | None = None
    token_env: EnvName = "SEGMENT_PROFILE_API_TOKEN"  # noqa: S105 - a variable name, not a secret


PhoneFormat = Literal["e164", "e164_digits", "national", "international"]


class LookupSection(_Section):
    default_country: str = "US"
    phone_identifiers: list[IdentifierType] = Field(default=["phone"], min_length=1)
    phone_formats: list[PhoneFormat] = Field(default=["e164"], min_length=1)
    email_identifiers: list[IdentifierType] = Field(default=["email"], min_length=1)
    timeout_seconds: float = Field(default=4.0, ge=0.5, le=9.0)
    events_limit: int = Field(default=10, ge=0, le=100)
    card_ttl_seconds: float = Field(default=60.0, ge=0)
    not_found_ttl_seconds: float = Field(default=10.0, ge=0)
    stale_for_seconds: float = Field(default=900.0, ge=0)
    cache_size: int = Field(default=10_000, ge=1)
    rate_limit: float = Field(default=100.0, gt=0)

    @field_validator("default_country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 country code phonenumbers knows")
        return value.upper()


TraitFormat = Literal["text", "number", "currency", "date", "boolean", "percent"]


class IdentifierDisplay(_Section):
    type: IdentifierType
    label: Label


class TraitDisplay(_Section):
    key: Key
    label: Label
    format: TraitFormat = "text"


class LabelledKey(_Section):
    key: Key
    label: Label


class CardSection(_Section):
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    since_traits: list[Key] = ["customer_since", "created_at"]


class CorsSection(_Section):
    allowed_origins: list[HttpUrl] = ["https://flex.twilio.com"]


FlexRole = Annotated[str, Field(pattern=r"^[a-z_]{1,50}$")]


class AuthSection(_Section):
    # Flex roles whose tokens may read cards and write events. A guest can never.
    allowed_roles: list[FlexRole] = Field(default=["agent", "supervisor", "admin"], min_length=1)
    # Lookups (cards, Studio lookups, events) per minute for one agent, and for one Studio flow or
    # Basic-auth user: a stolen token cannot page through the customer base.
    agent_lookups_per_minute: int = Field(default=60, ge=1)
    flow_lookups_per_minute: int = Field(default=1200, ge=1)
    # Failed authentications (bad tokens, signatures, passwords) per minute from one client
    # address; past it the address gets 429s without its credentials being checked.
    failed_auth_per_minute: int = Field(default=20, ge=1)
    # How many proxies in front of the connector set X-Forwarded-Proto/-Host/-Port/-Prefix/-For.
    # Studio signs the public URL it called; behind a proxy (Heroku's router, a load balancer)
    # that URL is rebuilt from those headers, and only from proxies counted here.
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    # Optional Basic auth for Studio widgets (`https://user:password@host/...`), instead of
    # checking X-Twilio-Signature: the variable holds "user:password".
    studio_basic_auth_env: EnvName | None = None

    @field_validator("allowed_roles")
    @classmethod
    def _no_guest(cls, roles: list[str]) -> list[str]:
        if "guest" in roles:
            raise ValueError("guest tokens are always refused; remove guest from allowed_roles")
        return roles


class WritebackSection(_Section):
    enabled: bool = False
    write_key_env: EnvName = "SEGMENT_WRITE_KEY"
    tracking_api_url: HttpUrl | None = None
    outbox_path: Annotated[str, Field(min_length=1)] = "outbox.sqlite"
    # Under Segment's 24 h de-duplication window: a late retry can never be a duplicate.
    give_up_after_hours: float = Field(default=20.0, gt=0, lt=24)


class ConnectionFile(_Section):
    """The whole file, as an admin writes it."""

    connection: ConnectionSection
    lookup: LookupSection = LookupSection()
    identifiers: list[IdentifierDisplay] = []
    traits: list[TraitDisplay] = []
    audiences: list[LabelledKey] = []
    computed_traits: list[LabelledKey] = []
    card: CardSection = CardSection()
    cors: CorsSection = CorsSection()
    auth: AuthSection = AuthSection()
    writeback: WritebackSection = WritebackSection()

    @model_validator(mode="after")
    def _no_duplicates(self) -> ConnectionFile:
        for name, keys in (
            ("identifiers", [i.type for i in self.identifiers]),
            ("traits", [t.key for t in self.traits]),
            ("audiences", [a.key for a in self.audiences]),
            ("computed_traits", [c.key for c in self.computed_traits]),
        ):
            repeated = sorted({k for k in keys if keys.count(k) > 1})
            if repeated:
                raise ValueError(f"{name} lists {', '.join(repeated)} more than once")
        return self


@dataclass(frozen=True)
class TwilioAccount:
    """The Twilio account whose Flex tokens and Studio signatures the connector accepts."""

    account_sid: str
    auth_token: SecretStr
    iam_url: str = TWILIO_IAM_URL


@dataclass(frozen=True)
class Connection:
    """A validated connection with its secrets, as the service uses it."""

    file: ConnectionFile
    token: SecretStr
    write_key: SecretStr | None
    version: str
    path: Path
    twilio: TwilioAccount
    studio_basic_auth: tuple[str, SecretStr] | None = None

    @property
    def profile_api_url(self) -> str:
        section = self.file.connection
        return (section.profile_api_url or REGION_URLS[section.region]).rstrip("/")

    @property
    def outbox_path(self) -> Path:
        return outbox_file(self.path, self.file)

    @property
    def tracking_api_url(self) -> str:
        return (
            self.file.writeback.tracking_api_url or TRACKING_URLS[self.file.connection.region]
        ).rstrip("/")


def outbox_file(config: Path, file: ConnectionFile) -> Path:
    """The outbox file; a relative path is relative to the connection file's folder."""
    return config.parent / file.writeback.outbox_path


class ConfigError(ValueError):
    """A connection file the service refuses, with the file, the key and the reason."""

    def __init__(self, path: Path, key: str | None, reason: str) -> None:
        self.path, self.key, self.reason = path, key, reason
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {reason}")


def read_connection_file(path: Path) -> ConnectionFile:
    """Read and validate the file alone (no secrets); raise ConfigError naming what is wrong."""
    return _validate(path, _read(path))


def load_connection(
    path: Path, environ: Mapping[str, str] = os.environ, raw: bytes | None = None
) -> Connection:
    """Read (or take `raw`, the file's bytes), validate and resolve secrets; raise ConfigError
    naming what is wrong."""
    raw = _read(path) if raw is None else raw
    file = _validate(path, raw)
    token = _secret(path, environ, "connection.token_env", file.connection.token_env)
    write_key = None
    if file.writeback.enabled:  # what turning it on needs, named before any event is accepted
        write_key = _secret(path, environ, "writeback.write_key_env", file.writeback.write_key_env)
        _check_outbox_folder(path, file)
    twilio = _twilio_account(path, environ)
    basic = None
    if file.auth.studio_basic_auth_env:
        basic = _basic_credentials(path, environ, file.auth.studio_basic_auth_env)
    version = hashlib.sha256(raw).hexdigest()[:16]
    return Connection(file, token, write_key, version, path, twilio, basic)


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


def _basic_credentials(path: Path, environ: Mapping[str, str], name: str) -> tuple[str, SecretStr]:
    user, colon, password = (
        _secret(path, environ, "auth.studio_basic_auth_env", name).get_secret_value().partition(":")
    )
    if not (user and colon and password):
        raise ConfigError(
            path,
            "auth.studio_basic_auth_env",
            f"the environment variable {name} must be user:password: "
            + how_to_set(name, "user:password"),
        )
    return user, SecretStr(password)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(path, None, f"cannot read the file ({error.strerror})") from None


def _validate(path: Path, raw: bytes) -> ConnectionFile:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(path, None, f"not valid TOML ({error})") from None
    try:
        return ConnectionFile.model_validate(data)
    except ValidationError as error:
        # An unknown key first: a typo also makes the intended key "missing", and the typo is
        # what the admin must fix.
        first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ConfigError(path, _dotted(first["loc"]) or None, _reason(first)) from None


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


def _check_outbox_folder(path: Path, file: ConnectionFile) -> None:
    """The outbox's folder must take new files (the database and SQLite's -wal and -shm)."""
    target = outbox_file(path, file)
    folder = target.parent
    nearest = next(p for p in (folder, *folder.parents) if p.exists())  # "." or "/" at worst
    if not nearest.is_dir():
        problem = f"{nearest} is a file, so the folder {folder} cannot be created"
    elif not os.access(nearest, os.W_OK | os.X_OK):
        problem = f"the folder {nearest} cannot be written"
    elif target.exists() and not (target.is_file() and os.access(target, os.R_OK | os.W_OK)):
        problem = f"{target} is not a file this process can read and write"
    else:
        return
    raise ConfigError(
        path,
        "writeback.outbox_path",
        f"write-back is on but {problem}; set outbox_path to a writable folder on a persistent "
        "disk",
    )


def _dotted(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key" + _did_you_mean(error["loc"])
    if error["type"] == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return re.sub(r"^Value error, ", "", message)


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """A suggestion for a misspelt key, from the keys its section accepts."""
    model: type[BaseModel] = ConnectionFile
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return ""
        model = inner
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]}?)" if close else " (see config/connection.example.toml)"


def config_path(explicit: str | Path | None = None) -> Path:
    """`--config`, else CONNECTOR_CONFIG, else config/connection.toml."""
    return Path(explicit or os.environ.get("CONNECTOR_CONFIG") or DEFAULT_CONFIG)
