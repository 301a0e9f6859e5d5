"""What an event in a profile's history is, as an agent reads it. Pure.

The Profile API names every identify call "Identify", so a subscription change, a profile update
and a sign-up would all read alike. Here each is titled for what it did: "Subscription changed:
Email unsubscribed", "Profile updated: Plan, City", "Joined account Initech".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.cards.text import humanize

CHANNEL_NAMES = {
    "EMAIL": "Email",
    "SMS": "SMS",
    "WHATSAPP": "WhatsApp",
    "ANDROID_PUSH": "Android push",
    "IOS_PUSH": "iOS push",
}
STATUS_NAMES = {
    "SUBSCRIBED": "subscribed",
    "UNSUBSCRIBED": "unsubscribed",
    "DID_NOT_SUBSCRIBE": "did not subscribe",
}
MAX_TRAITS_NAMED = 3  # "Profile updated: Plan, City, Country and 4 more"
# The correction an agent records with "Not this customer" (POST /v1/cards/unlink).
UNLINK_EVENT = "Flex - Profile Unlinked"


def event_kind(raw: Mapping[str, Any]) -> str:
    """track | identify | subscription_change | group | page | screen | alias | unlinked:
    Segment's types, with a subscription change told apart from other identify calls and an
    agent's "not this customer" from other track calls."""
    kind = raw.get("type") if isinstance(raw.get("type"), str) else "track"
    if kind == "identify" and subscriptions(raw):
        return "subscription_change"
    if kind == "track" and raw.get("event") == UNLINK_EVENT:
        return "unlinked"
    return str(kind)


def event_title(raw: Mapping[str, Any]) -> str:
    """The line an agent reads for an event."""
    kind = event_kind(raw)
    name = raw.get("event") if isinstance(raw.get("event"), str) else None
    if kind == "subscription_change":
        changes = [
            f"{CHANNEL_NAMES.get(str(s.get('type')), humanize(str(s.get('type', ''))))} "
            f"{STATUS_NAMES.get(str(s.get('status')), str(s.get('status', '')).lower())}"
            for s in subscriptions(raw)
        ]
        return "Subscription changed: " + ", ".join(changes)
    traits = _object(raw, "traits")
    if kind == "identify":
        if not traits:
            return "Profile updated"
        keys = [humanize(k) for k in sorted(traits)]
        named = ", ".join(keys[:MAX_TRAITS_NAMED])
        more = len(keys) - MAX_TRAITS_NAMED
        return f"Profile updated: {named}" + (f" and {more} more" if more > 0 else "")
    if kind == "group":
        account = traits.get("name") or raw.get("group_id") or raw.get("groupId")
        return f"Joined account {account}" if account else "Joined an account"
    if kind in ("page", "screen"):
        properties = _object(raw, "properties")
        where = raw.get("name") or properties.get("title") or properties.get("path")
        return f"Viewed {kind} {where}" if where else f"Viewed a {kind}"
    if kind == "alias":
        return "Identity linked"
    if kind == "unlinked":
        segment_id = _object(raw, "properties").get("segment_id")
        return f"Not this customer: profile {segment_id} unlinked" if segment_id else UNLINK_EVENT
    return name or "(unnamed event)"


def event_details(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What the event carried, for its expandable details: a track's properties, an identify's
    or group's traits, a subscription change's channels and statuses (not the addresses)."""
    kind = event_kind(raw)
    if kind == "subscription_change":
        return {
            CHANNEL_NAMES.get(str(s.get("type")), str(s.get("type"))): STATUS_NAMES.get(
                str(s.get("status")), str(s.get("status"))
            )
            for s in subscriptions(raw)
        }
    return dict(_object(raw, "traits" if kind in ("identify", "group") else "properties"))


def _object(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def subscriptions(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = _object(raw, "context").get("messaging_subscriptions")
    return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []
