"""The floor: a bare Flask app (one route returning a small JSON object), served two ways.

No Python service on this machine answers faster than it under the same load, so the
connector's warm lookups and event acceptance are measured beside it:

- `bridged`: behind the connector's own front (gunicorn's asgi worker and `WsgiBridge`), the
  settings `connector serve` uses;
- `app`: under gunicorn's gthread worker, the usual way to serve Flask.

    python -m gunicorn -w 2 -k asgi --bind 127.0.0.1:9000 bench.floor:bridged
    python -m gunicorn -w 2 -k gthread --threads 32 --bind 127.0.0.1:9001 bench.floor:app
"""

from __future__ import annotations

from flask import Flask

from connector.serving.bridge import BridgeLimits, WsgiBridge
from connector.web.fields import MAX_BODY_BYTES

THREADS = 32  # as connector_bench serves the connector

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> dict[str, object]:
    return {"status": "ok"}


@app.route("/floor", methods=["GET", "POST"])
def floor() -> dict[str, object]:
    return {"found": True, "status": "ok"}


bridged = WsgiBridge(
    app, BridgeLimits(threads=THREADS, max_body=MAX_BODY_BYTES, deadline=lambda: 4.0)
)
