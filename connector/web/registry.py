"""The process's shared objects, built once by `create_app` and kept in `app.extensions`, and
the connection a request is served with, read once per request.

The connection file can change while a request runs (the holder's watcher swaps it); a request
takes one snapshot as it enters the app (`ConnectionSnapshot`, the outermost middleware) and
every part of it (trusted proxies, the gate, the route, CORS, the audit line) sees that one
version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from flask import Flask, current_app, request

from connector.auth.gate import Gate
from connector.cards.service import CardService
from connector.config.holder import ConnectionHolder
from connector.config.loading import Connection
from connector.metrics import Sampler
from connector.segment.api import ProfileApi
from connector.segment.probe import ReadinessProbe
from connector.state.redis import SharedRedis
from connector.writeback.drainer import Drainer
from connector.writeback.outbox import LazyOutbox
from connector.writeback.writer import EventWriter

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

EXTENSION = "connector"
SNAPSHOT = "connector.connection"  # environ key: the Connection this request is served with


@dataclass(frozen=True)
class Services:
    holder: ConnectionHolder  # the connection in use, hot-reloaded
    http: httpx.Client  # the process's one pooled client (Segment and Twilio)
    redis: SharedRedis | None  # what workers and instances share (REDIS_URL), else nothing
    api: ProfileApi  # the Profile API client of the connection's version, and its budget
    cards: CardService
    probe: ReadinessProbe
    outbox: LazyOutbox
    events: EventWriter
    drainer: Drainer
    gate: Gate
    sampler: Sampler  # the live gauges of /metrics (cache entries, budget in use)

    def close(self) -> None:
        """Stop the threads and release the pooled client, the last user of it last."""
        self.sampler.stop()
        self.drainer.stop()
        self.outbox.close()
        self.holder.close()
        self.cards.close()
        self.http.close()
        if self.redis is not None:
            self.redis.close()


def services_of(app: Flask) -> Services:
    found: Services = app.extensions[EXTENSION]
    return found


def services() -> Services:
    """The Services of the app handling the current request."""
    return services_of(current_app)


def connection() -> Connection:
    """The connection this request is served with (taken on first use outside the middleware,
    as in a test's request context)."""
    environ = request.environ
    snapshot = environ.get(SNAPSHOT)
    if not isinstance(snapshot, Connection):
        snapshot = environ[SNAPSHOT] = services().holder.current()
    return snapshot


def snapshot_of(environ: WSGIEnvironment) -> Connection:
    snapshot: Connection = environ[SNAPSHOT]
    return snapshot


class ConnectionSnapshot:
    """WSGI middleware: the connection in use when a request enters, kept in its environ."""

    def __init__(self, app: WSGIApplication, holder: ConnectionHolder) -> None:
        self._app = app
        self._holder = holder

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[SNAPSHOT] = self._holder.current()
        return self._app(environ, start_response)
