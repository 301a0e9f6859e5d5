"""The sandbox's own control plane under `/_sandbox/`: faults, stats, agent tokens, profiles.

Tests and the benchmark use it to switch faults while the sandbox runs and to count what reached
"Segment". It is not part of Segment's API; the sandbox only listens on loopback.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from connector.sandbox.core import Sandbox
from connector.sandbox.faults import faults_from_json
from connector.sandbox.rules import COLLECTIONS, Identifier
from connector.sandbox.store import external_ids_of
from connector.sandbox.wsgi import SegmentError

control = Blueprint("control", __name__, url_prefix="/_sandbox")


def _sandbox() -> Sandbox:
    sandbox: Sandbox = current_app.extensions["sandbox"]
    return sandbox


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SegmentError(400, "invalid_request_error", "The body must be a JSON object.")
    return body


@control.get("")
def summary() -> Response:
    sandbox = _sandbox()
    return jsonify(
        {
            "space_id": sandbox.config.space_id,
            "rate_limit": sandbox.config.rate_limit,
            "profiles": sandbox.store.counts(),
            "faults": sandbox.faults.current.to_json(),
        }
    )


@control.get("/faults")
def get_faults() -> Response:
    return jsonify(_sandbox().faults.current.to_json())


@control.put("/faults")
def put_faults() -> Response:
    try:
        faults = faults_from_json(_json_object())
    except (TypeError, ValueError) as error:
        raise SegmentError(400, "validation_error", str(error)) from None
    _sandbox().faults.set(faults)
    return jsonify(faults.to_json())


@control.delete("/faults")
def clear_faults() -> Response:
    _sandbox().faults.clear()
    return jsonify(_sandbox().faults.current.to_json())


@control.get("/stats")
def stats() -> Response:
    return jsonify(_sandbox().stats.snapshot(detail=request.args.get("detail") == "1"))


@control.post("/stats/reset")
def reset_stats() -> Response:
    _sandbox().stats.reset()
    return jsonify(_sandbox().stats.snapshot())


@control.post("/agent-tokens")
def issue_agent_token() -> Response:
    body = _json_object()
    roles = body.get("roles", ["agent"])
    ttl = body.get("ttl_seconds", 24 * 3600)
    if not (isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
        raise SegmentError(400, "validation_error", "roles must be a list of strings.")
    if not isinstance(ttl, int | float):
        raise SegmentError(400, "validation_error", "ttl_seconds must be a number.")
    agent = _sandbox().agent_tokens.issue(
        token=body.get("token"),
        identity=body.get("identity"),
        roles=tuple(roles),
        ttl=timedelta(seconds=ttl),
    )
    return jsonify(
        {
            "token": agent.token,
            "identity": agent.identity,
            "roles": list(agent.roles),
            "worker_sid": agent.worker_sid,
            "expiration": agent.expires_at.isoformat(),
        }
    )


@control.get("/profiles/<collection>/<path:identifier>")
def profile(collection: str, identifier: str) -> Response:
    """Everything the sandbox holds on one profile, subscriptions included (for tests)."""
    if collection not in COLLECTIONS:
        raise SegmentError(404, "not_found", "Collection was not found.")
    store = _sandbox().store
    type_, sep, value = identifier.partition(":")
    key = Identifier(collection, type_.lower(), value.lower()) if sep else identifier
    found = store.find(collection, key)
    if found is None:
        raise SegmentError(404, "not_found", "Profile was not found.")
    return jsonify(
        {
            "segment_id": found.id,
            "collection": found.collection,
            "external_ids": external_ids_of(store, found.id),
            "traits": store.all_traits(found.id),
            "subscriptions": store.subscriptions(found.id),
            "events": store.event_count(found.id),
            "metadata": store.metadata(found.id),
        }
    )
