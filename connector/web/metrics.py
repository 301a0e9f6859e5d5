"""`GET /metrics`: the connector's figures in Prometheus' text format, for the admin's scraper
(the admin's Basic credentials, or a Flex admin's token; see connector.auth.policy).

Under gunicorn the figures are every worker's, summed from the multiprocess folder (see
connector.metrics); the outbox's are read from the outbox itself at scrape time, since it is
what every worker (and instance) shares.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connector.auth.policy import policy
from connector.errors import OutboxUnavailable
from connector.metrics import Outbox, figures, outbox_collector
from connector.web.registry import connection, services
from connector.writeback.outbox import OutboxStore

blueprint = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)


@blueprint.get("/metrics")
@policy(admin=True)
def metrics() -> Response:
    services().sampler.sample()  # this worker's live gauges as of now
    registry = figures().scrape_registry(outbox_collector(outbox_figures))
    response = Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def count_request(response: Response) -> Response:
    """Every answer, by the route as declared (`/v1/cards`: never the URL, which may carry a
    caller) and its status."""
    rule = request.url_rule
    figures().request(rule.rule if rule is not None else "unmatched", response.status_code)
    return response


def outbox_store() -> OutboxStore | None:
    """The outbox, if there is one to read: PostgreSQL's, or a SQLite file that exists (looking
    must not create one)."""
    lazy = services().outbox
    if lazy.backend == "postgresql" or connection().outbox_path.exists():
        return lazy.get()
    return lazy.opened()


def outbox_figures() -> Outbox | None:
    try:
        box = outbox_store()
        if box is None:
            return None
        depth = box.depth()
    except OutboxUnavailable:  # the database is down: the scrape still answers
        log.warning("the outbox could not be read for /metrics")
        return None
    return Outbox(depth.pending, depth.oldest_pending_age, depth.dead)
