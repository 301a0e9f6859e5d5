"""Running the connector under gunicorn: threaded workers, one pooled client per worker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from flask import Flask
from gunicorn.app.base import BaseApplication

from connector.app import LAST_GOOD_ENV, MAX_BODY_BYTES, AppSettings, close_app, create_app
from connector.bridge import BridgeLimits, WsgiBridge
from connector.hot_reload import ConnectionHolder, LastGood
from connector.logs import configure_logging, server_log_config
from connector.loopback import free_port

HOST = "127.0.0.1"  # the demo, tests and benchmarks
STATE_PREFIX = "connector-state-"  # + the master's pid: its last-good copy of the file
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - production: every route but /healthz needs credentials


class ConnectorServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn with the app built in each worker after the fork (never before: no pool is
    shared between processes)."""

    def __init__(self, config: Path, host: str, port: int, workers: int, threads: int) -> None:
        self.options = {
            "bind": f"{host}:{port}",
            "workers": workers,
            # The asyncio worker reads requests whole before they take a thread (see
            # connector.bridge): slow clients cannot hold the threads that answer lookups.
            "worker_class": "asgi",
            "worker_connections": 4096,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 75,
            "preload_app": False,
            "accesslog": None,  # access lines would carry phone numbers and emails
            "errorlog": "-",
            "logconfig_dict": server_log_config(),
            "proc_name": "unified-profiles-connector",
            # gunicorn 25+ opens a control socket in $HOME: two instances would share it.
            "control_socket_disable": True,
        }
        # Each worker takes its share of the space's rate budget, and reads this file.
        os.environ["CONNECTOR_PROCESSES"] = str(workers)
        os.environ["CONNECTOR_CONFIG"] = str(config)
        self.config_path = config
        self.threads = threads
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                self.cfg.set(key, value)

    def load(self) -> WsgiBridge:
        configure_logging()
        app = create_app(AppSettings(config_path=self.config_path))
        return serve_behind_bridge(app, self.threads)


def serve_behind_bridge(app: Flask, threads: int) -> WsgiBridge:
    """The app behind the asyncio front, its deadline following the connection file."""
    holder = app.extensions["cards"].holder
    limits = BridgeLimits(
        threads=threads,
        max_body=MAX_BODY_BYTES,
        deadline=lambda: holder.current().file.lookup.timeout_seconds,
    )
    return WsgiBridge(app, limits, on_shutdown=lambda: close_app(app))


def serve(config: Path, host: str, port: int, workers: int, threads: int) -> None:
    """Run until SIGINT/SIGTERM (gunicorn's own handlers stop the workers gracefully).

    The connection file is validated here, once, before any worker starts (ConfigError for a bad
    one) and kept as the workers' last-good copy: from then on, a worker that boots while the
    admin's file is bad serves that copy instead of failing to boot and taking gunicorn down.
    """
    _sweep_states_of_dead_servers()
    with tempfile.TemporaryDirectory(prefix=f"{STATE_PREFIX}{os.getpid()}-") as state:
        last_good = Path(state) / "connection.last-good.toml"
        ConnectionHolder(config, last_good=LastGood(last_good))  # validates, then publishes
        os.environ[LAST_GOOD_ENV] = str(last_good)
        ConnectorServer(config, host, port, workers, threads).run()


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


@dataclass(frozen=True)
class ServedProcess:
    """A `connector serve` started by :func:`served_process`: its URL, master and log file."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self) -> list[int]:
        """gunicorn's workers: the master's children, read from /proc."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:  # the process ended while we looked
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children


@contextmanager
def served_process(
    config: Path,
    env: Mapping[str, str],
    port: int = 0,
    workers: int = 1,
    threads: int = 64,
    ready_within: float = 20.0,
) -> Iterator[ServedProcess]:
    """Run `connector serve` in a subprocess until the block ends (tests, benchmarks, drills)."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "connector",
        "serve",
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    with command_process(command, env, f"http://{HOST}:{port}", ready_within) as served:
        yield served


@contextmanager
def command_process(
    command: Sequence[str],
    env: Mapping[str, str],
    url: str,
    ready_within: float = 20.0,
    cwd: Path | None = None,
) -> Iterator[ServedProcess]:
    """Run a command serving the connector at `url` (a `connector serve`, the Procfile's web
    command) until the block ends; yield it once /healthz answers."""
    # Its logs go to a file opened for appending: a pipe nobody reads fills up, and then every
    # request blocks on writing its log line.
    with tempfile.TemporaryDirectory(prefix="connector-serve-") as folder:
        log_path = Path(folder) / "stderr.log"
        with (
            log_path.open("ab") as logs,
            subprocess.Popen(  # noqa: S603 - our own interpreter and command, no shell
                command, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=logs
            ) as process,
        ):
            served = ServedProcess(url, process, log_path)
            try:
                _wait_until_healthy(served, ready_within)
                yield served
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


def _wait_until_healthy(served: ServedProcess, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"connector serve exited: {served.logs()}")
        try:
            if httpx.get(f"{served.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("connector serve did not become healthy in time")
