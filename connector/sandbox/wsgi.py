"""Request helpers shared by the sandbox's blueprints: errors, Basic auth, the undecoded path."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote

from flask import request


class SegmentError(Exception):
    """An error answered in Segment's shape; raised anywhere in a sandbox request."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def basic_user() -> tuple[str, str] | None:
    """(user, password) from a Basic Authorization header, or None when absent or malformed."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def raw_path() -> str:
    """The request path as the client sent it, before percent-decoding.

    The Profile API's identifier segment must be read undecoded: `%2B` and a raw `+` differ,
    and an encoded slash belongs to the identifier, not to the route.
    """
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not isinstance(raw, str) or not raw:
        return quote(str(environ.get("PATH_INFO", "")), safe="/:@!$&'()*,;=")
    path = raw.split("?", 1)[0]
    if "://" in path:  # absolute-form request target
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path
