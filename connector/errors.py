"""Error bodies in Segment's shape, the one format every JSON error of this project uses."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify


def error_body(code: str, message: str) -> dict[str, Any]:
    """Segment's error body: ``{"error": {"code": ..., "message": ...}}``."""
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> Response:
    """A JSON response carrying :func:`error_body` with the given HTTP status."""
    response = jsonify(error_body(code, message))
    response.status_code = status
    return response
