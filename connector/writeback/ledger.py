"""The interaction ledger: the connector's own record of what it wrote back about each caller.

Segment's Profile API shows 14 days of events; the ledger keeps what the connector sent (and the
agents' "not this customer" corrections) for `[writeback] ledger_keep_days`, in the outbox's
database. A row is written in the same transaction as its outbox row (both backends), so the
ledger never lists an event the outbox lost, nor misses one it sends.

Rows are found from a profile by the identity the event was sent with (user_id, or the
anonymousId derived from the identifier that matched) and by the caller's cache key (`subject`).
This module is the shape of a row and the interface; the SQL is connector.writeback.ledger_sql.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

LedgerKind = Literal["track", "identify", "group", "subscriptions", "unlinked"]
KINDS: tuple[LedgerKind, ...] = ("track", "identify", "group", "subscriptions", "unlinked")
KEEP_LEDGER_DAYS = 365.0
# A row's details are what an agent reads in the history, not an archive of the payload: a
# 32 kB event would make every history page heavy. Keys past this are left out (and said so).
MAX_DETAILS_BYTES = 4096
TRUNCATED = "_truncated"
# Twilio's ids, as Flex's envelope fields and as the properties of Flex's own events name them.
TASK_ID_NAMES = {
    "TaskSid": "task_sid",
    "taskSid": "task_sid",
    "task_sid": "task_sid",
    "CallSid": "call_sid",
    "callSid": "call_sid",
    "call_sid": "call_sid",
    "InteractionSid": "interaction_sid",
    "interactionSid": "interaction_sid",
    "interaction_sid": "interaction_sid",
    "ConversationSid": "conversation_sid",
    "conversationSid": "conversation_sid",
    "conversation_sid": "conversation_sid",
    "ChannelSid": "channel_sid",
    "channelSid": "channel_sid",
    "channel_sid": "channel_sid",
}
AGENT_NAMES = ("WorkerSid", "workerSid", "worker_sid", "agent")
CHANNEL_NAMES = ("channel", "Channel", "channelType", "channel_type", "taskChannelUniqueName")


@dataclass(frozen=True)
class Interaction:
    """Who handled it and where, as the request said (envelope fields and the principal)."""

    agent: str | None = None
    channel: str | None = None
    task_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerEntry:
    message_id: str
    kind: LedgerKind
    event: str | None  # a track's name; None for identify, group and subscriptions
    occurred_at: float  # epoch seconds: the message's own timestamp
    details: dict[str, Any]  # properties, traits, subscriptions (bounded: see bounded())
    agent: str | None
    channel: str | None
    task_ids: dict[str, str]
    user_id: str | None
    anonymous_id: str | None
    subject: str | None  # the caller's cache key
    segment_id: str | None = None  # the profile an unlink is about
    sent: bool = True  # False: recorded here only (write-back off), never sent to Segment
    recorded_at: float = 0.0  # set by the store, from its clock


@dataclass(frozen=True)
class LedgerKeys:
    """What finds a profile's rows: any of them matching is enough."""

    subjects: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    anonymous_ids: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.subjects or self.user_ids or self.anonymous_ids)


class LedgerStore(Protocol):
    """The ledger's half of an outbox backend (the other half, writing a row with its outbox
    row, is `OutboxStore.add(..., ledger=entry)`)."""

    def record(self, entry: LedgerEntry) -> bool:
        """A row with no outbox row (nothing is sent); False when its messageId is here."""
        ...

    def interactions(self, keys: LedgerKeys, limit: int) -> list[LedgerEntry]:
        """The newest rows (by occurred_at) matching any of `keys`."""
        ...

    def unlinked(self, subject: str) -> frozenset[str]:
        """The segment_ids agents said are not this caller's."""
        ...

    def forget_interactions(self, older_than: float) -> int:
        """Delete rows recorded more than `older_than` seconds ago; how many."""
        ...


def entry_for(
    message: Mapping[str, Any],
    kind: LedgerKind,
    occurred_at: float,
    interaction: Interaction,
    subject: str | None,
    segment_id: str | None = None,
    sent: bool = True,
) -> LedgerEntry:
    """The ledger row of a Spec message as built for Segment (connector.writeback.events)."""
    properties = message.get("properties") or {}
    details: dict[str, Any]
    if kind == "subscriptions":
        context = message.get("context") or {}
        details = {"subscriptions": context.get("messaging_subscriptions", [])}
    elif kind in ("identify", "group"):
        details = dict(message.get("traits") or {})
        if kind == "group":
            details = {"groupId": message.get("groupId"), **details}
    else:
        details = dict(properties)
    return LedgerEntry(
        message_id=str(message["messageId"]),
        kind=kind,
        event=message.get("event"),
        occurred_at=occurred_at,
        details=bounded(details),
        agent=interaction.agent or _first_text(properties, AGENT_NAMES),
        channel=interaction.channel or _first_text(properties, CHANNEL_NAMES),
        task_ids={**_task_ids(properties), **interaction.task_ids},
        user_id=message.get("userId"),
        anonymous_id=message.get("anonymousId"),
        subject=subject,
        segment_id=segment_id,
        sent=sent,
    )


def task_ids_of(fields: Mapping[str, Any]) -> dict[str, str]:
    """Twilio's ids among request fields, under one spelling each."""
    return _task_ids(fields)


def _task_ids(fields: Mapping[str, Any]) -> dict[str, str]:
    return {
        name: value[:100]
        for given, name in TASK_ID_NAMES.items()
        if isinstance(value := fields.get(given), str) and value
    }


def _first_text(fields: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    return next((v[:200] for n in names if isinstance(v := fields.get(n), str) and v.strip()), None)


def bounded(details: Mapping[str, Any], max_bytes: int = MAX_DETAILS_BYTES) -> dict[str, Any]:
    """The keys that fit in `max_bytes` as JSON, in order; `_truncated: true` when some did not."""
    if len(encode(details)) <= max_bytes:
        return dict(details)
    kept: dict[str, Any] = {TRUNCATED: True}
    for key, value in details.items():
        kept[key] = value
        if len(encode(kept)) > max_bytes:
            del kept[key]
    return kept


def encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
