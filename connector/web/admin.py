"""`/admin`: the admin's console (connection, Test connection, health, outbox).

Built like the card page (connector.web.pages): `GET /admin` is a shell with no data and needs
no credentials; its one script (`/admin.js`) takes a Flex admin's token from the URL's fragment
(never a request line) and POSTs for the content, which is rendered and escaped here. Without a
token, the POSTs' 401 asks the browser for the admin's Basic credentials (WWW-Authenticate), and
the browser then sends them with every POST.

Every POST must carry `X-Connector-Admin: 1` and, when it has an Origin, this server's own: a
page elsewhere cannot send that header without a CORS preflight we never allow, nor forge its
Origin, so the browser's remembered Basic credentials cannot be used from another site (the
retry and purge actions change the outbox).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Response, render_template, request

from connector.auth.policy import policy
from connector.checks import run_checks
from connector.errors import Forbidden, OutboxUnavailable
from connector.web.admin_view import connection_view, health_view, outbox_view
from connector.web.metrics import outbox_store
from connector.web.pages import page_response, script_response
from connector.web.registry import connection, services
from connector.writeback.outbox import OutboxStore

blueprint = Blueprint("admin", __name__, template_folder="templates")
SCRIPT = Path(__file__).resolve().parent / "assets" / "admin.js"
CSRF_HEADER = "X-Connector-Admin"
REALM = 'Basic realm="Unified Profiles connector admin", charset="UTF-8"'
NO_FRAMING: list[str] = []  # the console is never framed (clickjacking its buttons)


@blueprint.before_request
def same_site_only() -> None:
    """A POST from the console's own script, never from another site (see the module)."""
    if request.method != "POST":
        return
    origin = request.headers.get("Origin")
    own = request.host_url.rstrip("/")
    if request.headers.get(CSRF_HEADER) != "1" or (origin is not None and origin != own):
        raise Forbidden("The admin's console only answers its own page's requests.")


@blueprint.after_request
def ask_for_basic(response: Response) -> Response:
    """A 401 without a Flex token asks the browser for the admin's Basic credentials."""
    offered_token = "Token" in request.form or request.headers.get(
        "Authorization", ""
    ).lower().startswith("bearer ")
    if response.status_code == 401 and not offered_token:
        response.headers["WWW-Authenticate"] = REALM
    return response


@blueprint.get("/admin")
@policy("public")  # the shell holds no data
def shell() -> Response:
    return page_response(render_template("admin.html"), 200, NO_FRAMING)


@blueprint.get("/admin.js")
@policy("public")
def script() -> Response:
    return script_response(SCRIPT)


@blueprint.post("/admin")
@policy(page=True, admin=True)
def console() -> Response:
    return _console()


@blueprint.post("/admin/test-connection")
@policy(page=True, admin=True)
def test_connection() -> Response:
    """What `connector check` runs, on the file and environment this process serves."""
    holder = services().holder
    result = run_checks(holder.path, services().http, holder.environ)
    html = render_template("admin_checks.html", steps=result.steps, ok=result.ok)
    return page_response(html, 200, NO_FRAMING)


@blueprint.post("/admin/outbox/retry-dead")
@policy(page=True, admin=True)
def retry_dead() -> Response:
    return _outbox_action(lambda box: f"{box.retry_dead()} dead letter(s) back in line")


@blueprint.post("/admin/outbox/purge-dead")
@policy(page=True, admin=True)
def purge_dead() -> Response:
    return _outbox_action(lambda box: f"{box.purge_dead()} dead letter(s) deleted")


def _outbox_action(act: Callable[[OutboxStore], str]) -> Response:
    box = outbox_store()
    if box is None:
        return _console("There is no outbox yet: nothing to do.")
    try:
        notice = act(box)
    except OutboxUnavailable as error:
        notice = f"The outbox could not be reached: {error.message}"
    return _console(notice)


def _console(notice: str | None = None) -> Response:
    current = connection()
    services().sampler.sample()  # the live gauges as of now, not of the last second
    html = render_template(
        "admin_console.html",
        connection=connection_view(current),
        health=health_view(),
        outbox=outbox_view(current),
        notice=notice,
    )
    return page_response(html, 200, NO_FRAMING)
