"""Running the connector under gunicorn: the asyncio front, one pooled client per worker."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess

from connector.app import AppSettings, close_app, create_app
from connector.config.holder import ConnectionHolder
from connector.config.last_good import LastGood
from connector.logs import configure_logging, server_log_config
from connector.metrics import MULTIPROC_ENV
from connector.serving.bridge import BridgeLimits, WsgiBridge
from connector.web.fields import MAX_BODY_BYTES
from connector.web.registry import services_of

STATE_PREFIX = "connector-state-"  # + the master's pid: its last-good copy of the file


ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - production: every route but /healthz needs credentials


class NoAccessLog(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, never writing access lines (they would carry phone numbers and emails).

    With a `logconfig_dict`, gunicorn counts access logging as on and builds each request's
    access line for a logger that drops it: a tenth of a worker's CPU on warm lookups (py-spy).
    """

    @property
    def access_log_enabled(self) -> bool:
        return False


class ConnectorServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn with the app built in each worker after the fork (never before: no pool is
    shared between processes)."""

    def __init__(
        self, settings: AppSettings, host: str, port: int, workers: int, threads: int
    ) -> None:
        self.options = {
            "bind": f"{host}:{port}",
            "workers": workers,
            # The asyncio worker reads requests whole before they take a thread (see
            # connector.serving.bridge): slow clients cannot hold the threads that answer lookups.
            "worker_class": "asgi",
            "worker_connections": 4096,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 75,
            "preload_app": False,
            "accesslog": None,  # access lines would carry phone numbers and emails
            "errorlog": "-",
            "logconfig_dict": server_log_config(),
            "logger_class": NoAccessLog,
            "proc_name": "unified-profiles-connector",
            # gunicorn 25+ opens a control socket in $HOME: two instances would share it.
            "control_socket_disable": True,
            # A dead worker's live gauges (cache entries, budget in use) leave /metrics' sums;
            # its counters stay counted.
            "child_exit": worker_exited,
        }
        # What each worker builds its app with (after the fork): the file, the environment it
        # reads secrets from, its share of the rate budget (one of `workers`), the last-good copy.
        self.settings = settings
        self.threads = threads
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                self.cfg.set(key, value)

    def load(self) -> WsgiBridge:
        configure_logging()
        app = create_app(self.settings)
        return serve_behind_bridge(app, self.threads)


def worker_exited(_server: object, worker: object) -> None:
    """gunicorn's `child_exit` hook, in the master."""
    pid = getattr(worker, "pid", None)
    if isinstance(pid, int) and os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def serve_behind_bridge(app: Flask, threads: int) -> WsgiBridge:
    """The app behind the asyncio front, its deadline following the connection file."""
    holder = services_of(app).holder
    limits = BridgeLimits(
        threads=threads,
        max_body=MAX_BODY_BYTES,
        deadline=lambda: holder.current().file.lookup.timeout_seconds,
        allowed_origins=lambda: holder.current().file.cors.allowed_origins,
    )
    return WsgiBridge(app, limits, on_shutdown=lambda: close_app(app))


def serve(
    config: Path,
    host: str,
    port: int,
    workers: int,
    threads: int,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (gunicorn's own handlers stop the workers gracefully).

    The connection file is validated here, once, before any worker starts (ConfigError for a bad
    one) and kept as the workers' last-good copy: from then on, a worker that boots while the
    admin's file is bad serves that copy instead of failing to boot and taking gunicorn down.
    Secrets are read from `environ` (default: this process's environment).
    """
    environ = dict(os.environ if environ is None else environ)
    _sweep_states_of_dead_servers()
    with tempfile.TemporaryDirectory(prefix=f"{STATE_PREFIX}{os.getpid()}-") as state:
        last_good = Path(state) / "connection.last-good.toml"
        ConnectionHolder(config, environ, last_good=LastGood(last_good))  # validates, publishes
        settings = AppSettings(
            config_path=config, environ=environ, processes=workers, last_good=last_good
        )
        # Where each worker writes its figures for /metrics to sum (connector.metrics): named
        # before the workers fork, so they inherit it; gone with the state folder.
        figures = Path(state) / "metrics"
        figures.mkdir()
        os.environ[MULTIPROC_ENV] = str(figures)
        try:
            ConnectorServer(settings, host, port, workers, threads).run()
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


def _sweep_states_of_dead_servers() -> None:
    """Remove the state folders of servers killed too hard to clean up (`kill -9`): each is
    named after its master's process id."""
    for folder in Path(tempfile.gettempdir()).glob(f"{STATE_PREFIX}*-*"):
        pid = folder.name.removeprefix(STATE_PREFIX).partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
