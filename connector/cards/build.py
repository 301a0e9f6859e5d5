"""Profile API payloads + the connection's display settings -> an agent-ready card. Pure.

No Flask, no httpx: data in, data out, so every rule here is a table test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from connector.cards.event_titles import event_details, event_kind, event_title
from connector.cards.models import (
    CardAccount,
    CardEvent,
    CardIdentifier,
    CardItem,
    CardLookup,
    CardMatch,
    CardProfile,
    Freshness,
    LookupReason,
    ProfileCard,
)
from connector.cards.profile import ProfileData
from connector.cards.text import humanize
from connector.config.schema import ConnectionFile, LabelledKey, TraitFormat

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "BRL": "R$"}


STUDIO_LIMIT = 64 * 1024


STUDIO_VALUE_LIMIT = 500


STUDIO_FIXED_FIELDS = 10  # found ... segment_id: always there, whatever else must go


def for_request(
    body: ProfileCard,
    lookup_input: str,
    data: ProfileData | None,
    fetched_at: datetime,
    now: datetime,
    stale: bool = False,
    reason: LookupReason | None = None,
) -> ProfileCard:
    """A card body (see card_body) with what belongs to this request: what was asked, and how
    old the data is now."""
    freshness = Freshness(
        fetched_at=fetched_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        age_seconds=max(0, int((now - fetched_at).total_seconds())),
        stale=stale,
        missing=list(data.missing) if data else [],
    )
    lookup = CardLookup(
        input=lookup_input,
        identifier=data.matched if data else None,
        reason=reason,
        other_matches=[
            CardMatch(
                identifier=other.identifier,
                segment_id=other.segment_id,
                name=name_of(other.traits, other.identifier),
            )
            for other in (data.other_matches if data else ())
        ],
    )
    return body.model_copy(update={"lookup": lookup, "freshness": freshness})


NO_LOOKUP = CardLookup(input="", identifier=None, reason=None)
NO_FRESHNESS = Freshness(fetched_at="", age_seconds=0, stale=False, missing=[])


def card_body(config: ConnectionFile, data: ProfileData | None) -> ProfileCard:
    """What the card shows of a profile under a version of the connection file: the same for
    every request while both stay the same (lookup and freshness are left blank)."""
    if data is None:
        return ProfileCard(
            found=False,
            connection=config.connection.friendly_name,
            lookup=NO_LOOKUP,
            profile=None,
            identifiers=[],
            traits=[],
            audiences=[],
            computed_traits=[],
            events=[],
            accounts=[],
            freshness=NO_FRESHNESS,
        )
    return ProfileCard(
        found=True,
        connection=config.connection.friendly_name,
        lookup=NO_LOOKUP,
        profile=CardProfile(
            segment_id=data.segment_id,
            name=display_name(data),
            subtitle=subtitle(data.traits, config.card.since_traits),
        ),
        identifiers=identifiers(config, data.external_ids),
        traits=[
            item(t.key, t.label, data.traits[t.key], t.format, config.card.currency)
            for t in config.traits
            if data.traits.get(t.key) is not None
        ],
        audiences=labelled(config.audiences, data.audiences, only_members=True),
        computed_traits=labelled(config.computed_traits, data.computed_traits),
        events=[event(e) for e in data.events],
        accounts=[
            CardAccount(
                group_id=a.group_id, name=account_name(a.traits), traits=labelled([], a.traits)
            )
            for a in data.accounts
        ],
        freshness=NO_FRESHNESS,
    )


def account_name(traits: Mapping[str, Any]) -> str | None:
    """An account as agents know it ("Initech"), rather than its group id."""
    for key in ("name", "company_name", "company"):
        if isinstance(traits.get(key), str) and traits[key].strip():
            return str(traits[key]).strip()
    return None


def display_name(data: ProfileData) -> str:
    return name_of(data.traits, data.matched)


def name_of(traits: Mapping[str, Any], matched: str) -> str:
    """`name`, else first and last name, else the value of the identifier that matched."""
    if isinstance(traits.get("name"), str) and traits["name"].strip():
        return str(traits["name"]).strip()
    parts = [
        str(traits[k]).strip()
        for k in ("first_name", "last_name")
        if isinstance(traits.get(k), str) and traits[k].strip()
    ]
    return " ".join(parts) or matched.partition(":")[2]


def subtitle(traits: Mapping[str, Any], since_traits: Sequence[str]) -> str | None:
    for key in since_traits:
        moment = _date(traits.get(key))
        if moment:
            return f"Customer since {moment.year}"
    return None


def identifiers(config: ConnectionFile, external_ids: list[dict[str, Any]]) -> list[CardIdentifier]:
    values: dict[str, list[str]] = {}
    for entry in external_ids:
        if isinstance(entry.get("type"), str) and isinstance(entry.get("id"), str):
            values.setdefault(entry["type"], []).append(entry["id"])
    shown = (
        [(i.type, i.label) for i in config.identifiers]
        if config.identifiers
        else [(t, humanize(t)) for t in values]
    )
    return [
        CardIdentifier(type=t, label=label, values=values[t]) for t, label in shown if values.get(t)
    ]


def labelled(
    configured: Sequence[LabelledKey], values: Mapping[str, Any], only_members: bool = False
) -> list[CardItem]:
    """Configured keys in their order and with their labels; all keys, humanized, when none are.

    Audiences (`only_members`) show only those the customer is in: Segment keeps `false` for
    audiences a customer has left.
    """
    shown = (
        [(c.key, c.label) for c in configured]
        if configured
        else [(k, humanize(k)) for k in sorted(values)]
    )
    return [
        item(key, label, values[key])
        for key, label in shown
        if values.get(key) is not None and not (only_members and values[key] is not True)
    ]


def item(
    key: str, label: str, value: Any, fmt: TraitFormat = "text", currency: str = "USD"
) -> CardItem:
    return CardItem(key=key, label=label, value=value, display=display(value, fmt, currency))


def event(raw: Mapping[str, Any]) -> CardEvent:
    properties = raw.get("properties")
    message_id = raw.get("message_id")
    return CardEvent(
        event=raw.get("event") if isinstance(raw.get("event"), str) else None,
        timestamp=str(raw.get("timestamp", "")),
        properties=properties if isinstance(properties, dict) else {},
        kind=event_kind(raw),
        title=event_title(raw),
        details=event_details(raw),
        message_id=message_id if isinstance(message_id, str) else None,
    )


def display(value: Any, fmt: TraitFormat = "text", currency: str = "USD") -> str:
    """A value as an agent reads it; anything unexpected falls back to plain text."""
    if fmt == "currency" and _is_number(value):
        symbol = CURRENCY_SYMBOLS.get(currency)
        return f"{symbol}{value:,.2f}" if symbol else f"{value:,.2f} {currency}"
    if fmt == "number" and _is_number(value):
        return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}".rstrip("0").rstrip(".")
    if fmt == "percent" and _is_number(value):
        return f"{value * 100 if -1 <= value <= 1 else value:.0f}%"
    if fmt == "date" and (moment := _date(value)):
        return f"{moment.day} {moment:%b %Y}"
    if isinstance(value, bool) or fmt == "boolean":
        return "Yes" if value is True or str(value).lower() == "true" else "No"
    if isinstance(value, list):
        return ", ".join(display(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def studio_payload(card: ProfileCard, status: str) -> dict[str, Any]:
    """A flat object for Studio's Make HTTP Request widget: `{{widgets.NAME.parsed.KEY}}`."""
    flat: dict[str, Any] = {
        "found": card.found,
        "status": status,
        "connection": card.connection,
        "reason": card.lookup.reason,
        "matched_identifier": card.lookup.identifier,
        # How many profiles the caller's address leads to: a flow that greets by name checks
        # that it is 1 (a shared household number is 2, and `name` is only the first's)
        "matches": (1 + len(card.lookup.other_matches)) if card.found else 0,
        "stale": card.freshness.stale,
        "name": card.profile.name if card.profile else None,
        "subtitle": card.profile.subtitle if card.profile else None,
        "segment_id": card.profile.segment_id if card.profile else None,
    }
    for ident in card.identifiers:
        # A hidden identifier (connector.cards.masking) has no value left to show.
        flat[_flat_key("identifier", ident.type)] = ident.values[0] if ident.values else None
    for prefix, items in (
        ("trait", card.traits),
        ("audience", card.audiences),
        ("computed", card.computed_traits),
    ):
        for entry in items:
            flat[_flat_key(prefix, entry.key)] = _flat_value(entry.value)
    if card.accounts:
        account = card.accounts[0]
        flat["account_id"] = account.group_id
        flat["account_name"] = next((t.value for t in account.traits if t.key == "name"), None)
    if card.events:
        flat["last_event"], flat["last_event_at"] = card.events[0].event, card.events[0].timestamp
    return _within_studio_limit(flat)


def _flat_key(prefix: str, key: str) -> str:
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', key)}"


def _flat_value(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:STUDIO_VALUE_LIMIT]


def _within_studio_limit(flat: dict[str, Any]) -> dict[str, Any]:
    """Studio drops bodies over 64 kB: keep the fixed fields, then as many others as fit."""
    size = len(json.dumps(flat, ensure_ascii=False).encode())
    keys = list(flat)
    while size > STUDIO_LIMIT - 1024 and len(keys) > STUDIO_FIXED_FIELDS:
        removed = keys.pop()
        size -= len(json.dumps({removed: flat.pop(removed)}, ensure_ascii=False).encode())
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None
