"""`POST /v1/events`: interaction events for Segment, committed to the outbox before the 202."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from connector.auth.audit import note_outcome
from connector.cards.addresses import (
    Address,
    CallerField,
    InvalidAddress,
    NoCustomer,
    candidates,
    parse_email,
    parse_phone,
)
from connector.cards.service import current_service
from connector.errors import BadRequest, Forbidden, NotFound, RateLimited, UpstreamUnavailable
from connector.logs import caller_hash
from connector.web.fields import CallerFields, arrival, caller_fields, other_fields, parse_caller
from connector.web.models import EventAccepted
from connector.writeback.events import (
    ChannelKeys,
    Identity,
    InvalidEvent,
    build_message,
    parse_event,
    unflatten,
)
from connector.writeback.outbox import LazyOutbox

log = logging.getLogger(__name__)
blueprint = Blueprint("events", __name__)


@blueprint.post("/v1/events")
def record_event() -> Response:
    service = current_service()
    connection = service.holder.current()
    if not connection.file.writeback.enabled:
        raise Forbidden("Write-back is not enabled in this connection ([writeback] enabled).")
    callers = caller_fields()
    try:
        event = parse_event(_event_body())
    except InvalidEvent as error:
        raise BadRequest(f"Invalid event: {error}.") from None
    country = connection.file.lookup.default_country
    address = _caller_address(*callers.for_event(event.type == "subscriptions"), country)
    identity, identified = _identity(address)
    keys = _keys(callers, address, country)
    try:
        message = build_message(event, identity, datetime.now(UTC), keys)
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


def _caller_address(field: CallerField, raw: str, default_country: str) -> Address:
    """The event's caller; a withheld or non-customer caller has no profile to write to."""
    caller = parse_caller(field, raw, default_country)
    if isinstance(caller, NoCustomer):
        note_outcome("not_found")
        why = "the caller ID is withheld" if caller.reason == "withheld" else "it is no customer's"
        raise NotFound(
            f"This caller cannot be tied to a Segment profile ({why}); nothing was recorded."
        )
    return caller


def _identity(address: Address) -> tuple[Identity, bool]:
    """Who the event is about, and whether Segment said so (rather than our best guess)."""
    service = current_service()
    try:
        identity = service.identity(address, arrival())
    except (UpstreamUnavailable, RateLimited):
        # Segment cannot say who this is right now: rather than lose the event, key it by the
        # caller's first identifier; Segment's identity resolution attaches it to the profile.
        # A missing space or a refused token is not "right now": those raise, a 503 the
        # client retries once the admin has fixed the connection.
        lookup = service.holder.current().file.lookup
        return Identity(None, candidates(address, lookup)[0]), False
    if identity is None:
        raise NotFound("No Segment profile matches this caller; the event was not recorded.")
    return identity, True


def _keys(callers: CallerFields, address: Address, default_country: str) -> ChannelKeys:
    """The channels a subscriptions call subscribes: as the event names them, else the caller's."""
    given = callers.given
    email = _parsed(parse_email, "email", given["email"]) if "email" in given else None
    phone_of = partial(parse_phone, default_country=default_country)
    phone = _parsed(phone_of, "phone", given["phone"]) if "phone" in given else None
    return ChannelKeys(email or _value(address, "email"), phone or _value(address, "phone"))


def _parsed(parse: Callable[[str], Address], field: str, raw: str) -> str:
    try:
        return parse(raw).value
    except InvalidAddress as error:
        raise BadRequest(f"The {field} given is {error}.") from None


def _value(address: Address, kind: str) -> str | None:
    return address.value if address.kind == kind else None


def _event_body() -> dict[str, Any]:
    fields = other_fields()
    if request.is_json:
        return fields
    try:
        return unflatten(fields)
    except InvalidEvent as error:
        raise BadRequest(f"Invalid event: {error}.") from None
