"""The connector's WSGI app behind an asyncio front (gunicorn's `asgi` worker).

gthread workers hand a connection to a thread as soon as its first bytes arrive; a client that
then trickles its headers (one line every few seconds) holds that thread, and 64 of them stop all
service. Here the event loop reads every request whole (headers and body, the body bounded
whatever its framing) at no cost per slow client; only a complete request takes a thread.

The loop also keeps the promises a contact centre relies on:
- `/healthz` is answered on the loop, so a liveness probe never waits behind busy threads;
- a request's deadline starts when it arrives (`connector.arrived` in the environ), not when a
  thread picks it up, and a request still queued when that deadline passes is answered on the
  loop with a typed "unavailable" instead of waiting its turn;
- past capacity (`max_queued` waiting for a thread), requests are shed at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from connector.web.fields import ARRIVED
from connector.web.handlers import cors_headers

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WSGIApp = Callable[..., Iterable[bytes]]
Headers = list[tuple[bytes, bytes]]

STUDIO_PATH = "/v1/studio/lookup"
JSON = (b"content-type", b"application/json")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Headers
    body: bytes


class BridgeLimits:
    """How much the front lets through; `deadline` is read per request (it follows the
    connection file's `lookup.timeout_seconds`)."""

    def __init__(
        self,
        *,
        threads: int,
        max_body: int,
        deadline: Callable[[], float],
        max_queued: int | None = None,
        body_timeout: float = 10.0,
        grace: float = 0.3,
        allowed_origins: Callable[[], Collection[str]] = tuple,
    ) -> None:
        self.threads = threads
        self.max_body = max_body
        self.allowed_origins = allowed_origins  # read per answer: it follows the file
        self.deadline = deadline
        self.max_queued = max_queued if max_queued is not None else threads * 8
        self.body_timeout = body_timeout
        self.grace = grace  # beyond the deadline, for a thread already answering


class WsgiBridge:
    """An ASGI application that runs a WSGI app in a bounded thread pool."""

    def __init__(
        self, app: WSGIApp, limits: BridgeLimits, on_shutdown: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.limits = limits
        self.on_shutdown = on_shutdown
        self.executor = ThreadPoolExecutor(limits.threads, thread_name_prefix="wsgi")
        self.in_flight = 0  # requests given to the pool and not answered; only the loop counts
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        arrived = time.monotonic()
        if scope["path"] == "/healthz" and scope["method"] in ("GET", "HEAD"):
            await _send(send, Reply(200, [JSON], b'{"status":"ok"}'))
            return
        body = await self._read_body(scope, receive)
        if isinstance(body, Reply):
            await _send(send, self._cors(scope, body))
            return
        await _send(send, await self._dispatch(scope, body, arrived))

    def _cors(self, scope: Scope, reply: Reply) -> Reply:
        """The app's CORS on an answer the front gives by itself (413, 408, 503 overloaded): a
        Flex plugin reads its message and Retry-After, not a browser's opaque network error."""
        origin = _header(scope, b"origin")
        given = origin.decode("latin-1") if origin else None
        headers = cors_headers(given, self.limits.allowed_origins())
        extra = [(b"vary", b"Origin")]
        extra += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        return Reply(reply.status, [*reply.headers, *extra], reply.body)

    async def _dispatch(self, scope: Scope, body: bytes, arrived: float) -> Reply:
        if self.in_flight >= self.limits.threads + self.limits.max_queued:
            self.shed += 1
            return self._cors(scope, overloaded(scope["path"], "The connector is at capacity"))
        future = self.executor.submit(call_wsgi, self.app, wsgi_environ(scope, body, arrived))
        job = asyncio.wrap_future(future)
        self.in_flight += 1
        try:
            budget = max(0.0, arrived + self.limits.deadline() - time.monotonic())
            done, _ = await asyncio.wait({job}, timeout=budget)
            if not done and future.cancel():
                # Its deadline passed while it waited for a thread (a running one cannot be
                # cancelled, and honours the deadline itself): answering now beats answering late.
                self.shed += 1
                why = "The connector could not take this request in time"
                return self._cors(scope, overloaded(scope["path"], why))
            return await job
        finally:
            self.in_flight -= 1

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | Reply:
        """The whole body, read on the loop; a 413 past the limit whatever the framing."""
        declared = _content_length(scope)
        if declared is not None and declared > self.limits.max_body:
            return too_large(self.limits.max_body)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limits.max_body:
                        return too_large(self.limits.max_body)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return error_reply(408, "invalid_request_error", "The request body came too slowly.")
        return b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.executor.shutdown(wait=False, cancel_futures=True)
                if self.on_shutdown is not None:  # the drainer's batch in flight ends first
                    await asyncio.get_running_loop().run_in_executor(None, self.on_shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return


def call_wsgi(app: WSGIApp, environ: dict[str, Any]) -> Reply:
    """Run the WSGI app to completion in this thread (our answers are small and whole)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return lambda data: None  # the legacy write() callable; Flask never uses it

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started
    encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    return Reply(int(status.split(" ", 1)[0]), encoded, body)


def wsgi_environ(scope: Scope, body: bytes, arrived: float) -> dict[str, Any]:
    """PEP 3333's environ for an ASGI HTTP scope whose body has been read whole."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    path = scope.get("root_path", "") + scope["path"]
    query = scope.get("query_string", b"")
    raw_path = scope.get("raw_path")
    target = (raw_path.decode("latin-1") if raw_path else path) + (
        f"?{query.decode('latin-1')}" if query else ""
    )
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "RAW_URI": target,
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0] if client else "",
        "REMOTE_PORT": str(client[1]) if client else "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        ARRIVED: arrived,
    }
    for raw_name, raw_value in scope.get("headers", []):
        if b"_" in raw_name:
            # X_Forwarded_For would land on the same key as X-Forwarded-For: dropped, as
            # gunicorn's WSGI workers drop it, so no header can pose as another.
            continue
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is whole now: CONTENT_LENGTH above tells its size
        key = f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    """A request header's value (`wanted` in lowercase), or None."""
    for name, value in scope.get("headers", []):
        if name.lower() == wanted:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


async def _send(send: Send, reply: Reply) -> None:
    headers = [h for h in reply.headers if h[0] != b"content-length"]
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def error_reply(status: int, code: str, message: str, headers: Headers | None = None) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Reply(status, [JSON, *(headers or [])], body)


def too_large(limit: int) -> Reply:
    return error_reply(
        413, "invalid_request_error", f"The request body is larger than {limit // 1024} KB."
    )


def overloaded(path: str, why: str) -> Reply:
    """Studio branches on `status` and takes its Fail path on any non-2xx: it gets a 200
    `unavailable` like any other degraded lookup; everyone else a 503 with Retry-After."""
    message = f"{why}; try again shortly."
    if path == STUDIO_PATH:
        body = {"found": False, "status": "unavailable", "reason": "overloaded", "message": message}
        return Reply(200, [JSON], json.dumps(body).encode())
    return error_reply(503, "overloaded", message, [(b"retry-after", b"1")])
