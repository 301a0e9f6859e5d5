"""`/v1/cards/history`: a caller's history past the Profile API's 14 days, and an engagement
summary; `/v1/cards/unlink`: an agent's "not this customer"."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from pydantic import ValidationError

from connector.auth.audit import note_caller, note_outcome
from connector.auth.policy import policy
from connector.cards.addresses import Address, Caller, Candidate, NoCustomer
from connector.cards.service import CardAnswer
from connector.errors import BadRequest
from connector.web.cards import look_up_caller, reader_roles
from connector.web.fields import caller_fields, hashed_caller, other_fields, parse_caller
from connector.web.interaction import request_interaction
from connector.web.models import Unlinked, UnlinkRequest
from connector.web.registry import connection, services
from connector.writeback.history import CardHistory, card_history
from connector.writeback.writer import Unlink

blueprint = Blueprint("history", __name__)
NOT_SENT = (
    "Recorded in the connector's ledger only: not sent to Segment, as write-back is off in this "
    "connection ([writeback] enabled, write_key_env)."
)
SENT = "Recorded, and a Flex - Profile Unlinked event is queued for Segment."


@blueprint.route("/v1/cards/history", methods=["GET", "POST"])
@policy(customer_data=True)
def history() -> Response:
    """The same inputs as /v1/cards; `{"history": [...], "engagement": {...}}`."""
    caller, answer = look_up_caller()
    return Response(reader_history(caller, answer).model_dump_json(), mimetype="application/json")


def reader_history(caller: Caller, answer: CardAnswer) -> CardHistory:
    """The caller's history as this reader may read it (the card's masks on identify calls)."""
    subject = caller.cache_key if isinstance(caller, Address) else None
    masks = services().cards.mask_rules(connection())
    view = masks.view(reader_roles())
    return card_history(
        answer,
        subject,
        services().outbox.existing(),
        lambda traits: masks.masked_traits(traits, view),
    )


@blueprint.post("/v1/cards/unlink")
@policy(customer_data=True)
def unlink() -> Response:
    """The profile the card showed is not this caller's: later lookups of the caller answer
    `found: false, reason: "unlinked"` for it."""
    current = connection()
    field, raw = caller_fields().one()
    caller = parse_caller(field, raw, current.file.lookup.default_country)
    note_caller(hashed_caller(caller, raw))
    if isinstance(caller, NoCustomer):
        raise BadRequest("This caller names no customer (withheld, or not a customer address).")
    try:
        given = UnlinkRequest.model_validate(other_fields())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"Invalid unlink: {where}: {first['msg']}.") from None
    kind, _, value = given.matched_identifier.partition(":")
    request = Unlink(given.segment_id, Candidate(kind, value), given.reason)
    interaction = request_interaction(
        {"task_sid": given.task_sid, "worker_sid": given.worker_sid, "call_sid": given.call_sid}
    )
    done = services().events.unlink(current, caller, request, interaction)
    services().cards.forget(current, caller)  # this worker's next lookup knows at once
    note_outcome("unlinked")
    body = Unlinked(
        unlinked=True,
        segment_id=given.segment_id,
        messageId=done.message_id,
        sent_to_segment=done.sent,
        duplicate=done.duplicate,
        message=SENT if done.sent else NOT_SENT,
    )
    response = jsonify(body.model_dump())
    response.status_code = 202 if done.sent else 200
    return response
