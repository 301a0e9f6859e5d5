"""A profile as fetched from Segment, before it becomes a card (filled by the lookup)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AccountData:
    group_id: str
    traits: dict[str, Any]


@dataclass(frozen=True)
class ProfileData:
    """What the Profile API said about one profile, section by section."""

    matched: str  # the identifier that found it, `type:value`
    segment_id: str | None
    traits: dict[str, Any]
    audiences: dict[str, Any] = field(default_factory=dict)
    computed_traits: dict[str, Any] = field(default_factory=dict)
    external_ids: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[AccountData] = field(default_factory=list)
    missing: tuple[str, ...] = ()
