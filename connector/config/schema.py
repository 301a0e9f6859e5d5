"""The connection file's schema (`config/connection.toml`): pydantic models, unknown keys refused.

The file is the admin's interface: every key is validated, so a typo is reported with the
file, the key and the reason. Secrets never live in it; it names the environment variables
that hold them (connector.config.secrets).
"""

from __future__ import annotations

from typing import Annotated, Literal

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# Traits the card's title is made of (connector.cards.build.display_name): shown to every reader.
NAME_TRAITS = ("name", "first_name", "last_name")

REGION_URLS = {"us": "https://profiles.segment.com", "eu": "https://profiles.euw1.segment.com"}


TRACKING_URLS = {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}


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
    speculate: bool = True  # the first candidate's sections asked for with its traits
    # The later candidates asked too, for other profiles the address leads to (README).
    all_matches: bool = True

    @field_validator("default_country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not an ISO 3166 country code phonenumbers knows")
        return value.upper()


TraitFormat = Literal["text", "number", "currency", "date", "boolean", "percent"]


FlexRole = Annotated[str, Field(pattern=r"^[a-z_]{1,50}$")]


def _no_guest(roles: list[str], key: str) -> list[str]:
    if "guest" in roles:
        raise ValueError(f"guest tokens are always refused; remove guest from {key}")
    return roles


# How a value agents must not read in full is shown (connector.cards.masking): its last four
# characters, or not at all.
Mask = Literal["last4", "hidden"]


class Maskable(_Section):
    """A displayed value that may be masked for every reader but the Flex roles listed.

    `mask` alone masks it for everyone; `visible_to_roles` alone hides it from everyone else;
    both mask it (as `mask` says) from everyone else. Studio flows have no role: masked always.
    """

    mask: Mask | None = None
    visible_to_roles: list[FlexRole] | None = None

    @field_validator("visible_to_roles")
    @classmethod
    def _roles_that_can_read(cls, roles: list[str] | None) -> list[str] | None:
        if roles is None:
            return None
        if not roles:
            raise ValueError(
                "lists no role, so nobody could see the value; list the Flex roles that may, "
                'or write mask = "hidden" to hide it from everyone'
            )
        return _no_guest(roles, "visible_to_roles")

    @property
    def effective_mask(self) -> Mask | None:
        """The mask readers outside `visible_to_roles` get (None: the value is not masked)."""
        return self.mask or ("hidden" if self.visible_to_roles else None)


class IdentifierDisplay(Maskable):
    type: IdentifierType
    label: Label


class TraitDisplay(Maskable):
    key: Key
    label: Label
    format: TraitFormat = "text"


class LabelledKey(_Section):
    key: Key
    label: Label


class ComputedTraitDisplay(LabelledKey, Maskable):
    pass


class CardSection(_Section):
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    since_traits: list[Key] = ["customer_since", "created_at"]


class CorsSection(_Section):
    allowed_origins: list[HttpUrl] = ["https://flex.twilio.com"]


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
    # Optional Basic auth for the admin's console (/admin) and /metrics, beside a Flex token
    # with the admin role: the variable holds "user:password" (a scraper has no Flex token).
    admin_basic_auth_env: EnvName | None = None

    @field_validator("allowed_roles")
    @classmethod
    def _no_guest(cls, roles: list[str]) -> list[str]:
        return _no_guest(roles, "allowed_roles")


class WritebackSection(_Section):
    enabled: bool = False
    write_key_env: EnvName = "SEGMENT_WRITE_KEY"
    tracking_api_url: HttpUrl | None = None
    outbox_path: Annotated[str, Field(min_length=1)] = "outbox.sqlite"
    # Under Segment's 24 h de-duplication window: a late retry can never be a duplicate.
    give_up_after_hours: float = Field(default=20.0, gt=0, lt=24)
    # The interaction ledger's rows (connector.writeback.ledger) are deleted after this.
    ledger_keep_days: float = Field(default=365.0, gt=0)


class ConnectionFile(_Section):
    """The whole file, as an admin writes it."""

    connection: ConnectionSection
    lookup: LookupSection = LookupSection()
    identifiers: list[IdentifierDisplay] = []
    traits: list[TraitDisplay] = []
    audiences: list[LabelledKey] = []
    computed_traits: list[ComputedTraitDisplay] = []
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
        self._masks_hold()
        return self

    def _masks_hold(self) -> None:
        """A mask must really keep the value from its readers: refuse roles that can never read
        a card, and masks on traits the card shows elsewhere in full (title, subtitle)."""
        allowed = set(self.auth.allowed_roles)
        entries: list[tuple[str, Maskable]] = [
            *((f"identifiers[{i}] ({e.type})", e) for i, e in enumerate(self.identifiers)),
            *((f"traits[{i}] ({e.key})", e) for i, e in enumerate(self.traits)),
            *((f"computed_traits[{i}] ({e.key})", e) for i, e in enumerate(self.computed_traits)),
        ]
        for where, entry in entries:
            unknown = [r for r in entry.visible_to_roles or [] if r not in allowed]
            if unknown:
                raise ValueError(
                    f"{where}: visible_to_roles lists {', '.join(unknown)}, which [auth] "
                    "allowed_roles does not let read cards; add it there or remove it here"
                )
        for i, trait in enumerate(self.traits):
            if trait.effective_mask is None:
                continue
            if trait.key in NAME_TRAITS:
                raise ValueError(
                    f"traits[{i}] ({trait.key}): the card's title is made of {trait.key}, so a "
                    "mask could not hide it; remove mask and visible_to_roles"
                )
            if trait.key in self.card.since_traits:
                raise ValueError(
                    f"traits[{i}] ({trait.key}): it is in [card] since_traits, so its year "
                    "shows in the card's subtitle; remove it from since_traits to mask it"
                )
