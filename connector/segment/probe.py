"""Whether the space answers with this token: `/readyz` and `connector check` ask it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from connector.config.loading import Connection
from connector.errors import AuthenticationFailed, ProfileApiError, ProfileNotFound, SpaceNotFound
from connector.segment.api import ProfileApi
from connector.segment.client import encode_identifier
from connector.segment.deadline import Deadline

PROBE_IDENTIFIER = encode_identifier("user_id", "unified-profiles-connector-readiness-probe")
PROBE_EVERY = 10.0  # seconds an answer is reused: probes every second must not cost Segment
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class Upstream:
    """What one request to the Profile API proved about the space and the token."""

    reachable: bool
    token_accepted: bool | None
    detail: str
    request_id: str | None = None
    code: str | None = None  # what failed, as the API names it (space_not_found, token_refused)
    cause: str | None = None  # our own words for it, for the admin (`connector check`)

    @property
    def ok(self) -> bool:
        return self.reachable and self.token_accepted is True


class ReadinessProbe:
    def __init__(self, api: ProfileApi) -> None:
        self._api = api
        self._lock = threading.Lock()
        self._last: tuple[str, float, Upstream] | None = None  # version, when, answer

    def check(self, connection: Connection, fresh: bool = False) -> Upstream:
        """Asks Segment for a profile that cannot exist: a 404 proves space and token good."""
        with self._lock:
            last = self._last
        recent = last and last[0] == connection.version and time.monotonic() - last[1] < PROBE_EVERY
        if last and recent and not fresh:
            return last[2]
        result = self._ask(connection)
        with self._lock:
            self._last = (connection.version, time.monotonic(), result)
        return result

    def _ask(self, connection: Connection) -> Upstream:
        client = self._api.client(connection)
        try:
            client.get("users", PROBE_IDENTIFIER, "metadata", Deadline(PROBE_TIMEOUT))
        except ProfileNotFound as error:  # the space exists and took the token: no such profile
            return Upstream(True, True, "the space answered", error.request_id)
        except SpaceNotFound as error:
            return Upstream(True, None, error.public_message, error.request_id, error.code)
        except AuthenticationFailed as error:
            return Upstream(True, False, error.public_message, error.request_id, error.code)
        except ProfileApiError as error:
            return Upstream(
                False, None, error.public_message, error.request_id, error.code, error.message
            )
        return Upstream(True, True, "the space answered")
