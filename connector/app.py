"""The application factory: validate the connection, build shared objects, register routes."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from connector.auth import audit
from connector.auth.flex_tokens import FlexTokens
from connector.auth.gate import Gate
from connector.auth.studio import TrustedProxies
from connector.cards.service import CardService, current_service
from connector.config.holder import SETTLE_SECONDS, ConnectionHolder
from connector.config.last_good import LastGood
from connector.config.loading import config_path
from connector.errors import ConnectorError, error_response
from connector.logs import quiet_libraries
from connector.segment.client import build_http_client
from connector.serving.body_limit import BodyLimit
from connector.web import cards, events, health, pages
from connector.writeback.drainer import Drainer
from connector.writeback.outbox import LazyOutbox

log = logging.getLogger(__name__)
LAST_GOOD_ENV = "CONNECTOR_LAST_GOOD"
MAX_BODY_BYTES = 64 * 1024
CORS_HEADERS = "Authorization, Content-Type"
CORS_METHODS = "GET, POST, OPTIONS"
# Headers a Flex plugin may read: Segment's Request-Id for support, when to retry a 429 or 503.
CORS_EXPOSED = "Request-Id, Retry-After"
# Heroku sets DYNO in every dyno. Its filesystem is ephemeral and not shared between dynos.
EPHEMERAL_OUTBOX = (
    "write-back is on with the SQLite outbox on a Heroku dyno: its filesystem is ephemeral, so "
    "events not yet delivered are lost at every dyno restart (at least daily), and each dyno "
    "has its own outbox. Keep [writeback] enabled = false on Heroku until the shared PostgreSQL "
    "outbox exists."
)


@dataclass(frozen=True)
class AppSettings:
    """How this process runs; the connection itself lives in the connection file."""

    config_path: Path = field(default_factory=config_path)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    processes: int = field(default_factory=lambda: int(os.environ.get("CONNECTOR_PROCESSES", "1")))
    reload_every: float = 0.25  # 0: check the file on every request, no watcher thread (tests)
    settle: float = SETTLE_SECONDS
    # The last-good copy the workers of one `connector serve` share (it sets the variable).
    last_good: Path | None = field(default_factory=lambda: _path_from_env(LAST_GOOD_ENV))


def create_app(
    settings: AppSettings | None = None, *, transport: httpx.BaseTransport | None = None
) -> Flask:
    """Build the WSGI app. Refuses to start on an invalid connection file (ConfigError)."""
    settings = settings or AppSettings()
    quiet_libraries()  # httpx logs request URLs, and ours carry phone numbers and emails
    holder = ConnectionHolder(
        settings.config_path,
        settings.environ,
        settings.reload_every,
        settle=settings.settle,
        last_good=LastGood(settings.last_good) if settings.last_good else None,
    )
    holder.watch()
    if settings.environ.get("DYNO") and holder.current().file.writeback.enabled:
        log.warning(EPHEMERAL_OUTBOX)
    app = Flask(__name__)
    app.extensions["connection"] = holder
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # The outbox is shared by every worker through its file; each worker drains it (rows are
    # leased, so each is sent by one drainer at a time). Opened on first use, when write-back is
    # on: a connection that never writes back leaves no file behind.
    outbox = LazyOutbox(lambda: holder.current().outbox_path)
    app.extensions["outbox"] = outbox
    service = CardService(
        holder, build_http_client(transport), settings.processes, outbox.delivered_since
    )
    app.extensions["cards"] = service
    drainer = Drainer(outbox, service.http, holder.current)
    app.extensions["drainer"] = drainer
    drainer.start()
    gate = Gate(holder, FlexTokens(service.http), settings.processes)
    app.before_request(gate.admit)
    proxied = TrustedProxies(app.wsgi_app, holder)
    app.wsgi_app = BodyLimit(proxied, MAX_BODY_BYTES)  # type: ignore[method-assign]
    app.register_blueprint(cards.blueprint)
    app.register_blueprint(events.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(pages.blueprint)
    app.after_request(_cors)
    app.after_request(audit.record)
    app.register_error_handler(ConnectorError, _connector_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _path_from_env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def close_app(app: Flask) -> None:
    """Stop the drainer and release the pooled client (tests and embedders)."""
    app.extensions["drainer"].stop()
    app.extensions["connection"].close()
    app.extensions["cards"].close()


def _cors(response: Response) -> Response:
    """CORS for the connection's allowed origins, on every answer, errors included."""
    origin = request.headers.get("Origin")
    allowed = current_service().holder.current().file.cors.allowed_origins
    if origin and origin in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
    response.vary.add("Origin")
    return response


def _connector_error(error: ConnectorError) -> Response:
    if request.endpoint in pages.PAGE_ENDPOINTS:  # an agent's iframe: a page, not JSON
        return pages.error_page(error.status, error.message)
    return error.response()


def _http_error(error: HTTPException) -> Response:
    codes = {404: "not_found", 405: "invalid_request_error", 413: "invalid_request_error"}
    messages = {413: f"The request body is larger than {MAX_BODY_BYTES // 1024} KB."}
    status = error.code or 400
    if request.endpoint in pages.PAGE_ENDPOINTS:  # the card page's script shows fragments
        return pages.error_page(status, messages.get(status, "The request was refused."))
    response = error_response(
        status,
        codes.get(status, "invalid_request_error"),
        messages.get(status, error.description or "Bad request."),
    )
    for name, value in error.get_headers():  # Allow on a 405, Retry-After on a 503 ...
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _unexpected_error(error: Exception) -> Response:
    log.exception("unexpected error")
    return error_response(500, "server_error", "Something went wrong on the connector's side.")
