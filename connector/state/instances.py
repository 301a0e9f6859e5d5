"""Which connection version each instance serves, as `/readyz` reports it.

Each instance's workers note their version in Redis when `/readyz` asks (a load balancer or
Kubernetes asks every few seconds), under a key that expires a minute later: an instance that
stopped answering drops out of the list by itself.
"""

from __future__ import annotations

import json
import os
import socket
import time

from redis import Redis

from connector.state.redis import PREFIX, SharedRedis

SEEN_FOR = 60  # seconds an instance stays listed after it last answered /readyz
KEYS = f"{PREFIX}instance:"


def this_instance() -> str:
    """The host and the gunicorn master (the workers' parent): one name per instance."""
    return f"{socket.gethostname()}/{os.getppid()}"


class InstanceVersions:
    def __init__(self, shared: SharedRedis, instance: str | None = None) -> None:
        self._shared = shared
        self.instance = instance or this_instance()

    def publish(self, version: str) -> None:
        record = json.dumps({"version": version, "at": time.time()})
        self._shared.call(lambda r: r.set(KEYS + self.instance, record, ex=SEEN_FOR), None)

    def seen(self) -> dict[str, str] | None:
        """Instance -> version for every instance seen within the last minute; None without
        Redis."""
        records = self.records()
        return None if records is None else {name: r[0] for name, r in records.items()}

    def records(self) -> dict[str, tuple[str, float]] | None:
        """Instance -> (version, when it last answered /readyz, epoch seconds); None without
        Redis."""

        def read(client: Redis) -> dict[str, tuple[str, float]]:
            keys = list(client.scan_iter(f"{KEYS}*", count=100))
            values: list[bytes | None] = list(client.mget(keys)) if keys else []  # type: ignore[arg-type]
            found = {}
            for key, value in zip(keys, values, strict=True):
                if value is not None:
                    name = (key.decode() if isinstance(key, bytes) else str(key))[len(KEYS) :]
                    record = json.loads(value)
                    found[name] = (str(record["version"]), float(record.get("at", 0.0)))
            return found

        return self._shared.call(read, None)
