"""Accepting an event: who it is about, the Segment message it becomes, committed to the outbox.

The 202 is sent only once the message is committed: from then on it cannot be lost, and the
drainer delivers it (connector.writeback.drainer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.cards.addresses import Address
from connector.config.loading import Connection
from connector.errors import BadRequest, NotFound
from connector.logs import caller_hash
from connector.writeback.events import (
    ChannelKeys,
    EventRequest,
    InvalidEvent,
    build_message,
)
from connector.writeback.identity import CallerIdentities
from connector.writeback.outbox import LazyOutbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    message_id: str
    duplicate: bool  # its messageId was already in the outbox: nothing new was queued
    identified: bool  # Segment said who the caller is (rather than our best guess)


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
    ) -> Accepted:
        identity, identified = self._identities.identify(connection, address, arrived)
        if identity is None:
            raise NotFound("No Segment profile matches this caller; the event was not recorded.")
        try:
            message = build_message(event, identity, datetime.now(UTC), keys)
        except InvalidEvent as error:
            raise BadRequest(f"Invalid event: {error}.") from None
        added = self._outbox.get().add(message, address.cache_key)  # committed: cannot be lost
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
