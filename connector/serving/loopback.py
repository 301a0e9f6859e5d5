"""Serving a WSGI app on 127.0.0.1 in-process, and finding a free port there.

Cheroot, not werkzeug's development server: it keeps connections alive (so a client's pooling
can be seen and measured), takes bursts (a deep accept queue), and stops and restarts cleanly.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from cheroot.wsgi import Server

HOST = "127.0.0.1"
WSGIApp = Callable[..., Any]


class LoopbackServer:
    """Serves a WSGI app on 127.0.0.1 from a background thread pool; stoppable and restartable."""

    def __init__(self, app: WSGIApp, port: int = 0, threads: int = 64) -> None:
        self.app = app
        # A fixed port, even when any will do: cheroot sets SO_REUSEADDR only on fixed ports, and
        # without it the port cannot be bound again after a stop (TIME_WAIT).
        self.port = port or free_port()
        self.threads = threads
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> LoopbackServer:
        with self._lock:
            self._started = True
            self._listen()
        return self

    def stop(self) -> None:
        # Stopped outside the lock: stopping waits for the worker threads, and one of them may
        # be waiting for the lock (a request that changes the sandbox's faults, say).
        with self._lock:
            self._started = False
            detached = self._detach()
        _shut_down(*detached)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _listen(self) -> None:
        if self._server is not None:
            return
        server = Server(
            (HOST, self.port), self.app, numthreads=self.threads, server_name="loopback"
        )
        server.keep_alive_conn_limit = 1024  # pooled clients keep many idle connections
        server.shutdown_timeout = 1
        server.expiration_interval = 0.05  # how soon the serve loop notices stop()
        server.prepare()
        self._server = server
        self._thread = threading.Thread(target=server.serve, name="loopback-server", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        _shut_down(*self._detach())

    def _detach(self) -> tuple[Server | None, threading.Thread | None]:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        return server, thread


def _shut_down(server: Server | None, thread: threading.Thread | None) -> None:
    if server is not None:
        server.stop()
    if thread is not None:
        thread.join()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port
