"""The application factory: validate the connection, build shared objects, register routes."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from flask import Flask

from connector.auth import audit
from connector.auth.flex_tokens import FlexTokens
from connector.auth.gate import Gate
from connector.auth.studio import TrustedProxies
from connector.cards.profile import profile_from_json, profile_to_json
from connector.cards.service import CardService
from connector.config.holder import SETTLE_SECONDS, ConnectionHolder
from connector.config.last_good import LastGood
from connector.config.loading import Connection, config_path
from connector.logs import quiet_libraries
from connector.metrics import Sampler
from connector.segment.api import ProfileApi
from connector.segment.client import build_http_client
from connector.segment.probe import ReadinessProbe
from connector.state.deliveries import SharedDeliveries
from connector.state.pacing import Pace
from connector.state.redis import SharedRedis
from connector.state.shared_tier import Codec, SharedTier
from connector.web import admin, cards, events, handlers, health, history, metrics, pages
from connector.web.body_limit import BodyLimit
from connector.web.fields import MAX_BODY_BYTES, tolerant_body
from connector.web.registry import (
    EXTENSION,
    ConnectionSnapshot,
    Services,
    connection,
    services_of,
    snapshot_of,
)
from connector.writeback.drainer import Drainer
from connector.writeback.identity import CallerIdentities
from connector.writeback.outbox import LazyOutbox
from connector.writeback.postgres_outbox import PostgresOutbox, database_url, redacted
from connector.writeback.writer import EventWriter

log = logging.getLogger(__name__)
# Heroku sets DYNO in every dyno. Its filesystem is ephemeral and not shared between dynos.
EPHEMERAL_OUTBOX = (
    "write-back is on with the SQLite outbox on a Heroku dyno: its filesystem is ephemeral, so "
    "events not yet delivered are lost at every dyno restart (at least daily), and each dyno "
    "has its own outbox. Attach Heroku Postgres (DATABASE_URL) to keep the outbox in PostgreSQL, "
    "or keep [writeback] enabled = false on Heroku."
)


@dataclass(frozen=True)
class AppSettings:
    """How this process runs; the connection itself lives in the connection file."""

    config_path: Path = field(default_factory=config_path)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    processes: int = field(default_factory=lambda: int(os.environ.get("CONNECTOR_PROCESSES", "1")))
    reload_every: float = 0.25  # 0: check the file on every request, no watcher thread (tests)
    settle: float = SETTLE_SECONDS
    # The last-good copy the workers of one `connector serve` share (it makes one).
    last_good: Path | None = None


def create_app(
    settings: AppSettings | None = None, *, transport: httpx.BaseTransport | None = None
) -> Flask:
    """Build the WSGI app. Refuses to start on an invalid connection file (ConfigError)."""
    settings = settings or AppSettings()
    quiet_libraries()  # httpx logs request URLs, and ours carry phone numbers and emails
    holder = ConnectionHolder(
        settings.config_path,
        settings.environ,
        settings.reload_every,
        settle=settings.settle,
        last_good=LastGood(settings.last_good) if settings.last_good else None,
    )
    holder.watch()
    database = database_url(settings.environ)
    if settings.environ.get("DYNO") and holder.current().file.writeback.enabled and not database:
        log.warning(EPHEMERAL_OUTBOX)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    redis_url = settings.environ.get("REDIS_URL", "").strip()
    services = build_services(
        holder,
        build_http_client(transport),
        settings.processes,
        SharedRedis(redis_url, verify_tls=_verify_tls(settings.environ)) if redis_url else None,
        database,
    )
    app.extensions[EXTENSION] = services
    services.drainer.start()
    services.sampler.start()
    app.before_request(lambda: services.gate.admit(connection(), tolerant_body()))
    proxied = TrustedProxies(app.wsgi_app, lambda environ: trusted_proxies(snapshot_of(environ)))
    bounded = BodyLimit(proxied, MAX_BODY_BYTES)
    app.wsgi_app = ConnectionSnapshot(bounded, holder)  # type: ignore[method-assign]
    for blueprint in (
        cards.blueprint,
        events.blueprint,
        history.blueprint,
        health.blueprint,
        pages.blueprint,
        admin.blueprint,
        metrics.blueprint,
    ):
        app.register_blueprint(blueprint)
    app.after_request(metrics.count_request)
    app.after_request(handlers.cors)
    app.after_request(audit.record)
    handlers.register(app)
    return app


def build_services(
    holder: ConnectionHolder,
    http: httpx.Client,
    processes: int,
    redis: SharedRedis | None = None,
    database: str | None = None,
) -> Services:
    """The process's shared objects (see connector.web.registry), each built once."""
    api = ProfileApi(http, processes, redis)
    outbox = build_outbox(holder, database)
    shared_cards, delivered_since, on_delivered = None, outbox.delivered_since, None
    if redis is not None:
        shared_cards = SharedTier(redis, "cards", Codec(profile_to_json, profile_from_json))
        deliveries = SharedDeliveries(redis, outbox.delivered_since)
        delivered_since, on_delivered = deliveries.since, deliveries.note
    card_service = CardService(api, delivered_since, shared_cards, unlinked=outbox.unlinked)

    def live() -> tuple[int, float, float]:
        """This worker's cache entries, and its pace's slots in use of those it gives at once
        (read once a second by the sampler, never on a request's path)."""
        file = holder.current().file
        lookup, space = file.lookup, file.connection.space_id
        slots = Pace.within(lookup.rate_limit / api.processes).burst + 1  # set before a lookup
        return len(card_service.cache), api.local_budget.in_use(space), slots

    return Services(
        holder=holder,
        redis=redis,
        http=http,
        api=api,
        cards=card_service,
        probe=ReadinessProbe(api),
        outbox=outbox,
        events=EventWriter(CallerIdentities(api), outbox),
        drainer=Drainer(outbox, http, holder.current, on_delivered=on_delivered),
        gate=Gate(FlexTokens(http, redis), processes, redis),
        sampler=Sampler(live),
    )


def build_outbox(holder: ConnectionHolder, database: str | None) -> LazyOutbox:
    """The outbox every worker shares: PostgreSQL's table when `database` (DATABASE_URL) names
    one, shared by every instance too; else the SQLite file the connection names. Each worker
    drains it (rows are leased, so each is sent by one drainer at a time). Opened on first use,
    when write-back is on: a connection that never writes back leaves no file (or pool) behind.
    """
    if database is not None:
        url = database
        log.info("the outbox is in PostgreSQL: %s", redacted(url))
        return LazyOutbox(lambda: PostgresOutbox(url), backend="postgresql")
    return LazyOutbox.sqlite(lambda: holder.current().outbox_path)


def _verify_tls(environ: Mapping[str, str]) -> bool:
    return environ.get("REDIS_TLS_VERIFY", "true").strip().lower() not in ("false", "0", "no")


def trusted_proxies(connection: Connection) -> int:
    return connection.file.auth.trusted_proxies


def close_app(app: Flask) -> None:
    """Stop the drainer and release the pooled client (tests and embedders)."""
    services_of(app).close()
