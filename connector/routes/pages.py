"""`GET /cards/view`: the card as an HTML page for Flex's CRM container (an iframe).

An iframe cannot send headers, so the agent's Flex token comes as a `Token` query parameter
(the gate accepts it there for this route alone). Because it does, the page is never cached,
never sends a Referer, runs no script, and can be framed only by the connection's allowed
origins (Flex).
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from connector.errors import ProfileApiError, bounded
from connector.routes.cards import look_up
from connector.service import current_service

blueprint = Blueprint("pages", __name__)
PAGE_ENDPOINTS = frozenset({"pages.card_view"})
TITLES = {
    400: "Nothing to look up",
    401: "Sign in again",
    403: "Not allowed",
    429: "Too many lookups",
    503: "Profile unavailable",
}


@blueprint.get("/cards/view")
def card_view() -> Response:
    try:
        answer = look_up()
    except ProfileApiError as error:
        return error_page(503, error.public_message)
    return page_response(render_template("card.html", card=answer.card), 200)


def page_response(html: str, status: int) -> Response:
    response = Response(html, status=status, mimetype="text/html")
    origins = current_service().holder.current().file.cors.allowed_origins
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        f"form-action 'none'; frame-ancestors {' '.join(origins) or 'none'}"
    )
    response.headers["Referrer-Policy"] = "no-referrer"  # the URL carries the agent's token
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def error_page(status: int, message: str) -> Response:
    title = TITLES.get(status, "Something went wrong")
    page = render_template("error.html", title=title, message=bounded(message))
    return page_response(page, status)
