"""Error bodies in Segment's shape, whatever the message."""

from __future__ import annotations

from connector.errors import MAX_MESSAGE_CHARS, error_body


def test_an_error_body_bounds_its_message() -> None:
    message = error_body("invalid_request_error", "x" * 100_000)["error"]["message"]
    assert len(message) == MAX_MESSAGE_CHARS and message.endswith("\u2026")
    assert error_body("not_found", "short")["error"]["message"] == "short"
