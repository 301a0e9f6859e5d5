"""The profile card as agents' plugins receive it (DESIGN.md §4): response models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CardItem(_Model):
    """A labelled value; `display` is the value formatted for an agent ("$1,850.00")."""

    key: str
    label: str
    value: Any
    display: str


class CardIdentifier(_Model):
    type: str
    label: str
    values: list[str]


class CardEvent(_Model):
    event: str | None
    timestamp: str
    properties: dict[str, Any]


class CardAccount(_Model):
    group_id: str
    traits: list[CardItem]


class CardProfile(_Model):
    segment_id: str | None
    name: str
    subtitle: str | None


# Why a lookup found no one without Segment's say: the caller ID is withheld, the address is no
# customer's (an agent's client:, a SIP URI), or an agent said the profile found is not this
# caller's ("not this customer", POST /v1/cards/unlink).
LookupReason = Literal["withheld", "not_a_customer_address", "unlinked"]


class CardLookup(_Model):
    input: str
    identifier: str | None
    reason: LookupReason | None = None  # None when Segment was asked and answered


class Freshness(_Model):
    fetched_at: str
    age_seconds: int
    stale: bool
    missing: list[str]  # sections Segment did not return this time (shown empty)


class ProfileCard(_Model):
    """Exactly the top-level keys of DESIGN.md §4."""

    found: bool
    connection: str
    lookup: CardLookup
    profile: CardProfile | None
    identifiers: list[CardIdentifier]
    traits: list[CardItem]
    audiences: list[CardItem]
    computed_traits: list[CardItem]
    events: list[CardEvent]
    accounts: list[CardAccount]
    freshness: Freshness
