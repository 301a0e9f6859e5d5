"""Redis, for what the workers and instances of one deployment share (`REDIS_URL`).

Redis is an accelerator, never a dependency of an answer: every call has a short timeout, and
a failure makes the connector work without it (a cache miss, a per-process budget) for a few
seconds before it tries again, so a Redis that is down costs each request nothing and one that
comes back is used again without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)
T = TypeVar("T")
TIMEOUT = 0.1  # seconds per Redis call: a local network answers in well under 1 ms
RETRY_AFTER = 2.0  # seconds without trying once a call failed
MAX_CONNECTIONS = 64  # per process
PREFIX = "connector:"  # every key the connector writes starts with it


class PoolExhausted(redis.ConnectionError):
    """Every connection of the process's pool stayed in use for the call's whole timeout."""


class WaitingPool(redis.BlockingConnectionPool):
    """A pool whose callers wait (up to the call's timeout) for a free connection, rather than
    failing at once when all are in use as redis-py's default pool does. A storm's threads
    (a worker's request threads and its 64 section threads) outnumber the connections; the
    default pool's MaxConnectionsError counted as "Redis is down", and for 2 s every worker
    paced the space on its own share of one instance: 1.3-3.6x the rate over 4 instances
    (the cold-storm drill). Waiting also keeps within small plans' connection limits
    (Heroku Redis)."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.ConnectionError as error:
            if str(error) == "No connection available.":  # redis-py's words for a wait in vain
                raise PoolExhausted(str(error)) from None
            raise


class SharedRedis:
    def __init__(
        self,
        url: str,
        timeout: float = TIMEOUT,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
        verify_tls: bool = True,
    ) -> None:
        # Heroku's Redis answers TLS (rediss://) with a certificate of its own, which its
        # documentation says to accept unverified: REDIS_TLS_VERIFY=false.
        tls = {} if verify_tls or not url.startswith("rediss://") else {"ssl_cert_reqs": "none"}
        pool = WaitingPool.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,  # for a free connection, when all are in use
            # One immediate retry, on a new connection: a pooled one may have died with a Redis
            # restart. redis-py's default backs off for seconds, longer than a lookup may wait.
            retry=Retry(NoBackoff(), 1),
            **tls,
        )
        self.client = redis.Redis(connection_pool=pool)
        self.client.auto_close_connection_pool = True
        self.where = _where(url)  # for logs and /readyz: host and port, never a password
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = 0.0
        self.last_error: str | None = None

    @property
    def available(self) -> bool:
        """Whether calls are being made (False for a while after one failed)."""
        return self._clock() >= self._down_until

    def call(self, operation: Callable[[redis.Redis], T], default: T) -> T:
        """`operation` against Redis, or `default` when Redis is down or was a moment ago."""
        if not self.available:
            return default
        try:
            result = operation(self.client)
        except PoolExhausted:
            return default  # this process is busy, not Redis: the next call uses it again
        except redis.RedisError as error:
            self._failed(error)
            return default
        if self.last_error is not None:
            with self._lock:
                if self.last_error is not None:
                    log.warning("Redis at %s answers again", self.where)
                    self.last_error = None
        return result

    def _failed(self, error: redis.RedisError) -> None:
        with self._lock:
            first = self.last_error is None
            self.last_error = type(error).__name__
            self._down_until = self._clock() + self._retry_after
        if first:  # once per outage, not once per request
            log.warning(
                "Redis at %s is unavailable (%s): working without it, retrying every %.0f s",
                self.where,
                type(error).__name__,
                self._retry_after,
            )

    def close(self) -> None:
        self.client.close()


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
