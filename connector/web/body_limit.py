"""Every request body held to one limit, whatever its framing (WSGI middleware).

Flask checks `MAX_CONTENT_LENGTH` against the Content-Length header. A chunked body has none:
Werkzeug then reads it through a stream capped at the limit, and a parser that stops at the cap
sees a body cut short instead of refusing it. So a body without Content-Length is read here,
up to one byte past the limit, and handed on with the Content-Length it turned out to have: the
app refuses an oversize body with the same 413 as one that declared its size (in Segment's shape,
with CORS and audit like every answer), and accepts a smaller one whole. It works the same under
cheroot (tests) and gunicorn, which both de-chunk `wsgi.input`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import InputStream, StartResponse, WSGIApplication, WSGIEnvironment

READ_SIZE = 16 * 1024


class BodyLimit:
    def __init__(self, app: WSGIApplication, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if _has_unsized_body(environ):
            body = _read_up_to(environ["wsgi.input"], self.limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))  # over the limit: the app's usual 413
            environ["wsgi.input_terminated"] = True  # a BytesIO ends where the body does
            del environ["HTTP_TRANSFER_ENCODING"]  # Werkzeug ignores the length of chunked bodies
        return self.app(environ, start_response)


def _has_unsized_body(environ: WSGIEnvironment) -> bool:
    # HTTP/1.1 frames a request body by Content-Length or by Transfer-Encoding, nothing else: a
    # request with neither has no body, and reading it would wait for bytes that never come.
    return not environ.get("CONTENT_LENGTH") and bool(environ.get("HTTP_TRANSFER_ENCODING"))


def _read_up_to(stream: InputStream, size: int) -> bytes:
    """At most `size` bytes: a stream's read(n) may return fewer before its end."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        part = stream.read(min(READ_SIZE, remaining))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)
