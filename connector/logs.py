"""Logs as JSON lines, with callers as keyed hashes: no phone number, email or token in clear.

A caller appears as `h_` + an HMAC of their address, keyed by a digest of the connection's token:
the same customer hashes alike in every worker and every log line (so their lookups can be
correlated), and the hash reveals neither the address nor the token.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import logging.handlers
import queue
import sys
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
    key = hashlib.sha256(b"connector-log-key:" + token.get_secret_value().encode()).digest()
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


class Deferred(logging.handlers.QueueHandler):
    """Hands records to a queue as they are: the listener's thread formats and writes them.

    A lookup logs two lines (the lookup, the audit); formatted and written under a handler's
    lock by the request's own thread, they made requests queue for that lock and for the GIL
    behind whichever thread held it (half of a warm lookup's time under load, by py-spy).
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


_listeners: list[logging.handlers.QueueListener] = []  # the one writing this process's lines


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the connector's own loggers, written by a thread of their own;
    URL-logging libraries quietened."""
    _flush_logs()
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(JsonFormatter())
    listener = logging.handlers.QueueListener(lines, writer)
    listener.start()
    _listeners.append(listener)
    root = logging.getLogger("connector")
    root.handlers[:] = [Deferred(lines)]
    root.setLevel(level)
    root.propagate = False
    quiet_libraries()


@atexit.register
def _flush_logs() -> None:
    """Every line queued before the process exits is written."""
    while _listeners:
        _listeners.pop().stop()


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
