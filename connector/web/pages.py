"""`/cards/view`: the card as an HTML page for Flex's CRM container (an iframe).

Flex frames `/cards/view#from=...&Token=...`. Browsers never send a URL's fragment, so neither
the agent's token nor the caller's address reaches a request line that a router or proxy logs.
`GET /cards/view` is a shell that holds no data (it needs no credentials); its one script
(`/cards/view.js`) reads the fragment, drops it from the address bar and history, and POSTs it
to `/cards/view`, which answers the card as an HTML fragment rendered (and escaped) here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, render_template, request, send_file

from connector.auth.policy import policy
from connector.cards.build import display
from connector.errors import BadRequest, OutboxUnavailable, ProfileApiError, bounded
from connector.web.cards import look_up_caller
from connector.web.history import reader_history
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
    return page_response(render_template("view.html", search_options=search_options()), 200)


@blueprint.post("/cards/view")
@policy(customer_data=True, page=True)  # answers the shell's script: errors as fragments too
def card_view() -> Response:
    """The card as an HTML fragment, for the shell's script (the gate checked the Token field)."""
    if _secret_in_query():
        raise BadRequest(FRAGMENT_FORM)
    try:
        caller, answer = look_up_caller()
    except ProfileApiError as error:
        return error_page(503, error.public_message)
    try:
        history = reader_history(caller, answer) if answer.card.found else None
    except OutboxUnavailable:  # the card without what the ledger adds, and a line saying so
        history = None
    page = render_template("card.html", card=answer.card, history=history)
    return page_response(page, 200)


@blueprint.get("/cards/view.js")
@policy("public")
def card_script() -> Response:
    """The shell's one script (revalidated on each load, so a deploy takes effect at once)."""
    return script_response(SCRIPT)


def script_response(path: Path) -> Response:
    """A page's one script, revalidated on each load (a deploy takes effect at once)."""
    response = send_file(path, mimetype="text/javascript", max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@dataclass(frozen=True)
class SearchOption:
    type: str  # an identifier type: the search sends `identifier=<type>:<value>`
    label: str


# Every space has these, whether or not the card shows them.
ALWAYS_SEARCHABLE = (
    SearchOption("user_id", "User ID"),
    SearchOption("anonymous_id", "Anonymous ID"),
)


def search_options() -> list[SearchOption]:
    """What an agent can search by besides "Phone or email" (which reads any format): the
    identifiers the connection lists, then user_id and anonymous_id."""
    lookup = connection().file.lookup
    by_address = {*lookup.phone_identifiers, *lookup.email_identifiers}
    options = [
        SearchOption(shown.type, shown.label)
        for shown in connection().file.identifiers
        if shown.type not in by_address
    ]
    listed = {option.type for option in options}
    return options + [option for option in ALWAYS_SEARCHABLE if option.type not in listed]


@blueprint.app_template_filter("initials")
def initials(name: str) -> str:
    """ "Ada Lovelace" -> "AL"; the avatar of a profile without a photo."""
    letters = [word[0] for word in name.split() if word[:1].isalnum()]
    return "".join(letters[:1] + letters[1:][-1:]).upper() or "?"


@blueprint.app_template_filter("shown")
def shown(value: Any) -> str:
    """A value from an event's details as the card shows traits."""
    return display(value) if not isinstance(value, str) else value


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
