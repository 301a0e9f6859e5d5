"""`POST /v1/events`: interaction events for Segment, committed to the outbox before the 202."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from flask import Blueprint, Response, jsonify, request

from connector.auth.audit import note_caller, note_outcome
from connector.auth.policy import policy
from connector.cards.addresses import (
    Address,
    CallerField,
    InvalidAddress,
    NoCustomer,
    parse_email,
    parse_phone,
)
from connector.errors import BadRequest, Forbidden, NotFound
from connector.web.fields import (
    CallerFields,
    arrival,
    caller_fields,
    hashed_caller,
    other_fields,
    parse_caller,
)
from connector.web.interaction import request_interaction
from connector.web.models import EventAccepted
from connector.web.registry import connection, services
from connector.writeback.events import ChannelKeys, InvalidEvent, parse_event, unflatten

blueprint = Blueprint("events", __name__)


@blueprint.post("/v1/events")
@policy(customer_data=True)
def record_event() -> Response:
    current = connection()
    if not current.file.writeback.enabled:
        raise Forbidden("Write-back is not enabled in this connection ([writeback] enabled).")
    callers = caller_fields()
    try:
        event = parse_event(_event_body())
    except InvalidEvent as error:
        raise BadRequest(f"Invalid event: {error}.") from None
    country = current.file.lookup.default_country
    address = _caller_address(*callers.for_event(event.type == "subscriptions"), country)
    keys = _keys(callers, address, country)
    try:
        accepted = services().events.accept(
            current, event, address, keys, arrival(), request_interaction()
        )
    except NotFound:
        note_outcome("not_found")
        raise
    note_outcome("duplicate" if accepted.duplicate else "queued")
    body = EventAccepted(
        messageId=accepted.message_id,
        queued=True,
        duplicate=accepted.duplicate,
        identified=accepted.identified,
    )
    response = jsonify(body.model_dump())
    response.status_code = 202
    return response


def _caller_address(field: CallerField, raw: str, default_country: str) -> Address:
    """The event's caller; a withheld or non-customer caller has no profile to write to."""
    caller = parse_caller(field, raw, default_country)
    note_caller(hashed_caller(caller, raw))
    if isinstance(caller, NoCustomer):
        note_outcome("not_found")
        why = "the caller ID is withheld" if caller.reason == "withheld" else "it is no customer's"
        raise NotFound(
            f"This caller cannot be tied to a Segment profile ({why}); nothing was recorded."
        )
    return caller


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
