"""The card for Flex plugins (`/v1/cards`) and the flat lookup for Studio (`/v1/studio/lookup`)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from connector.auth.audit import note_caller, note_outcome
from connector.auth.gate import current_principal
from connector.auth.policy import policy
from connector.cards.addresses import Caller, NoCustomer
from connector.cards.build import studio_payload
from connector.cards.service import CardAnswer
from connector.errors import ProfileApiError
from connector.web.fields import arrival, hashed_caller, lookup_caller
from connector.web.registry import connection, services

blueprint = Blueprint("cards", __name__)


def look_up() -> CardAnswer:
    """The card for the address the request names, masked for whoever asks (the gate's
    principal), its outcome noted for the audit trail."""
    return look_up_caller()[1]


def look_up_caller() -> tuple[Caller, CardAnswer]:
    """The caller the request names, and their card (see look_up)."""
    current = connection()
    cards = services().cards
    caller, raw = lookup_caller(current.file.lookup.default_country)
    note_caller(hashed_caller(caller, raw))
    if isinstance(caller, NoCustomer):  # withheld, or an agent's or SIP address: nothing to ask
        answer = cards.no_customer(current, caller, raw)
    else:
        try:
            answer = cards.card(current, caller, raw, arrival(), reader_roles())
        except ProfileApiError:
            note_outcome("unavailable")
            raise
    note_outcome(answer.status)
    return caller, answer


def reader_roles() -> frozenset[str]:
    """The Flex roles of the reader; none for Studio and Basic users, so every mask applies."""
    principal = current_principal()
    return principal.roles if principal is not None else frozenset()


@blueprint.route("/v1/cards", methods=["GET", "POST"])
@policy(customer_data=True)
def card() -> Response:
    """Not found is a successful lookup (`found: false`); Segment's failures are 503s."""
    # pydantic's own serializer: a tenth of a warm lookup's CPU went to model_dump + json.dumps
    return Response(look_up().card.model_dump_json(), mimetype="application/json")


@blueprint.post("/v1/studio/lookup")
@policy(customer_data=True)
def studio_lookup() -> Response:
    """Always 200 for a well-formed request: Studio's Split widget branches on `status`, and
    on `reason` for why (a withheld caller ID; a missing space or a refused token)."""
    try:
        answer = look_up()
    except ProfileApiError as error:
        return jsonify(
            {
                "found": False,
                "status": "unavailable",
                "connection": connection().file.connection.friendly_name,
                "reason": error.code,
                "message": error.public_message,
            }
        )
    return jsonify(studio_payload(answer.card, answer.status))
