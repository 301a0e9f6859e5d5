"""Who an event is about: the first candidate identifier Segment knows, with its user_id.

Cached like cards (a caller's events come in bursts: one conversation, many events), so
write-back does not spend the space's request budget on every event.
"""

from __future__ import annotations

from connector.cards.addresses import Address, candidates
from connector.config.loading import Connection
from connector.errors import ProfileNotFound, RateLimited, UpstreamUnavailable
from connector.segment.api import ProfileApi
from connector.segment.client import ProfileClient, encode_identifier
from connector.segment.deadline import Deadline
from connector.state.cache import SingleFlightCache
from connector.writeback.events import Identity


class CallerIdentities:
    def __init__(self, api: ProfileApi) -> None:
        self._api = api
        self._cache: SingleFlightCache[Identity | None] = SingleFlightCache(1)
        self._depends = ("", 0)  # (version, what identities depend on) of the last connection

    def identify(
        self, connection: Connection, address: Address, arrived: float | None = None
    ) -> tuple[Identity | None, bool]:
        """The caller's identity and whether Segment said so. None when no profile matches.

        When Segment cannot say right now, the event is keyed by the caller's first identifier
        rather than lost (Segment's identity resolution attaches it to the profile). A missing
        space or a refused token is not "right now": those raise, a 503 the client retries
        once the admin has fixed the connection.
        """
        settings = connection.file.lookup
        deadline = Deadline(settings.timeout_seconds, started=arrived)
        client = self._api.client(connection)

        def fetch() -> tuple[Identity | None, float]:
            found = _find(client, connection, address, deadline)
            return found, settings.card_ttl_seconds if found else settings.not_found_ttl_seconds

        key = f"{self._depends_of(connection)}|{address.cache_key}"
        try:
            cached = self._cache.get(key, fetch, settings.stale_for_seconds, deadline.remaining())
        except (UpstreamUnavailable, RateLimited):
            return Identity(None, candidates(address, settings)[0]), False
        return cached.value, True

    def _depends_of(self, connection: Connection) -> int:
        """What identities depend on, worked out (and the cache sized) once per version."""
        version, depends = self._depends
        if version != connection.version:
            self._cache.resize(connection.file.lookup.cache_size)
            depends = _depends_on(connection)
            self._depends = (connection.version, depends)  # one tuple: atomic swap
        return depends


def _depends_on(connection: Connection) -> int:
    """What an identity depends on: the space, and which identifiers are tried in what form."""
    lookup = connection.file.lookup
    return hash(
        (
            connection.profile_api_url,
            connection.file.connection.space_id,
            *lookup.phone_identifiers,
            "|",
            *lookup.phone_formats,
            "|",
            *lookup.email_identifiers,
        )
    )


def _find(
    client: ProfileClient, connection: Connection, address: Address, deadline: Deadline
) -> Identity | None:
    for candidate in candidates(address, connection.file.lookup):
        try:
            body = client.get(
                "users",
                encode_identifier(candidate.type, candidate.value),
                "external_ids",
                deadline,
                {"include": "user_id", "limit": "1"},
            )
        except ProfileNotFound:
            continue
        user_ids = [e.get("id") for e in body.get("data") or [] if isinstance(e, dict)]
        user_id = next((u for u in user_ids if isinstance(u, str)), None)
        return Identity(user_id, candidate)
    return None
