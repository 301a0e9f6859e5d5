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

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask

from connector.serving.bridge import BridgeLimits, WsgiBridge
from connector.serving.loopback import free_port
from connector.serving.processes import ServedProcess, command_process
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


# gunicorn's arguments for each way of serving the floor, by the name the benchmarks print.
FLOORS = {
    "floor (the connector's front)": ["-k", "asgi", "bench.floor:bridged"],
    "floor (gthread, 32 threads)": ["-k", "gthread", "--threads", str(THREADS), "bench.floor:app"],
}


@contextmanager
def floor_served(served: list[str], workers: int) -> Iterator[ServedProcess]:
    """The floor under gunicorn with `workers` workers until the block ends; POST or GET /floor."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers)]
    command += ["--bind", f"127.0.0.1:{port}", *served]
    with command_process(command, {}, f"http://127.0.0.1:{port}") as floor:
        yield floor
