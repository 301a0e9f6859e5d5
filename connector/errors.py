"""The connector's errors, and the one place that turns them into JSON bodies in Segment's shape.

ConnectorError                      status, code, message
├── BadRequest                      400 invalid_request_error (the caller's input)
├── Unauthenticated                 401 authentication_error (no, bad or expired credentials)
├── Forbidden                       403 forbidden (a role not allowed; write-back is off)
├── NotFound                        404 not_found (an event's caller is no one Segment knows)
├── UnsupportedMediaType            415 invalid_request_error (a body neither form nor JSON)
├── TooManyLookups                  429 rate_limit_error (one agent's or flow's lookup limit)
├── OutboxUnavailable               503 outbox_unavailable (the outbox's database cannot be reached)
├── TwilioUnavailable               503 auth_unavailable (Twilio could not check a Flex token)
│   └── TwilioRefusedCredentials        (Twilio refused our account SID and auth token)
└── ProfileApiError                 Segment's answer, with its Request-Id
    ├── ProfileNotFound             404 from Segment (a lookup's normal "no")
    ├── SpaceNotFound               404 "Space was not found": 503 space_not_found (check space_id)
    ├── AuthenticationFailed        Segment refused our token: 503 token_refused (check the token)
    ├── UpstreamInvalidRequest      Segment refused our request: 502
    ├── RateLimited                 429 from Segment or our own budget: 503
    └── UpstreamUnavailable         5xx, timeouts, refused connections: 503
"""

from __future__ import annotations

import math
from typing import Any

from flask import Response, jsonify

# Messages name what is wrong and how to fix it in a sentence or two; one that quotes input at
# length (a 60 KB field name) must not turn an error into a large body that echoes it back.
MAX_MESSAGE_CHARS = 500


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`message` cut to `limit` characters, marked with an ellipsis when it was cut."""
    return message if len(message) <= limit else message[: limit - 1] + "\u2026"


def error_body(code: str, message: str) -> dict[str, Any]:
    """Segment's error body: ``{"error": {"code": ..., "message": ...}}``, its message bounded."""
    return {"error": {"code": code, "message": bounded(message)}}


def error_response(status: int, code: str, message: str) -> Response:
    """A JSON response carrying :func:`error_body` with the given HTTP status."""
    response = jsonify(error_body(code, message))
    response.status_code = status
    return response


class ConnectorError(Exception):
    status = 500
    code = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message)


class BadRequest(ConnectorError):
    status = 400
    code = "invalid_request_error"


class ProfileApiError(ConnectorError):
    """An answer (or silence) from Segment's Profile API."""

    status = 503
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.upstream_status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def response(self) -> Response:
        # Segment's message stays in our logs; callers get a message about us, not our upstream.
        suffix = f" (Segment Request-Id {self.request_id})" if self.request_id else ""
        response = error_response(self.status, self.code, self.public_message + suffix)
        if self.request_id:  # for the support ticket: scripts may read it (CORS exposes it)
            response.headers["Request-Id"] = self.request_id
        return response

    public_message = "Segment's Profile API is unavailable; try again shortly."


class ProfileNotFound(ProfileApiError):
    status = 404
    code = "not_found"


class SpaceNotFound(ProfileApiError):
    """Segment has no space with the connection's space_id: every lookup would miss, so this
    is the admin's to fix, never a customer's "not found" (not a ProfileNotFound)."""

    status = 503
    code = "space_not_found"
    public_message = (
        "Segment has no space with this connection's space_id; "
        "the admin must check space_id in the connection file."
    )


class AuthenticationFailed(ProfileApiError):
    """Segment refused the connector's own token (not the caller's): the admin's to fix."""

    status = 503
    code = "token_refused"
    public_message = (
        "Segment refused the connector's Profile API token; the admin must check the token "
        "in the environment variable the connection file's token_env names."
    )


class UpstreamInvalidRequest(ProfileApiError):
    status = 502
    code = "upstream_invalid_request"
    public_message = (
        "Segment refused the connector's request; check profile_api_url in the connection file."
    )


class RateLimited(ProfileApiError):
    status = 503
    code = "rate_limit_error"
    public_message = "The space's Profile API rate limit is reached; try again shortly."


class NoSlot(RateLimited):
    """Our own pace for the space had no slot for a request within its patience (nothing sent)."""


class UpstreamUnavailable(ProfileApiError):
    status = 503
    code = "upstream_unavailable"


class NotFound(ConnectorError):
    status = 404
    code = "not_found"


class Forbidden(ConnectorError):
    status = 403
    code = "forbidden"


class UnsupportedMediaType(ConnectorError):
    status = 415
    code = "invalid_request_error"


class Unauthenticated(ConnectorError):
    status = 401
    code = "authentication_error"

    def response(self) -> Response:
        response = super().response()
        response.headers["WWW-Authenticate"] = 'Bearer realm="connector"'
        return response


class TooManyLookups(ConnectorError):
    status = 429
    code = "rate_limit_error"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def response(self) -> Response:
        response = super().response()
        response.headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return response


class OutboxUnavailable(ConnectorError):
    """The outbox's database (PostgreSQL) did not answer in time: the event was not recorded."""

    status = 503
    code = "outbox_unavailable"
    public_message = "The outbox database cannot be reached; the event was not recorded, retry it."

    def __init__(self, detail: str) -> None:
        super().__init__(self.public_message)
        self.detail = detail  # for our logs: what failed (never the database's URL)


class TwilioUnavailable(ConnectorError):
    status = 503
    code = "auth_unavailable"


class TwilioRefusedCredentials(TwilioUnavailable):
    """Twilio refused the connector's own account SID and auth token."""
