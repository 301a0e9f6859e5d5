"""Accepting an event: who it is about, the Segment message it becomes, committed to the outbox.

The 202 is sent only once the message is committed: from then on it cannot be lost, and the
drainer delivers it (connector.writeback.drainer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.cards.addresses import Address, Candidate
from connector.cards.event_titles import UNLINK_EVENT
from connector.config.loading import Connection
from connector.errors import BadRequest, NotFound
from connector.logs import caller_hash
from connector.timestamps import parse_timestamp
from connector.writeback.events import (
    ChannelKeys,
    EventRequest,
    Identity,
    InvalidEvent,
    build_message,
)
from connector.writeback.identity import CallerIdentities
from connector.writeback.ledger import (
    Interaction,
    LedgerEntry,
    LedgerKind,
    entry_for,
)
from connector.writeback.outbox import LazyOutbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    message_id: str
    duplicate: bool  # its messageId was already in the outbox: nothing new was queued
    identified: bool  # Segment said who the caller is (rather than our best guess)


@dataclass(frozen=True)
class Unlink:
    """An agent's "not this customer": the profile shown, and the identifier that found it."""

    segment_id: str
    matched: Candidate
    reason: str | None = None


@dataclass(frozen=True)
class Unlinked:
    message_id: str
    sent: bool  # queued for Segment; False: recorded in the ledger only
    duplicate: bool


class EventWriter:
    def __init__(self, identities: CallerIdentities, outbox: LazyOutbox) -> None:
        self._identities = identities
        self._outbox = outbox

    def accept(
        self,
        connection: Connection,
        event: EventRequest,
        address: Address,
        keys: ChannelKeys,
        arrived: float | None = None,
        interaction: Interaction | None = None,
    ) -> Accepted:
        identity, identified = self._identities.identify(connection, address, arrived)
        if identity is None:
            raise NotFound("No Segment profile matches this caller; the event was not recorded.")
        message = _message(event, identity, keys)
        kind: LedgerKind = event.type
        ledger = _entry(message, kind, interaction or Interaction(), address)
        # Committed with its ledger row, in one transaction: cannot be lost
        added = self._outbox.get().add(message, address.cache_key, ledger)
        accepted = Accepted(message["messageId"], not added, identified)
        log.info(
            "event accepted",
            extra={
                "caller": caller_hash(address.cache_key, connection.token),
                "type": event.type,
                "message_id": accepted.message_id,
                "identified": identified,
            },
        )
        return accepted

    def unlink(
        self,
        connection: Connection,
        address: Address,
        unlink: Unlink,
        interaction: Interaction,
        arrived: float | None = None,
    ) -> Unlinked:
        """Record that the profile `unlink` names is not this caller's: a correction event for
        Segment when write-back is on, and a ledger row either way (lookups read it)."""
        send = connection.file.writeback.enabled and connection.write_key is not None
        identity: Identity | None = None
        if send:  # the event goes on the profile the caller resolves to: the one shown
            identity, _ = self._identities.identify(connection, address, arrived)
        # Else keyed by the identifier that matched, as events about that profile are.
        identity = identity or Identity(None, unlink.matched)
        properties = {
            "matched_identifier": str(unlink.matched),
            "segment_id": unlink.segment_id,
            **interaction.task_ids,
            **({"agent": interaction.agent} if interaction.agent else {}),
            **({"reason": unlink.reason} if unlink.reason else {}),
        }
        event = EventRequest(type="track", event=UNLINK_EVENT, properties=properties)
        message = _message(event, identity, ChannelKeys())
        ledger = _entry(message, "unlinked", interaction, address, unlink.segment_id, send)
        outbox = self._outbox.get()
        added = outbox.add(message, address.cache_key, ledger) if send else outbox.record(ledger)
        log.info(
            "profile unlinked",
            extra={
                "caller": caller_hash(address.cache_key, connection.token),
                "segment_id": unlink.segment_id,
                "message_id": message["messageId"],
                "sent": send,
            },
        )
        return Unlinked(message["messageId"], send, not added)


def _message(event: EventRequest, identity: Identity, keys: ChannelKeys) -> dict[str, Any]:
    try:
        return build_message(event, identity, datetime.now(UTC), keys)
    except InvalidEvent as error:
        raise BadRequest(f"Invalid event: {error}.") from None


def _entry(
    message: dict[str, Any],
    kind: LedgerKind,
    interaction: Interaction,
    address: Address,
    segment_id: str | None = None,
    sent: bool = True,
) -> LedgerEntry:
    moment = parse_timestamp(message["timestamp"])
    occurred_at = moment.timestamp() if moment else datetime.now(UTC).timestamp()
    channel = interaction.channel or address.channel
    return entry_for(
        message,
        kind,
        occurred_at,
        Interaction(interaction.agent, channel, interaction.task_ids),
        address.cache_key,
        segment_id,
        sent,
    )
