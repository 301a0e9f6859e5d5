"""The process's one TLS context for outgoing HTTPS (Segment's APIs, Twilio's).

Building a context reads the whole CA bundle: about 50 ms of CPU and a few MB each time, and
httpx builds one for every client it is not given one. Every client of a process shares this one
instead (a context is safe to share between threads and connections). httpx's own choice of
certificates is kept: SSL_CERT_FILE or SSL_CERT_DIR when set, else certifi's bundle.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
