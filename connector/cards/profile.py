"""A profile as fetched from Segment, before it becomes a card (filled by the lookup)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class AccountData:
    group_id: str
    traits: dict[str, Any]


@dataclass(frozen=True)
class OtherMatch:
    """Another profile the caller's address leads to (a later candidate identifier found it)."""

    identifier: str  # `type:value`: why it matched
    segment_id: str | None
    traits: dict[str, Any]  # its name traits only, to tell the profiles apart


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
    # Profiles other candidates found: the agent picks rather than being shown the first.
    other_matches: tuple[OtherMatch, ...] = ()


def profile_to_json(data: ProfileData | None) -> Any:
    """A profile (or "not found") as JSON, for the shared cache tier."""
    return None if data is None else asdict(data)


def profile_from_json(value: Any) -> ProfileData | None:
    if value is None:
        return None
    accounts = [AccountData(**account) for account in value.pop("accounts", [])]
    missing = tuple(value.pop("missing", ()))
    others = tuple(OtherMatch(**other) for other in value.pop("other_matches", ()))
    return ProfileData(**value, accounts=accounts, missing=missing, other_matches=others)
