"""Answers every route shares: CORS for the connection's origins, and errors in Segment's shape
(or as HTML fragments for the card page's script)."""

from __future__ import annotations

import logging
from collections.abc import Collection

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from connector.auth.policy import current_policy
from connector.errors import ConnectorError, error_response
from connector.web.fields import MAX_BODY_BYTES
from connector.web.pages import error_page
from connector.web.registry import connection

log = logging.getLogger(__name__)
CORS_HEADERS = "Authorization, Content-Type"
CORS_METHODS = "GET, POST, OPTIONS"
# Headers a Flex plugin may read: Segment's Request-Id for support, when to retry a 429 or 503.
CORS_EXPOSED = "Request-Id, Retry-After"


def register(app: Flask) -> None:
    app.register_error_handler(ConnectorError, connector_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)


def cors_headers(origin: str | None, allowed: Collection[str]) -> dict[str, str]:
    """The CORS headers of an answer to `origin`: none unless it is one of `allowed`. The app's
    answers and the front's own (serving/bridge.py) both carry them."""
    if not origin or origin not in allowed:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": CORS_EXPOSED}


def cors(response: Response) -> Response:
    """CORS for the connection's allowed origins, on every answer, errors included."""
    headers = cors_headers(request.headers.get("Origin"), connection().file.cors.allowed_origins)
    if headers:
        response.headers.update(headers)
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
    response.vary.add("Origin")
    return response


def connector_error(error: ConnectorError) -> Response:
    route = current_policy()
    if route.page:  # an agent's iframe (or the admin's console): a page, not JSON
        return error_page(error.status, error.message, [] if route.admin else None)
    return error.response()


def http_error(error: HTTPException) -> Response:
    codes = {404: "not_found", 405: "invalid_request_error", 413: "invalid_request_error"}
    messages = {413: f"The request body is larger than {MAX_BODY_BYTES // 1024} KB."}
    status = error.code or 400
    route = current_policy()
    if route.page:  # the card page's script shows fragments
        message = messages.get(status, "The request was refused.")
        return error_page(status, message, [] if route.admin else None)
    response = error_response(
        status,
        codes.get(status, "invalid_request_error"),
        messages.get(status, error.description or "Bad request."),
    )
    for name, value in error.get_headers():  # Allow on a 405, Retry-After on a 503 ...
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def unexpected_error(error: Exception) -> Response:
    log.exception("unexpected error")
    return error_response(500, "server_error", "Something went wrong on the connector's side.")
