"""A profile as fetched from Segment, before it becomes a card (filled by the lookup)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


def profile_to_json(data: ProfileData | None) -> Any:
    """A profile (or "not found") as JSON, for the shared cache tier."""
    return None if data is None else asdict(data)


def profile_from_json(value: Any) -> ProfileData | None:
    if value is None:
        return None
    accounts = [AccountData(**account) for account in value.pop("accounts", [])]
    missing = tuple(value.pop("missing", ()))
    return ProfileData(**value, accounts=accounts, missing=missing)
