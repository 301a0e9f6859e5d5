"""The card for Flex plugins (`/v1/cards`) and the flat lookup for Studio (`/v1/studio/lookup`)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from connector.audit import note_outcome
from connector.cards import studio_payload
from connector.errors import ProfileApiError
from connector.routes.inputs import lookup_address
from connector.service import current_service

blueprint = Blueprint("cards", __name__)


@blueprint.route("/v1/cards", methods=["GET", "POST"])
def card() -> Response:
    """Not found is a successful lookup (`found: false`); Segment's failures are 503s."""
    service = current_service()
    country = service.holder.current().file.lookup.default_country
    address, raw = lookup_address(country)
    try:
        answer = service.card(address, raw)
    except ProfileApiError:
        note_outcome("unavailable")
        raise
    note_outcome(answer.status)
    return jsonify(answer.card.model_dump(mode="json"))


@blueprint.post("/v1/studio/lookup")
def studio_lookup() -> Response:
    """Always 200 for a well-formed request: Studio's Split widget branches on `status`."""
    service = current_service()
    connection = service.holder.current()
    address, raw = lookup_address(connection.file.lookup.default_country)
    try:
        answer = service.card(address, raw)
    except ProfileApiError as error:
        note_outcome("unavailable")
        return jsonify(
            {
                "found": False,
                "status": "unavailable",
                "connection": connection.file.connection.friendly_name,
                "reason": error.public_message,
            }
        )
    note_outcome(answer.status)
    return jsonify(studio_payload(answer.card, answer.status))
