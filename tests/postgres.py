"""PostgreSQL for tests: a fresh schema per test (dropped after), and a proxy to cut it off.

The server is `TEST_DATABASE_URL`, else `DATABASE_URL`, else the local one `.ci/run` starts.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from connector.serving.loopback import free_port

BASE_URL = (
    os.environ.get("TEST_DATABASE_URL")
    or os.environ.get("DATABASE_URL")
    or "postgresql://postgres@127.0.0.1:5432/test"
)


def with_search_path(url: str, schema: str) -> str:
    """`url` whose connections use `schema` (libpq's `options`)."""
    parts = urlsplit(url)
    option = "options=" + quote(f"-c search_path={schema}")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition(":")[0] if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL whose tables live in a new, empty schema; the schema is dropped afterwards."""
    name = f"outbox_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield with_search_path(BASE_URL, name)
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def closed_port_url() -> str:
    """A PostgreSQL URL nothing listens at: connections are refused at once."""
    return with_port(BASE_URL, free_port())


class TcpProxy:
    """Forwards a local port to the database; `cut()` drops every connection and refuses new
    ones (the database "goes down"), `restore()` listens again on the same port."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._target_url = target_url
        self.port = 0  # the system's choice at the first restore(), then the same again
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return with_port(self._target_url, self.port)

    def restore(self) -> TcpProxy:
        for _ in range(50):  # the old listener's port, once the kernel lets it go
            try:
                listener = socket.create_server(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"port {self.port} did not come free")
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                with suppress(OSError):  # wakes the thread blocked in accept(), which close()
                    self._listener.shutdown(socket.SHUT_RDWR)  # alone would leave listening
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
