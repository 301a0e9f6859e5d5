"""`/healthz` (the process is alive) and `/readyz` (the connection is valid and Segment answers)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from connector.service import current_service

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> Response:
    """503 when Segment does not answer with this token; a refused edit of the connection file
    is reported but keeps readiness, since the last good connection goes on serving."""
    service = current_service()
    connection = service.holder.current()
    upstream = service.probe()
    error = service.holder.error
    response = jsonify(
        {
            "ready": upstream.ok,
            "connection": connection.file.connection.friendly_name,
            "version": connection.version,
            "config": {"valid": error is None, "error": str(error) if error else None},
            "upstream": {
                "reachable": upstream.reachable,
                "token_accepted": upstream.token_accepted,
                "detail": upstream.detail,
                "request_id": upstream.request_id,
            },
            "cache": service.cache_stats(),
        }
    )
    response.status_code = 200 if upstream.ok else 503
    return response
