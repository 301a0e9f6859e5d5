"""Spec messages (identify / track / page / screen / group) into profiles, as Segment Unify does."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from connector.sandbox.identity import resolve
from connector.sandbox.rules import Identifier, IdentityRules
from connector.sandbox.store import Stamp, Store
from connector.timestamps import parse_timestamp

Clock = Callable[[], datetime]
PERSONAS_CLASSES = ("computed_trait", "audience")
EVENT_TYPES = ("identify", "track", "page", "screen", "group")
# The `event` name stored for calls that have none of their own (track calls carry theirs).
EVENT_NAMES = {
    "identify": "Identify",
    "page": "Page Viewed",
    "screen": "Screen Viewed",
    "group": "Group",
}
SUBSCRIPTION_STATUSES = ("SUBSCRIBED", "UNSUBSCRIBED", "DID_NOT_SUBSCRIBE")


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601, so that stored timestamps sort as text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


class Ingestor:
    """Applies messages to the store; one instance per sandbox, safe across threads."""

    def __init__(self, store: Store, rules: IdentityRules, clock: Clock = utc_now) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock

    def ingest_many(self, messages: Iterable[Any], source_id: str) -> list[str | None]:
        """Apply messages in one transaction; per message, None or why it was dropped."""
        with self.store.transaction():
            return [self._ingest(message, source_id) for message in messages]

    def _ingest(self, message: Any, source_id: str) -> str | None:
        problem = _why_unusable(message)
        if problem:
            return problem
        message_id = str(message.get("messageId") or f"sandbox-{uuid.uuid4()}")
        if not self.store.first_sighting(message_id):
            return "duplicate"
        moment = (
            parse_timestamp(message.get("timestamp"))
            or parse_timestamp(message.get("originalTimestamp"))
            or self.clock()
        )
        stamp = Stamp(iso(moment), message_id, source_id)
        found = self.rules.identifiers_in(message)
        users = [i for i in found if i.collection == "users"]
        accounts = [i for i in found if i.collection == "accounts"]
        if message["type"] == "group" and not accounts:
            return "no_usable_group_id"  # checked first: a message applies whole or not at all
        user = self._resolve(users, "users", stamp)
        if user is None:
            return "no_usable_identifier"
        self._apply(message, user, users, stamp, micros(moment))
        if message["type"] == "group":
            account = self._resolve(accounts, "accounts", stamp)
            if account is not None:
                self._set_traits(account, message, stamp)
                self.store.link(user, account, stamp.at)
        return None

    def _resolve(self, identifiers: list[Identifier], collection: str, stamp: Stamp) -> str | None:
        """The profile this message belongs to, created or merged as the rules say."""
        resolution = resolve(identifiers, self.store, self.rules)
        if not resolution.identifiers:
            return None
        if resolution.profiles:
            survivor, *others = resolution.profiles
            if others:
                self.store.merge(survivor, others)
        else:
            survivor = self.store.create_profile(collection, resolution.identifiers[0], stamp)
        self.store.attach(survivor, resolution.identifiers, stamp)
        self.store.touch(survivor, stamp)
        return survivor

    def _apply(
        self,
        message: dict[str, Any],
        profile: str,
        identifiers: list[Identifier],
        stamp: Stamp,
        ts: int,
    ) -> None:
        kind = message["type"]
        computation = _computation_class(message)
        if kind == "identify":
            self._set_traits(profile, message, stamp)
            self._set_subscriptions(profile, message, stamp)
        if computation is None:  # Engage's computations update traits, they are not events
            body = _event_body(message, identifiers, stamp)
            self.store.add_event(profile, ts, stamp.message_id, body["event"], body)

    def _set_traits(self, profile: str, message: dict[str, Any], stamp: Stamp) -> None:
        traits = message.get("traits")
        if isinstance(traits, dict) and traits:
            self.store.set_traits(profile, traits, _computation_class(message) or "trait", stamp)

    def _set_subscriptions(self, profile: str, message: dict[str, Any], stamp: Stamp) -> None:
        entries = _object(message.get("context")).get("messaging_subscriptions")
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict):
                continue
            status = str(entry.get("status", "")).upper()
            key, channel = entry.get("key"), str(entry.get("type", "")).upper()
            if status in SUBSCRIPTION_STATUSES and isinstance(key, str) and channel:
                self.store.set_subscription(
                    profile, channel, key.lower(), status, entry.get("groups"), stamp
                )


def _why_unusable(message: Any) -> str | None:
    """Segment accepts these with a 200 and drops them later; the reason is kept for stats."""
    if not isinstance(message, dict):
        return "not_an_object"
    kind = message.get("type")
    if kind == "alias":
        return "alias_not_used_by_profiles"
    if kind not in EVENT_TYPES:
        return "unknown_type"
    if not message.get("userId") and not message.get("anonymousId"):
        return "missing_user_id_and_anonymous_id"
    if kind == "track" and not (isinstance(message.get("event"), str) and message["event"]):
        return "missing_event_name"
    if kind == "group" and not message.get("groupId"):
        return "missing_group_id"
    return None


def _computation_class(message: dict[str, Any]) -> str | None:
    personas = _object(message.get("context")).get("personas")
    value = _object(personas).get("computation_class")
    return value if value in PERSONAS_CLASSES else None


def _object(value: Any) -> dict[str, Any]:
    """A message field that should be a JSON object; anything else reads as empty."""
    return value if isinstance(value, dict) else {}


def _event_body(
    message: dict[str, Any], identifiers: list[Identifier], stamp: Stamp
) -> dict[str, Any]:
    """The stored event, shaped as /events returns it (`related` is added on read)."""
    kind = message["type"]
    body: dict[str, Any] = {
        "external_ids": [
            {"collection": i.collection, "type": i.type, "id": i.value, "encoding": "none"}
            for i in identifiers
        ],
        "context": _object(message.get("context")),
        "type": kind,
        "message_id": stamp.message_id,
        "source_id": stamp.source_id,
        "timestamp": stamp.at,
        "properties": _object(message.get("properties")),
        "event": message["event"] if kind == "track" else EVENT_NAMES[kind],
    }
    if kind in ("identify", "group") and isinstance(message.get("traits"), dict):
        body["traits"] = message["traits"]
    if kind == "group":
        body["group_id"] = str(message["groupId"])
    return body
