"""Cards for callers: the lookup behind a single-flight, stale-on-error cache, one log line each."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from cachetools import LRUCache

from connector.cards.addresses import Address, NoCustomer, profile_addresses
from connector.cards.build import card_body, for_request
from connector.cards.lookup import ProfileLookup
from connector.cards.masking import MaskRules, View
from connector.cards.models import ProfileCard
from connector.cards.profile import ProfileData
from connector.config.loading import Connection
from connector.errors import OutboxUnavailable, ProfileApiError
from connector.logs import caller_hash
from connector.metrics import figures
from connector.segment.api import ProfileApi
from connector.segment.deadline import Deadline
from connector.state.cache import Cached, SharedTier, SingleFlightCache
from connector.state.deliveries import DeliveredSince

log = logging.getLogger(__name__)
BODIES_KEPT = 1024  # card bodies kept built: the callers of the last minutes
SECTION_THREADS = 64  # a cold card asks for 6 sections at once; lookups run 32 at a time or more
# The segment_ids agents said are not a caller's (by cache key): the interaction ledger's unlinks.
Unlinked = Callable[[str], frozenset[str]]


@dataclass(frozen=True)
class CardAnswer:
    card: ProfileCard
    status: str  # found | not_found
    data: ProfileData | None = None  # what the card was built from (the history reads it)


class CardService:
    def __init__(
        self,
        api: ProfileApi,
        delivered_since: DeliveredSince | None = None,
        shared: SharedTier[ProfileData | None] | None = None,
        unlinked: Unlinked | None = None,
    ) -> None:
        self._api = api
        # Asked once per fetch of a caller's card, not per lookup: the answer is kept beside
        # the card (see _unlinked_from), and whatever makes the card out of date (an unlink
        # here, or one in another worker: delivered_since) makes it be asked again.
        self._unlinked = unlinked
        self._unlinks: LRUCache[str, tuple[datetime, frozenset[str]]] = LRUCache(BODIES_KEPT)
        # The addresses of each fetched profile (see _subjects), worked out once per fetch.
        self._subjects_of: LRUCache[tuple[str, datetime], tuple[str, ...]] = LRUCache(BODIES_KEPT)
        # An event delivered about a caller makes their card out of date in every worker (the
        # outbox, or Redis, is what workers share), under each of their addresses.
        self._delivered_since = delivered_since
        self.executor = ThreadPoolExecutor(SECTION_THREADS, thread_name_prefix="sections")
        # Bodies of cards served lately, as each view of the masks reads them (see _body);
        # cachetools' caches need a lock of ours.
        self._bodies: LRUCache[tuple[str, str, datetime, View], ProfileCard] = LRUCache(BODIES_KEPT)
        self._bodies_lock = threading.Lock()
        # One cache for the life of the process: an edit of the connection file resizes it,
        # never empties it (see `cache_key`).
        # With a shared tier (REDIS_URL), every worker and instance reads the cards the others
        # fetched, and one of them fetches for all.
        self.cache: SingleFlightCache[ProfileData | None] = SingleFlightCache(
            1, shared=shared, counted=lambda hit: figures().card_cache(hit)
        )
        self._fingerprint = ("", "")  # (version, fingerprint) of the connection last seen
        self._masks: tuple[str, MaskRules] | None = None  # (version, its masks), last seen

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def lookup(self, connection: Connection) -> ProfileLookup:
        return ProfileLookup(self._api.client(connection), connection.file, self.executor)

    def cache_key(self, connection: Connection, address: Address) -> str:
        """Cards are cached under what their data depends on (ProfileLookup.fingerprint), so an
        edit of labels keeps every cached card and an edit of what is fetched leaves them."""
        version, fingerprint = self._fingerprint
        if version != connection.version:  # a new version of the file: its size, its key
            self.cache.resize(connection.file.lookup.cache_size)
            fingerprint = self.lookup(connection).fingerprint(
                connection.profile_api_url, connection.file.connection.space_id
            )
            self._fingerprint = (connection.version, fingerprint)  # one tuple: atomic swap
        return f"{fingerprint}|{address.cache_key}"

    def card(
        self,
        connection: Connection,
        address: Address,
        lookup_input: str,
        arrived: float | None = None,
        reader_roles: frozenset[str] = frozenset(),
    ) -> CardAnswer:
        """The card for an address, masked for a reader with `reader_roles` (a Studio flow
        has none: every mask applies); raises ProfileApiError when Segment fails and nothing is
        cached recently enough to stand in. `arrived` (monotonic) starts the lookup's deadline
        when the request arrived rather than when a thread took it."""
        settings = connection.file.lookup
        deadline = Deadline(settings.timeout_seconds, started=arrived)
        lookup = self.lookup(connection)

        def fetch() -> tuple[ProfileData | None, float]:
            data = lookup.fetch(address, deadline)
            complete = data is not None and not data.missing
            return data, settings.card_ttl_seconds if complete else settings.not_found_ttl_seconds

        def outdated(entry: Cached[ProfileData | None]) -> bool:
            delivered = self._delivered_since
            if delivered is None or not connection.file.writeback.enabled:
                return False  # nothing is written back: no read of the outbox on a cache hit
            try:
                return delivered(
                    self._subjects(connection, address, entry), entry.fetched_at.timestamp()
                )
            except OutboxUnavailable:  # the outbox's database is down: the lookup goes on
                return False  # (nothing is being delivered while it is down either)

        started = time.monotonic()
        try:
            cache_key = self.cache_key(connection, address)
            cached = self.cache.get(
                cache_key,
                fetch,
                settings.stale_for_seconds,
                deadline.remaining(),
                outdated,
            )
        except ProfileApiError as error:
            _log_lookup(connection, address, "unavailable", started, error_code=error.code)
            raise
        if self._unlinked_from(address, cached):
            card = for_request(
                card_body(connection.file, None),
                lookup_input,
                None,
                cached.fetched_at,
                datetime.now(UTC),
                reason="unlinked",
            )
            _log_lookup(connection, address, "not_found", started, reason="unlinked")
            return CardAnswer(card, "not_found")
        card = for_request(
            self._body(connection, cache_key, cached, reader_roles),
            lookup_input,
            cached.value,
            cached.fetched_at,
            datetime.now(UTC),
            cached.stale,
        )
        answer = CardAnswer(card, "found" if card.found else "not_found", cached.value)
        matched = card.lookup.identifier
        _log_lookup(
            connection,
            address,
            answer.status,
            started,
            stale=cached.stale,
            matched_type=matched.partition(":")[0] if matched else None,
        )
        return answer

    def _subjects(
        self, connection: Connection, address: Address, entry: Cached[ProfileData | None]
    ) -> tuple[str, ...]:
        """The caller's cache key, and those of every other address their profile has: an event
        written back through any of them (a call by phone, then a chat by email) makes this
        card out of date, whichever worker or instance delivered it."""
        data = entry.value
        if data is None or not data.external_ids:
            return (address.cache_key,)
        key = (address.cache_key, entry.fetched_at)
        with self._bodies_lock:
            known = self._subjects_of.get(key)
        if known is None:
            found = profile_addresses(data.external_ids, connection.file.lookup)
            known = tuple(dict.fromkeys((address.cache_key, *found)))
            with self._bodies_lock:
                self._subjects_of[key] = known
        return known

    def _unlinked_from(self, address: Address, cached: Cached[ProfileData | None]) -> bool:
        """Whether an agent said the profile found is not this caller's."""
        data = cached.value
        if self._unlinked is None or data is None or not data.segment_id:
            return False
        subject = address.cache_key
        with self._bodies_lock:
            known = self._unlinks.get(subject)
        if known is None or known[0] != cached.fetched_at:
            try:
                unlinked = self._unlinked(subject)
            except OutboxUnavailable:  # the ledger's database is down: the lookup goes on
                log.warning("unlinks unknown: the outbox's database is unavailable")
                return False  # not kept: asked again next time
            known = (cached.fetched_at, unlinked)
            with self._bodies_lock:
                self._unlinks[subject] = known
        return data.segment_id in known[1]

    def forget(self, connection: Connection, address: Address) -> None:
        """Drop what is cached about a caller (their card, their unlinks): an agent unlinked a
        profile from them, and the next lookup must know it (other workers: delivered_since)."""
        self.cache.forget(self.cache_key(connection, address))
        with self._bodies_lock:
            self._unlinks.pop(address.cache_key, None)

    def _body(
        self,
        connection: Connection,
        cache_key: str,
        cached: Cached[ProfileData | None],
        reader_roles: frozenset[str],
    ) -> ProfileCard:
        """The card's body for this data, this version of the file and this reader's view of
        its masks, built once: a warm lookup then builds only what is its own (a third of its
        CPU was building the same card again). One fetch of one caller is one body per view:
        same key, same fetch time. The view is part of the key, so a body is only ever served
        to readers who may see exactly what it shows."""
        masks = self.mask_rules(connection)
        view = masks.view(reader_roles)
        key = (connection.version, cache_key, cached.fetched_at, view)
        with self._bodies_lock:
            body = self._bodies.get(key)
        if body is None:  # built outside the lock: two threads may both build it, alike
            body = masks.apply(card_body(connection.file, cached.value), view)
            with self._bodies_lock:
                self._bodies[key] = body
        return body

    def mask_rules(self, connection: Connection) -> MaskRules:
        """The masks of this version of the file, read from it once per version."""
        known = self._masks
        if known is None or known[0] != connection.version:
            known = self._masks = (connection.version, MaskRules.of(connection.file))
        return known[1]

    def no_customer(
        self, connection: Connection, caller: NoCustomer, lookup_input: str
    ) -> CardAnswer:
        """The "not found" card of a withheld or non-customer caller: Segment is not asked."""
        now = datetime.now(UTC)
        body = card_body(connection.file, None)
        card = for_request(body, lookup_input, None, now, now, reason=caller.reason)
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

    def cache_stats(self) -> dict[str, int]:
        return {
            "entries": len(self.cache),
            "hits": self.cache.hits,
            "misses": self.cache.misses,
            "stale_served": self.cache.stale_served,
        }


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
