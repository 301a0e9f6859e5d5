"""Running the connector under gunicorn: threaded workers, one pooled client per worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
from flask import Flask
from gunicorn.app.base import BaseApplication

from connector.app import AppSettings, create_app
from connector.logs import configure_logging
from connector.loopback import free_port

HOST = "127.0.0.1"  # the demo, tests and benchmarks
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - production: every route but /healthz needs credentials


class ConnectorServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn with the app built in each worker after the fork (never before: no pool is
    shared between processes)."""

    def __init__(self, config: Path, host: str, port: int, workers: int, threads: int) -> None:
        self.options = {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "gthread",
            "threads": threads,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 75,
            "preload_app": False,
            "accesslog": None,  # access lines would carry phone numbers and emails
            "errorlog": "-",
            "proc_name": "unified-profiles-connector",
            # gunicorn 25+ opens a control socket in $HOME: two instances would share it.
            "control_socket_disable": True,
        }
        # Each worker takes its share of the space's rate budget, and reads this file.
        os.environ["CONNECTOR_PROCESSES"] = str(workers)
        os.environ["CONNECTOR_CONFIG"] = str(config)
        self.config_path = config
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                self.cfg.set(key, value)

    def load(self) -> Flask:
        configure_logging()
        return create_app(AppSettings(config_path=self.config_path))


def serve(config: Path, host: str, port: int, workers: int, threads: int) -> None:
    """Run until SIGINT/SIGTERM (gunicorn's own handlers stop the workers gracefully)."""
    ConnectorServer(config, host, port, workers, threads).run()


@contextmanager
def serve_process(
    config: Path,
    env: Mapping[str, str],
    port: int = 0,
    workers: int = 1,
    threads: int = 64,
    ready_within: float = 20.0,
) -> Iterator[str]:
    """Run `connector serve` in a subprocess until the block ends; yield its base URL."""
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
    with command_process(command, env, f"http://{HOST}:{port}", ready_within) as url:
        yield url


@contextmanager
def command_process(
    command: Sequence[str],
    env: Mapping[str, str],
    url: str,
    ready_within: float = 20.0,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Run a command serving the connector at `url` (a `connector serve`, the Procfile's web
    command) until the block ends; yield `url` once /healthz answers."""
    # Its logs go to a file: a pipe nobody reads fills up, and then every request blocks on
    # writing its log line.
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as logs,
        subprocess.Popen(  # noqa: S603 - our own interpreter and command, no shell
            command,
            env={**os.environ, **env},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=logs,
            text=True,
        ) as process,
    ):
        try:
            _wait_until_healthy(url, process, logs, ready_within)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_until_healthy(
    url: str, process: subprocess.Popen[str], logs: IO[str], within: float
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            logs.seek(0)
            raise RuntimeError(f"connector serve exited: {logs.read()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("connector serve did not become healthy in time")
