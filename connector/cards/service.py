"""The card service: connection, pooled client, budget, cache and thread pool of one process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from flask import current_app

from connector.cards.addresses import Address, NoCustomer, candidates
from connector.cards.build import build_card
from connector.cards.lookup import ProfileLookup
from connector.cards.models import ProfileCard
from connector.cards.profile import ProfileData
from connector.config.holder import ConnectionHolder
from connector.config.loading import Connection
from connector.errors import (
    AuthenticationFailed,
    ProfileApiError,
    ProfileNotFound,
    SpaceNotFound,
)
from connector.logs import caller_hash
from connector.segment.client import ProfileClient, encode_identifier
from connector.segment.deadline import Deadline
from connector.state.cache import Cached, CardCache
from connector.state.rates import LocalRateBudget
from connector.writeback.events import Identity

log = logging.getLogger(__name__)
PROBE_IDENTIFIER = encode_identifier("user_id", "unified-profiles-connector-readiness-probe")
PROBE_EVERY = 10.0
SECTION_THREADS = 32


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


@dataclass(frozen=True)
class CardAnswer:
    card: ProfileCard
    status: str  # found | not_found


class CardService:
    def __init__(
        self,
        holder: ConnectionHolder,
        http: httpx.Client,
        processes: int = 1,
        delivered_since: Callable[[str, float], bool] | None = None,
    ) -> None:
        self.holder = holder
        self.http = http
        # Whether an event about a caller reached Segment since a moment: their card is then
        # out of date in every worker (the outbox file is what workers share).
        self.delivered_since = delivered_since
        self.processes = max(1, processes)
        self.executor = ThreadPoolExecutor(SECTION_THREADS, thread_name_prefix="sections")
        self._lock = threading.Lock()
        self._version = ""
        self._client: ProfileClient | None = None
        self._fingerprint = ""
        # One budget, cache and identity cache for the life of the process: an edit of the
        # connection file updates them (rate, size), never empties them (see _refresh).
        self._budget = LocalRateBudget(1.0)
        self._cache: CardCache[ProfileData | None] = CardCache(1)
        self._identities: CardCache[Identity | None] = CardCache(1)
        self._probe: tuple[float, Upstream] | None = None

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def connection(self) -> tuple[Connection, ProfileClient, CardCache[ProfileData | None]]:
        """The current connection with its client and cache, refreshed when the file changes."""
        connection = self.holder.current()
        with self._lock:
            if connection.version != self._version or self._client is None:
                self._refresh(connection)
            assert self._client is not None  # noqa: S101 - set by _refresh
            return connection, self._client, self._cache

    def _refresh(self, connection: Connection) -> None:
        """Adopt a new version of the connection: a label edit must cost Segment nothing."""
        settings = connection.file.lookup
        self._version = connection.version
        # Each worker process takes its share of the space's rate.
        self._budget.set_rate(settings.rate_limit / self.processes)
        self._client = ProfileClient(
            self.http,
            connection.profile_api_url,
            connection.file.connection.space_id,
            connection.token,
            self._budget,
        )
        lookup = ProfileLookup(self._client, connection.file, self.executor)
        self._fingerprint = lookup.fingerprint(
            connection.profile_api_url, connection.file.connection.space_id
        )
        self._cache.max_entries = self._identities.max_entries = settings.cache_size
        self._probe = None

    def _cache_key(self, address: Address) -> str:
        return f"{self._fingerprint}|{address.cache_key}"

    def card(self, address: Address, lookup_input: str, arrived: float | None = None) -> CardAnswer:
        """The card for an address; raises ProfileApiError when Segment fails and nothing is
        cached recently enough to stand in. `arrived` (monotonic) starts the lookup's deadline
        when the request arrived rather than when a thread took it."""
        connection, client, cache = self.connection()
        settings = connection.file.lookup
        deadline = Deadline(settings.timeout_seconds, started=arrived)
        lookup = ProfileLookup(client, connection.file, self.executor)

        def fetch() -> tuple[ProfileData | None, float]:
            data = lookup.fetch(address, deadline)
            complete = data is not None and not data.missing
            return data, settings.card_ttl_seconds if complete else settings.not_found_ttl_seconds

        def outdated(entry: Cached[ProfileData | None]) -> bool:
            delivered = self.delivered_since
            if delivered is None or not connection.file.writeback.enabled:
                return False  # nothing is written back: no read of the outbox on a cache hit
            return delivered(address.cache_key, entry.fetched_at.timestamp())

        started = time.monotonic()
        try:
            cached: Cached[ProfileData | None] = cache.get(
                self._cache_key(address),
                fetch,
                settings.stale_for_seconds,
                deadline.remaining(),
                outdated,
            )
        except ProfileApiError as error:
            self._log_lookup(connection, address, "unavailable", started, error_code=error.code)
            raise
        card = build_card(
            connection.file,
            lookup_input,
            cached.value,
            cached.fetched_at,
            datetime.now(UTC),
            cached.stale,
        )
        answer = CardAnswer(card, "found" if card.found else "not_found")
        self._log_lookup(
            connection,
            address,
            answer.status,
            started,
            stale=cached.stale,
            matched_type=card.lookup.identifier.partition(":")[0]
            if card.lookup.identifier
            else None,
        )
        return answer

    def no_customer(self, caller: NoCustomer, lookup_input: str) -> CardAnswer:
        """The "not found" card of a withheld or non-customer caller: Segment is not asked."""
        connection = self.holder.current()
        now = datetime.now(UTC)
        card = build_card(connection.file, lookup_input, None, now, now, reason=caller.reason)
        log.info(
            "lookup",
            extra={
                "caller": caller_hash(caller.key(lookup_input), connection.token),
                "kind": None,
                "channel": None,
                "outcome": "not_found",
                "reason": caller.reason,
                "ms": 0.0,
            },
        )
        return CardAnswer(card, "not_found")

    @staticmethod
    def _log_lookup(
        connection: Connection, address: Address, outcome: str, started: float, **fields: object
    ) -> None:
        """One line per lookup; the caller only as a keyed hash (see connector.logs)."""
        log.info(
            "lookup",
            extra={
                "caller": caller_hash(address.cache_key, connection.token),
                "kind": address.kind,
                "channel": address.channel,
                "outcome": outcome,
                "ms": round((time.monotonic() - started) * 1000, 1),
                **fields,
            },
        )

    def identity(self, address: Address, arrived: float | None = None) -> Identity | None:
        """Who an event is about: the first candidate Segment knows, with its user_id if any.

        Cached like cards (a caller's events come in bursts: one conversation, many events), so
        write-back does not spend the space's request budget on every event.
        """
        connection, client, _ = self.connection()
        with self._lock:
            identities = self._identities
        settings = connection.file.lookup
        deadline = Deadline(settings.timeout_seconds, started=arrived)

        def fetch() -> tuple[Identity | None, float]:
            found = self._find_identity(client, connection, address, deadline)
            return found, settings.card_ttl_seconds if found else settings.not_found_ttl_seconds

        return identities.get(
            self._cache_key(address), fetch, settings.stale_for_seconds, deadline.remaining()
        ).value

    @staticmethod
    def _find_identity(
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

    def probe(self, fresh: bool = False) -> Upstream:
        """Whether the space answers with this token (cached for a few seconds for /readyz)."""
        _, client, _ = self.connection()
        with self._lock:
            if not fresh and self._probe and time.monotonic() - self._probe[0] < PROBE_EVERY:
                return self._probe[1]
        try:
            client.get("users", PROBE_IDENTIFIER, "metadata", Deadline(3.0))
            result = Upstream(True, True, "the space answered")
        except ProfileNotFound as error:  # the space exists and took the token: no such profile
            result = Upstream(True, True, "the space answered", error.request_id)
        except SpaceNotFound as error:
            result = Upstream(True, None, error.public_message, error.request_id, error.code)
        except AuthenticationFailed as error:
            result = Upstream(True, False, error.public_message, error.request_id, error.code)
        except ProfileApiError as error:
            result = Upstream(
                False, None, error.public_message, error.request_id, error.code, error.message
            )
        with self._lock:
            self._probe = (time.monotonic(), result)
        return result

    def cache_stats(self) -> dict[str, int]:
        _, _, cache = self.connection()
        return {
            "entries": len(cache),
            "hits": cache.hits,
            "misses": cache.misses,
            "stale_served": cache.stale_served,
        }


def current_service() -> CardService:
    """The CardService of the app handling the current request."""
    service: CardService = current_app.extensions["cards"]
    return service
