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
    # What it is, as an agent reads it (connector.cards.event_titles): `kind` tells a
    # subscription change from other identify calls, `title` is its line on the card, `details`
    # what it carried (a track's properties, an identify's traits).
    kind: str = "track"
    title: str = ""
    details: dict[str, Any] = {}
    message_id: str | None = None


class CardAccount(_Model):
    group_id: str
    name: str | None = None  # its `name` trait: agents know "Initech", not "ACCT-INITECH"
    traits: list[CardItem]


class CardProfile(_Model):
    segment_id: str | None
    name: str
    subtitle: str | None


class CardMatch(_Model):
    """Another profile the caller's address leads to, and why (the identifier that found it)."""

    identifier: str
    segment_id: str | None
    name: str


# Why a lookup found no one without Segment's say: the caller ID is withheld, the address is no
# customer's (an agent's client:, a SIP URI), or an agent said the profile found is not this
# caller's ("not this customer", POST /v1/cards/unlink).
LookupReason = Literal["withheld", "not_a_customer_address", "unlinked"]


class CardLookup(_Model):
    input: str
    identifier: str | None
    reason: LookupReason | None = None  # None when Segment was asked and answered
    # Other profiles than the card's that the address leads to: a plugin shows a choice (the card
    # page does), never silently the first. Empty when there is one.
    other_matches: list[CardMatch] = []


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
