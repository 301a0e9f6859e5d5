"""`/cards/view`: the card as an HTML page for Flex's CRM container (an iframe).

Flex frames `/cards/view#from=...&Token=...`. Browsers never send a URL's fragment, so neither
the agent's token nor the caller's address reaches a request line that a router or proxy logs.
`GET /cards/view` is a shell that holds no data (it needs no credentials); its one script
(`/cards/view.js`) reads the fragment, drops it from the address bar and history, and POSTs it
to `/cards/view`, which answers the card as an HTML fragment rendered (and escaped) here.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, render_template, request, send_file

from connector.auth.policy import policy
from connector.errors import BadRequest, ProfileApiError, bounded
from connector.web.cards import look_up
from connector.web.registry import connection

blueprint = Blueprint("pages", __name__, template_folder="templates")
SCRIPT = Path(__file__).resolve().parent / "assets" / "card_view.js"
# What must never ride a URL (compared lower-cased): the token and every caller field.
SECRET_QUERY_FIELDS = frozenset({"token", "from", "phone", "email", "identifier"})
FRAGMENT_FORM = (
    "This page takes the caller and the agent's token in the URL's fragment, which browsers "
    "never send: /cards/view#from=<caller>&Token=<token> (after #, not ?)."
)
TITLES = {
    400: "Nothing to look up",
    401: "Sign in again",
    403: "Not allowed",
    413: "Nothing to look up",
    429: "Too many lookups",
    503: "Profile unavailable",
}


@blueprint.get("/cards/view")
@policy("public")  # the shell holds no data
def card_page() -> Response:
    """The shell: no data, so no credentials; a query naming a caller or token is refused."""
    if _secret_in_query():
        return page_response(
            render_template("view.html", title="Put the caller after #", message=FRAGMENT_FORM),
            400,
        )
    return page_response(render_template("view.html"), 200)


@blueprint.post("/cards/view")
@policy(customer_data=True, page=True)  # answers the shell's script: errors as fragments too
def card_view() -> Response:
    """The card as an HTML fragment, for the shell's script (the gate checked the Token field)."""
    if _secret_in_query():
        raise BadRequest(FRAGMENT_FORM)
    try:
        answer = look_up()
    except ProfileApiError as error:
        return error_page(503, error.public_message)
    return page_response(render_template("card.html", card=answer.card), 200)


@blueprint.get("/cards/view.js")
@policy("public")
def card_script() -> Response:
    """The shell's one script (revalidated on each load, so a deploy takes effect at once)."""
    response = send_file(SCRIPT, mimetype="text/javascript", max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _secret_in_query() -> bool:
    return any(name.lower() in SECRET_QUERY_FIELDS for name in request.args)


def page_response(html: str, status: int, frame_ancestors: list[str] | None = None) -> Response:
    """A page or fragment with the page's policy; `frame_ancestors` defaults to the connection's
    allowed origins (Flex frames the card), and the admin's console passes none."""
    response = Response(html, status=status, mimetype="text/html")
    origins = connection().file.cors.allowed_origins if frame_ancestors is None else frame_ancestors
    # One same-origin script and its POSTs; inline script, plugins, forms and framing by anyone
    # but Flex all refused.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        f"form-action 'none'; frame-ancestors {' '.join(origins) or 'none'}"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"  # a card is one customer's data
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def error_page(status: int, message: str, frame_ancestors: list[str] | None = None) -> Response:
    """An error as a fragment, which the shell's script shows in place of the card."""
    title = TITLES.get(status, "Something went wrong")
    page = render_template("error.html", title=title, message=bounded(message))
    return page_response(page, status, frame_ancestors)
