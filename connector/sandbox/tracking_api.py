"""Segment's HTTP tracking API: `/v1/identify|track|group|page|screen|alias|batch`.

As at Segment, only invalid JSON and oversize payloads get a 400; everything else gets a 200 and
unusable messages (wrong write key, no userId/anonymousId, a track without `event`) are dropped
later, so a client that never checks cannot tell. The sandbox counts the reasons in its stats.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from connector.sandbox.core import Sandbox
from connector.sandbox.wsgi import SegmentError, basic_user

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2_500
SINGLE = ("identify", "track", "group", "page", "screen", "alias")
BATCH = ("batch", "import")

tracking_api = Blueprint("tracking", __name__)


@tracking_api.post("/v1/<any(identify, track, group, page, screen, alias, batch, import):kind>")
def receive(kind: str) -> Response:
    sandbox: Sandbox = current_app.extensions["sandbox"]
    status = 400
    try:
        body = _read_json(MAX_BATCH_BYTES if kind in BATCH else MAX_MESSAGE_BYTES)
        messages = _messages(kind, body)
        status = 200
    finally:
        sandbox.stats.tracking_request(kind, status)
    if _write_key(body) != sandbox.config.write_key:
        sandbox.stats.dropped_request("invalid_write_key", len(messages))
    else:
        outcomes = sandbox.ingest(messages)
        ids = [str(m["messageId"]) for m in messages if isinstance(m, dict) and m.get("messageId")]
        sandbox.stats.messages(ids, outcomes)
    return jsonify({"success": True})


def _read_json(limit: int) -> Any:
    # Read one byte past the limit, never the whole of an oversize body.
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise SegmentError(
            400, "invalid_request_error", f"The payload is larger than {limit // 1024} KB."
        )
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        raise SegmentError(400, "invalid_request_error", "The payload is not valid JSON.") from None


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, though Python's parser accepts them."""
    raise ValueError(name)


def _messages(kind: str, body: Any) -> list[Any]:
    if kind in SINGLE:
        return [{**body, "type": kind}] if isinstance(body, dict) else [body]
    batch = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(batch, list):
        return []
    if len(batch) > MAX_BATCH_MESSAGES:
        raise SegmentError(
            400, "invalid_request_error", f"A batch holds at most {MAX_BATCH_MESSAGES} messages."
        )
    shared = body.get("context") if isinstance(body.get("context"), dict) else {}
    messages = [_with_context(item, shared) for item in batch]
    for message in messages:
        if _message_size(message) > MAX_MESSAGE_BYTES:
            raise SegmentError(
                400,
                "invalid_request_error",
                f"A message in the batch is larger than {MAX_MESSAGE_BYTES // 1024} KB.",
            )
    return messages


def _message_size(message: Any) -> int:
    """A batched message's size as a careful sender sends it: compact, with non-ASCII escaped
    (so UTF-8 text counts as much as it can, never less than on the wire)."""
    return len(json.dumps(message, separators=(",", ":")).encode())


def _with_context(item: Any, shared: dict[str, Any]) -> Any:
    if not isinstance(item, dict) or not shared:
        return item
    own = item.get("context")
    return {**item, "context": _merge(shared, own if isinstance(own, dict) else {})}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _write_key(body: Any) -> str | None:
    credentials = basic_user()
    if credentials is not None:
        return credentials[0]
    key = body.get("writeKey") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None
