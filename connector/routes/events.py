"""`POST /v1/events`: interaction events for Segment, committed to the outbox before the 202."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from connector.audit import note_outcome
from connector.errors import BadRequest, Forbidden, NotFound, RateLimited, UpstreamUnavailable
from connector.logs import caller_hash
from connector.models import EventAccepted
from connector.outbox import LazyOutbox
from connector.resolve import candidates
from connector.routes.inputs import body_fields, parse_address
from connector.service import current_service
from connector.writeback import (
    CALLER_FIELDS,
    Identity,
    InvalidEvent,
    build_message,
    parse_event,
    unflatten,
)

log = logging.getLogger(__name__)
blueprint = Blueprint("events", __name__)


@blueprint.post("/v1/events")
def record_event() -> Response:
    service = current_service()
    connection = service.holder.current()
    if not connection.file.writeback.enabled:
        raise Forbidden("Write-back is not enabled in this connection ([writeback] enabled).")
    try:
        event = parse_event(_body())
    except InvalidEvent as error:
        raise BadRequest(f"Invalid event: {error}.") from None
    name, raw = next((n, v) for n in CALLER_FIELDS if (v := event.caller(n)))
    address = parse_address(name, raw, connection.file.lookup.default_country)
    try:
        identity = service.identity(address)
    except (UpstreamUnavailable, RateLimited):
        # Segment cannot say who this is right now: rather than lose the event, key it by the
        # caller's first identifier; Segment's identity resolution attaches it to the profile.
        identity = Identity(None, candidates(address, connection.file.lookup)[0])
        identified = False
    else:
        if identity is None:
            raise NotFound("No Segment profile matches this caller; the event was not recorded.")
        identified = True
    try:
        message = build_message(
            event,
            identity,
            datetime.now(UTC),
            caller_email=address.value if address.kind == "email" else None,
            caller_phone=address.value if address.kind == "phone" else None,
        )
    except InvalidEvent as error:
        raise BadRequest(f"Invalid event: {error}.") from None
    outbox: LazyOutbox = current_app.extensions["outbox"]
    added = outbox.get().add(message, address.cache_key)  # committed: it cannot be lost now
    note_outcome("duplicate" if not added else "queued")
    accepted = EventAccepted(
        messageId=message["messageId"], queued=True, duplicate=not added, identified=identified
    )
    log.info(
        "event accepted",
        extra={
            "caller": caller_hash(address.cache_key, connection.token),
            "type": event.type,
            "message_id": message["messageId"],
            "identified": identified,
        },
    )
    response = jsonify(accepted.model_dump())
    response.status_code = 202
    return response


def _body() -> dict[str, Any]:
    fields = body_fields()
    if request.is_json:
        return dict(fields)
    try:
        return unflatten(fields)
    except InvalidEvent as error:
        raise BadRequest(f"Invalid event: {error}.") from None
