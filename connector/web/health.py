"""`/healthz` (alive), `/readyz` (the connection is valid and Segment answers), `/openapi.json`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from connector.auth.gate import current_principal
from connector.auth.policy import policy
from connector.config.loading import Connection
from connector.segment.probe import Upstream
from connector.state.instances import InstanceVersions
from connector.web.models import (
    Health,
    Readiness,
    ReadinessConfig,
    ReadinessOutbox,
    ReadinessShared,
    ReadinessSummary,
    ReadinessUpstream,
)
from connector.web.openapi import openapi_document
from connector.web.registry import connection, services

blueprint = Blueprint("health", __name__)


@blueprint.get("/openapi.json")
@policy("public")
def openapi() -> Response:
    return jsonify(openapi_document())


@blueprint.get("/healthz")
@policy("public")
def healthz() -> Response:
    return jsonify(Health(status="ok").model_dump())


@blueprint.get("/readyz")
@policy("probe")
def readyz() -> Response:
    """503 when Segment does not answer with this token; a refused edit of the connection file
    is reported but keeps readiness, since the last good connection goes on serving. Without
    credentials (a load balancer's probe), only whether the connector is ready."""
    current, redis = connection(), services().redis
    if redis is not None:  # every probe notes this instance's version, credentials or not
        InstanceVersions(redis).publish(current.version)
    upstream = services().probe.check(current)
    body: Readiness | ReadinessSummary = ReadinessSummary(ready=upstream.ok)
    if current_principal() is not None:  # a probe without credentials gets the status alone
        body = _details(upstream)
    response = jsonify(body.model_dump())
    response.status_code = 200 if upstream.ok else 503
    return response


def _details(upstream: Upstream) -> Readiness:
    """What an agent or an admin with credentials sees: version, file, upstream, cache."""
    current, error = connection(), services().holder.error
    return Readiness(
        ready=upstream.ok,
        connection=current.file.connection.friendly_name,
        version=current.version,
        config=ReadinessConfig(valid=error is None, error=str(error) if error else None),
        upstream=ReadinessUpstream(
            reachable=upstream.reachable,
            token_accepted=upstream.token_accepted,
            detail=upstream.detail,
            request_id=upstream.request_id,
            code=upstream.code,
        ),
        cache=services().cards.cache_stats(),
        shared=_shared(),
        outbox=_outbox(current),
    )


def _shared() -> ReadinessShared | None:
    """Redis's state, and the version each instance serves (this one's noted by readyz)."""
    redis = services().redis
    if redis is None:
        return None
    seen = InstanceVersions(redis).seen() or {}
    return ReadinessShared(
        available=redis.available,
        where=redis.where,
        error=redis.last_error,
        instances=seen,
        versions_agree=len(set(seen.values())) <= 1,
    )


def _outbox(current: Connection) -> ReadinessOutbox | None:
    """Whether the outbox can take events: PostgreSQL is asked (within a second, or at once
    just after a failure); the SQLite file is not created to answer."""
    if not current.file.writeback.enabled:
        return None
    lazy = services().outbox
    box = lazy.get() if lazy.backend == "postgresql" else lazy.opened()
    return ReadinessOutbox(backend=lazy.backend, reachable=box.reachable() if box else None)
