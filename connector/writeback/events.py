"""Interaction events for Segment: the request shape, its checks, and the Spec message it becomes.

The body is a Segment Spec message (`type`, `event`, `properties`, `traits`, `groupId`,
`timestamp`, optionally `messageId`); the caller (`from`, `phone`, `email`, `identifier`) and
Twilio's envelope fields are read and taken out before this schema sees it
(connector.web.fields), so a field it does not know is a typo, refused.
`type: subscriptions` takes the Segment Profiles destination's fields in snake_case and becomes an
identify call carrying `context.messaging_subscriptions`. Studio's form fields use the same names,
dotted for nesting (`properties.choice=2`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connector import __version__
from connector.cards.addresses import Candidate
from connector.writeback.outbox import encode_message

MAX_MESSAGE_BYTES = 32 * 1024  # Segment's limit per message
MAX_FORM_DEPTH = 32  # dotted form field names, as deep as the JSON bodies allowed
Status = Literal["true", "false", "did_not_subscribe"]
STATUSES = {"true": "SUBSCRIBED", "false": "UNSUBSCRIBED", "did_not_subscribe": "DID_NOT_SUBSCRIBE"}
# status field -> (channel type, the field holding the channel's key)
CHANNELS = {
    "email_subscription_status": ("EMAIL", "email"),
    "sms_subscription_status": ("SMS", "phone"),
    "whatsapp_subscription_status": ("WHATSAPP", "phone"),
    "android_push_subscription_status": ("ANDROID_PUSH", "android_push_token"),
    "ios_push_subscription_status": ("IOS_PUSH", "ios_push_token"),
}
MAX_NAME_SHOWN = 60  # characters of a caller's field name quoted back in an error
Text = Annotated[str, Field(min_length=1, max_length=1000)]


class EventRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["track", "identify", "group", "subscriptions"] = "track"
    event: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    group_id: Text | None = Field(default=None, alias="groupId")
    timestamp: datetime | None = None
    message_id: (
        Annotated[str, Field(min_length=1, max_length=99, pattern=r"^[\x21-\x7e]+$")] | None
    ) = Field(default=None, alias="messageId")
    # Send Subscriptions
    email_subscription_status: Status | None = None
    sms_subscription_status: Status | None = None
    whatsapp_subscription_status: Status | None = None
    android_push_subscription_status: Status | None = None
    ios_push_subscription_status: Status | None = None
    email_subscription_groups: dict[str, Status] = {}
    android_push_token: Text | None = None
    ios_push_token: Text | None = None

    @field_validator(
        "email_subscription_status",
        "sms_subscription_status",
        "whatsapp_subscription_status",
        "android_push_subscription_status",
        "ios_push_subscription_status",
        mode="before",
    )
    @classmethod
    def _booleans(cls, value: Any) -> Any:
        return str(value).lower() if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _complete(self) -> EventRequest:
        if self.type == "track" and not self.event:
            raise ValueError("a track event needs `event`")
        if self.type == "group" and not self.group_id:
            raise ValueError("a group call needs `groupId`")
        if self.type == "subscriptions" and not any(getattr(self, f) for f in CHANNELS):
            raise ValueError("a subscriptions call needs at least one *_subscription_status")
        return self


class InvalidEvent(ValueError):
    """An event the API refuses, with a message fit for the caller."""


def parse_event(data: Mapping[str, Any]) -> EventRequest:
    try:
        return EventRequest.model_validate(dict(data))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(_shown(str(p)) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidEvent(f"{where}: {message}" if where else message) from None


def unflatten(form: Mapping[str, str]) -> dict[str, Any]:
    """Studio's form fields into a JSON object: `properties.choice=2` -> {properties: {choice}}."""
    result: dict[str, Any] = {}
    for key, value in form.items():
        node = result
        *parents, leaf = key.split(".")
        if len(parents) >= MAX_FORM_DEPTH:
            raise InvalidEvent(f"a field name nests deeper than {MAX_FORM_DEPTH} levels")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InvalidEvent(f"{_shown(key)}: conflicts with the field {_shown(part)}")
            node = child
        if isinstance(node.get(leaf), dict):
            raise InvalidEvent(f"{_shown(key)}: conflicts with fields under it")
        node[leaf] = value
    return result


def _shown(name: str) -> str:
    """A field name the caller chose, short enough to quote back in an error message."""
    if len(name) <= MAX_NAME_SHOWN:
        return name
    return f"{name[: MAX_NAME_SHOWN - 20]}\u2026 ({len(name):,} characters)"


@dataclass(frozen=True)
class ChannelKeys:
    """What a subscriptions call subscribes: the event's `email`/`phone`, else the caller's."""

    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Identity:
    """Who the event is about: the profile's user_id, else the identifier that found it."""

    user_id: str | None
    matched: Candidate


def build_message(
    request: EventRequest,
    identity: Identity,
    now: datetime,
    keys: ChannelKeys,
) -> dict[str, Any]:
    """The Spec message for Segment's tracking API, with a deterministic messageId."""
    context: dict[str, Any] = {
        "library": {"name": "unified-profiles-connector", "version": __version__}
    }
    message: dict[str, Any] = {
        "type": "identify" if request.type == "subscriptions" else request.type,
        "timestamp": (request.timestamp or now).astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "context": context,
    }
    if identity.user_id:
        message["userId"] = identity.user_id
    else:  # Segment needs userId or anonymousId; the external id ties it to the profile
        message["anonymousId"] = anonymous_id(identity.matched)
        context["externalIds"] = [
            {
                "id": identity.matched.value,
                "type": identity.matched.type,
                "collection": "users",
                "encoding": "none",
            }
        ]
    if request.type == "track":
        message["event"], message["properties"] = request.event, request.properties
    if request.type in ("identify", "group", "subscriptions") and request.traits:
        message["traits"] = request.traits
    if request.type == "group":
        message["groupId"] = request.group_id
    if request.type == "subscriptions":
        context["messaging_subscriptions"] = _subscriptions(request, keys)
    message["messageId"] = request.message_id or "upc-" + _digest(_canonical(message))[:40]
    _check_size(message)
    return message


def anonymous_id(matched: Candidate) -> str:
    """The anonymousId of events about a profile with no user_id, from the identifier that
    found it: the same every time, so the ledger finds them again from the profile."""
    return "upc-" + _digest(str(matched))[:32]


def _check_size(message: Mapping[str, Any]) -> None:
    """Refuse now what Segment would refuse later: the bytes measured are the bytes sent."""
    try:
        size = len(encode_message(message))
    except ValueError:
        raise InvalidEvent("numbers must be finite (NaN and Infinity are not JSON)") from None
    if size > MAX_MESSAGE_BYTES:
        raise InvalidEvent(
            f"the event is {size:,} bytes as sent to Segment (non-ASCII characters escaped), "
            f"over Segment's {MAX_MESSAGE_BYTES:,} bytes (32 KB) per message"
        )


def _subscriptions(request: EventRequest, channel_keys: ChannelKeys) -> list[dict[str, Any]]:
    keys = {
        "email": channel_keys.email,
        "phone": channel_keys.phone,
        "android_push_token": request.android_push_token,
        "ios_push_token": request.ios_push_token,
    }
    entries = []
    for field, (channel, key_field) in CHANNELS.items():
        status = getattr(request, field)
        if status is None:
            continue
        key = keys[key_field]
        if not key:
            raise InvalidEvent(f"{field} needs {key_field} (or a caller with one)")
        entry: dict[str, Any] = {"key": key, "type": channel, "status": STATUSES[status]}
        if channel == "EMAIL" and request.email_subscription_groups:
            entry["groups"] = [
                {"name": name, "status": STATUSES[s]}
                for name, s in request.email_subscription_groups.items()
            ]
        entries.append(entry)
    return entries


def _canonical(message: Mapping[str, Any]) -> str:
    return json.dumps(
        message, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
