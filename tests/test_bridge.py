"""The asyncio front (connector.serving.bridge), driven as an ASGI app: no server, no sockets."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from connector.serving.bridge import BridgeLimits, WsgiBridge
from connector.web.fields import ARRIVED

Environ = dict[str, Any]


def echo_app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI app that reports what it was given."""
    body = environ["wsgi.input"].read()
    seen = {
        "path": environ["PATH_INFO"],
        "raw_uri": environ["RAW_URI"],
        "query": environ["QUERY_STRING"],
        "content_length": environ["CONTENT_LENGTH"],
        "forwarded": environ.get("HTTP_X_FORWARDED_FOR"),
        "body": body.decode(),
        "waited": time.monotonic() - environ[ARRIVED],
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


def bridge(app: Callable[..., Iterable[bytes]] = echo_app, **limits: Any) -> WsgiBridge:
    settings: dict[str, Any] = {"threads": 2, "max_body": 1024, "deadline": lambda: 1.0}
    return WsgiBridge(app, BridgeLimits(**{**settings, **limits}))


def call(
    front: WsgiBridge,
    path: str = "/v1/cards",
    method: str = "GET",
    chunks: tuple[bytes, ...] = (b"",),
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
) -> tuple[int, dict[bytes, bytes], bytes]:
    return asyncio.run(_call(front, path, method, chunks, headers or [], query))


async def _call(
    front: WsgiBridge,
    path: str,
    method: str,
    chunks: tuple[bytes, ...],
    headers: list[tuple[bytes, bytes]],
    query: bytes,
) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
    }
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await front(scope, receive, send)
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


def test_a_request_reaches_the_wsgi_app_with_its_raw_target_and_whole_body() -> None:
    status, _, body = call(
        bridge(),
        path="/v1/cards",
        method="POST",
        chunks=(b"From=%2B1", b"4155550123"),
        headers=[
            (b"x_forwarded_for", b"6.6.6.6"),  # would pose as X-Forwarded-For: dropped
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"transfer-encoding", b"chunked"),
        ],
        query=b"bodySHA256=abc%2B",
    )
    seen = json.loads(body)
    assert status == 200
    # The raw target, as Twilio signed it: `%2B` stays escaped.
    assert seen["raw_uri"] == "/v1/cards?bodySHA256=abc%2B"
    assert seen["body"] == "From=%2B14155550123" and seen["content_length"] == "19"
    assert seen["forwarded"] == "10.0.0.1"


def test_bodies_over_the_limit_are_413s_whatever_their_framing() -> None:
    declared = call(bridge(), method="POST", headers=[(b"content-length", b"5000")])
    chunked = call(bridge(), method="POST", chunks=(b"x" * 600, b"y" * 600))
    for status, headers, body in (declared, chunked):
        assert status == 413 and headers[b"content-type"] == b"application/json"
        assert json.loads(body)["error"]["code"] == "invalid_request_error"


def test_the_fronts_own_answers_carry_the_apps_cors() -> None:
    """A Flex plugin reads a 413 (or an overloaded 503) like any other error: the front's own
    answers allow the connection's origins, and only those."""
    flex = "https://flex.twilio.com"
    front = bridge(allowed_origins=lambda: [flex])
    too_big = [(b"content-length", b"5000")]
    status, headers, _ = call(front, method="POST", headers=[*too_big, (b"origin", flex.encode())])
    assert status == 413 and headers[b"access-control-allow-origin"] == flex.encode()
    assert b"Retry-After" in headers[b"access-control-expose-headers"]
    assert headers[b"vary"] == b"Origin"
    elsewhere = [*too_big, (b"origin", b"https://evil.example")]
    status, headers, _ = call(front, method="POST", headers=elsewhere)
    assert status == 413 and b"access-control-allow-origin" not in headers


def test_healthz_is_answered_by_the_front_even_when_every_thread_is_busy() -> None:
    release = threading.Event()

    def stuck(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        release.wait(5)
        start_response("200 OK", [])
        return [b""]

    front = bridge(stuck, threads=1)

    async def scenario() -> tuple[float, int]:
        busy = asyncio.ensure_future(_call(front, "/v1/cards", "GET", (b"",), [], b""))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        status = (await _call(front, "/healthz", "GET", (b"",), [], b""))[0]
        elapsed = time.monotonic() - started
        release.set()
        await busy
        return elapsed, status

    elapsed, status = asyncio.run(scenario())
    assert status == 200 and elapsed < 0.1


def test_a_request_still_queued_at_its_deadline_is_answered_at_once() -> None:
    """The deadline counts from arrival: a request that waited for a thread until its deadline
    passed gets a typed answer then, not a late one after its turn came."""
    release = threading.Event()

    def slow(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        release.wait(3)
        start_response("200 OK", [])
        return [b"{}"]

    front = bridge(slow, threads=1, deadline=lambda: 0.3)

    async def scenario() -> list[tuple[int, dict[bytes, bytes], bytes, float]]:
        async def timed(path: str) -> tuple[int, dict[bytes, bytes], bytes, float]:
            started = time.monotonic()
            status, headers, body = await _call(front, path, "POST", (b"",), [], b"")
            return status, headers, body, time.monotonic() - started

        first = asyncio.ensure_future(timed("/v1/cards"))
        await asyncio.sleep(0.02)
        queued = await asyncio.gather(timed("/v1/cards"), timed("/v1/studio/lookup"))
        release.set()
        return [*queued, await first]

    card, studio, first = asyncio.run(scenario())
    assert card[0] == 503 and card[1][b"retry-after"] == b"1" and card[3] < 0.6
    assert json.loads(card[2])["error"]["code"] == "overloaded"
    # Studio takes its Fail path on any non-2xx: it gets the degraded answer it can branch on.
    assert studio[0] == 200 and studio[3] < 0.6
    assert json.loads(studio[2]) | {"message": ""} == {
        "found": False,
        "status": "unavailable",
        "reason": "overloaded",
        "message": "",
    }
    assert first[0] == 200  # the request a thread had taken is answered in full


def test_past_capacity_requests_are_shed_without_waiting() -> None:
    release = threading.Event()

    def slow(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        release.wait(3)
        start_response("200 OK", [])
        return [b"{}"]

    flex = "https://flex.twilio.com"
    front = bridge(
        slow, threads=1, max_queued=2, deadline=lambda: 5.0, allowed_origins=lambda: [flex]
    )

    async def scenario() -> tuple[int, dict[bytes, bytes], float]:
        waiting = []
        for count in (1, 2):  # one on the thread, then two waiting for it
            for _ in range(count):
                waiting.append(
                    asyncio.ensure_future(_call(front, "/v1/cards", "GET", (b"",), [], b""))
                )
            await asyncio.sleep(0.05)
        started = time.monotonic()
        origin = [(b"origin", flex.encode())]
        status, headers, _ = await _call(front, "/v1/cards", "GET", (b"",), origin, b"")
        elapsed = time.monotonic() - started
        release.set()
        await asyncio.gather(*waiting)
        return status, headers, elapsed

    status, headers, elapsed = asyncio.run(scenario())
    assert status == 503 and elapsed < 0.1
    assert headers[b"access-control-allow-origin"] == flex.encode()  # a plugin reads Retry-After
