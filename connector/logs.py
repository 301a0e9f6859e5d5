"""Logs as JSON lines, with callers as keyed hashes: no phone number, email or token in clear.

A caller appears as `h_` + an HMAC of their address, keyed by a digest of the connection's token:
the same customer hashes alike in every worker and every log line (so their lookups can be
correlated), and the hash reveals neither the address nor the token.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import hmac
import json
import logging
import logging.handlers
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

# Fields a log record may carry besides the message; anything else passed in `extra` is dropped.
FIELDS = (
    "caller",
    "kind",
    "channel",
    "outcome",
    "matched_type",
    "stale",
    "ms",
    "type",
    "message_id",
    "identified",
    "status",
    "error_code",
    "principal",
    "route",
    "method",
    "remote",
)
# Libraries that log request URLs, and so the identifiers in them, at INFO.
CHATTY = ("httpx", "httpcore", "werkzeug")


def caller_hash(address: str, token: SecretStr) -> str:
    return _keyed_hash(address, token.get_secret_value())


@functools.lru_cache(maxsize=4096)
def _keyed_hash(address: str, token: str) -> str:
    """Remembered: every lookup logs its caller twice (the lookup, the audit), and again at
    each lookup of the same call."""
    key = hashlib.sha256(b"connector-log-key:" + token.encode()).digest()
    return "h_" + hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:16]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class Batched(logging.handlers.MemoryHandler):
    """Lines kept in memory and written together: when 200 are waiting, at a warning or worse,
    every FLUSH_EVERY seconds (a thread of its own), and when the process exits.

    A lookup logs two lines (the lookup, the audit). Written one by one, each took the handler's
    lock, a write and a flush on the request's thread, and requests queued for that lock (half
    of a warm lookup's time under load, by py-spy); handed to a queue, each woke a writer thread
    and gave it the GIL. Appending to a list does neither.
    """

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(capacity=200, flushLevel=logging.WARNING, target=target)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_now_and_then, daemon=True)
        self._flusher.start()

    def _flush_now_and_then(self) -> None:
        while not self._stop.wait(FLUSH_EVERY):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        super().close()  # flushes what is left


FLUSH_EVERY = 0.2  # seconds a line may wait before it is written
_handlers: list[Batched] = []  # the one holding this process's lines


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the connector's own loggers, written in batches; URL-logging
    libraries quietened."""
    _flush_logs()
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(JsonFormatter())
    handler = Batched(writer)
    _handlers.append(handler)
    root = logging.getLogger("connector")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    quiet_libraries()


@atexit.register
def _flush_logs() -> None:
    """Every line kept before the process exits is written."""
    while _handlers:
        _handlers.pop().close()


def server_log_config() -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its own lines (boot, worker exits, errors) and anything a
    library logs are JSON lines on stderr too, so a platform's log pipeline parses every line."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "root": {"level": "WARNING", "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["json"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
        },
    }


def quiet_libraries() -> None:
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
