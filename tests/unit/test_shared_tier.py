"""The card cache's shared tier on a real Redis (TEST_REDIS_URL, else database 15 on the
standard local port): what one process fetched, the others read; one fetch for every process;
stale answers from it; and a Redis that is down costs a lookup nothing."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import pytest
import redis

from connector.cards.profile import AccountData, ProfileData, profile_from_json, profile_to_json
from connector.errors import UpstreamUnavailable
from connector.state.cache import Cached, SingleFlightCache
from connector.state.deliveries import SharedDeliveries
from connector.state.redis import MAX_CONNECTIONS, SharedRedis
from connector.state.shared_tier import Codec, SharedTier
from tests.conftest import REDIS_URL

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1
TEXT: Codec[str] = Codec(lambda value: value, str)


@pytest.fixture
def shared() -> Iterator[SharedRedis]:
    client = SharedRedis(REDIS_URL)
    client.client.ping()  # a test that needs Redis fails here, loudly, when it is not there
    yield client
    client.close()


@pytest.fixture
def namespace(shared: SharedRedis) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex}"
    yield name
    for key in shared.client.scan_iter(f"connector:{name}:*"):
        shared.client.delete(key)


Process = Callable[[], SingleFlightCache[str]]


@pytest.fixture
def process(shared: SharedRedis, namespace: str) -> Process:
    """A new process's cache: its own in-process tier, the deployment's shared one."""
    return lambda: SingleFlightCache(100, shared=SharedTier(shared, namespace, TEXT))


class Upstream:
    def __init__(self, answer: str = "ada", delay: float = 0.0) -> None:
        self.answer, self.delay, self.calls = answer, delay, 0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, float]:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.answer, 60.0


def test_what_one_process_fetched_the_others_read(process: Process) -> None:
    upstream = Upstream()
    first, second = process(), process()
    assert first.get("k", upstream, 900, 2).value == "ada"
    assert second.get("k", upstream, 900, 2).value == "ada"
    assert upstream.calls == 1


def test_concurrent_lookups_in_two_processes_make_one_fetch(process: Process) -> None:
    upstream = Upstream(delay=0.3)
    caches = [process(), process()]
    results: list[str] = []

    def look_up(cache: SingleFlightCache[str]) -> None:
        results.append(cache.get("k", upstream, 900, 3).value)

    threads = [threading.Thread(target=look_up, args=(c,)) for c in caches for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ada"] * 40
    assert upstream.calls == 1


def test_a_process_serves_stale_from_the_shared_tier(shared: SharedRedis, namespace: str) -> None:
    tier = SharedTier(shared, namespace, TEXT)
    now = time.monotonic()
    expired = Cached(
        "ada", datetime.now(UTC), now - 120, now - 60, keep_until=now + 600
    )  # fetched two minutes ago by another process, expired a minute ago
    tier.store("k", expired)
    newcomer = SingleFlightCache(100, shared=tier)

    def segment_down() -> tuple[str, float]:
        raise UpstreamUnavailable("down")

    answer = newcomer.get("k", segment_down, 900, 2)
    assert answer.value == "ada" and answer.stale is True


def test_an_entry_stays_in_a_process_at_most_its_local_ttl(
    shared: SharedRedis, namespace: str
) -> None:
    tier = SharedTier(shared, namespace, TEXT)
    clock = [1000.0]
    reader = SingleFlightCache(100, clock=lambda: clock[0], shared=tier, local_ttl=2.0)
    tier.store("k", Cached("old", datetime.now(UTC), time.monotonic(), 1e12, keep_until=1e12))
    assert reader.get("k", Upstream(), 900, 2).value == "old"
    tier.store("k", Cached("new", datetime.now(UTC), time.monotonic(), 1e12, keep_until=1e12))
    assert reader.get("k", Upstream(), 900, 2).value == "old"  # its own copy, for now
    clock[0] += 2.5
    assert reader.get("k", Upstream(), 900, 2).value == "new"


def test_a_redis_that_is_down_costs_a_lookup_nothing(namespace: str) -> None:
    down = SharedRedis(CLOSED)
    cache = SingleFlightCache(100, shared=SharedTier(down, namespace, TEXT))
    upstream = Upstream()
    started = time.monotonic()
    answers = [cache.get(f"k{n}", upstream, 900, 2).value for n in range(50)]
    assert answers == ["ada"] * 50 and upstream.calls == 50
    assert time.monotonic() - started < 1.0  # one failed connect, then no attempts
    assert down.available is False and down.last_error == "ConnectionError"


def test_redis_is_used_again_once_it_answers(shared: SharedRedis) -> None:
    clock = [0.0]
    flaky = SharedRedis(CLOSED, retry_after=2.0, clock=lambda: clock[0])

    def ping(r: redis.Redis) -> str:
        return "pong" if r.ping() else "no"

    assert flaky.call(ping, "down") == "down"
    flaky.client = shared.client  # the same URL, now answering
    assert flaky.call(ping, "down") == "down"  # still waiting out retry_after
    clock[0] += 2.1
    assert flaky.call(ping, "down") == "pong"
    assert flaky.last_error is None


def test_a_profile_survives_the_trip_through_json() -> None:
    data = ProfileData(
        "phone:+14155550123",
        "use_1",
        {"name": "Ada", "ltv": 1850.5},
        audiences={"vip": True},
        events=[{"event": "Order Completed"}],
        accounts=[AccountData("ACCT-1", {"name": "Initech"})],
        missing=("events",),
    )
    assert profile_from_json(json.loads(json.dumps(profile_to_json(data)))) == data
    assert profile_from_json(profile_to_json(None)) is None


def test_keys_carry_the_connector_prefix_and_expire(shared: SharedRedis, namespace: str) -> None:
    tier = SharedTier(shared, namespace, TEXT)
    now = time.monotonic()
    tier.store("k", Cached("ada", datetime.now(UTC), now, now + 60, keep_until=now + 900))
    (key,) = shared.client.scan_iter(f"connector:{namespace}:*")
    assert re.fullmatch(rf"connector:{namespace}:[0-9a-f]{{32}}".encode(), key)  # a digest
    ttl = shared.client.pttl(key)
    assert isinstance(ttl, int) and 890_000 < ttl <= 900_000


def test_a_delivery_noted_by_one_process_is_seen_by_every_other(shared: SharedRedis) -> None:
    asked: list[Sequence[str]] = []

    def outbox(subjects: Sequence[str], moment: float) -> bool:
        asked.append(subjects)
        return False

    subject = f"phone:+1415{uuid.uuid4().int % 10**7:07d}"
    before = time.time()
    SharedDeliveries(shared, outbox).note([subject])
    other = SharedDeliveries(shared, outbox)
    assert other.since([subject], before - 1) is True
    assert other.since([subject], time.time() + 1) is False  # nothing delivered since then
    assert other.since(["phone:+10000000000"], before - 1) is False
    # One of a profile's addresses is enough (a call by phone, then a chat by email)
    assert other.since(["email:someone@example.com", subject], before - 1) is True
    assert asked == []  # Redis answered: the outbox was not asked
    shared.client.delete(*shared.client.scan_iter("connector:delivered:*"))


def test_without_redis_the_outbox_says_what_was_delivered() -> None:
    asked: list[Sequence[str]] = []

    def outbox(subjects: Sequence[str], moment: float) -> bool:
        asked.append(subjects)
        return True

    down = SharedDeliveries(SharedRedis(CLOSED), outbox)
    down.note(["phone:+14155550123"])  # lost, harmlessly: the outbox keeps the truth
    assert down.since(["phone:+14155550123", "email:a@example.com"], 0.0) is True
    assert asked == [["phone:+14155550123", "email:a@example.com"]]


@pytest.mark.parametrize(("verify", "expected"), [(True, "required"), (False, "none")])
def test_tls_certificates_are_verified_unless_told_not_to(verify: bool, expected: str) -> None:
    tls = SharedRedis("rediss://127.0.0.1:1/0", verify_tls=verify)
    assert tls.client.connection_pool.connection_kwargs.get("ssl_cert_reqs", "required") == expected


def test_a_busy_pool_is_waited_for_and_never_taken_for_redis_down(shared: SharedRedis) -> None:
    """More threads than connections (a storm's section threads): a call waits for a free one;
    one that waits in vain gets the default, and Redis stays in use for every other call (it
    used to count as down for 2 s, and the space's pace went local on every worker)."""
    pool = shared.client.connection_pool
    held = [pool.get_connection() for _ in range(MAX_CONNECTIONS)]
    try:
        started = time.monotonic()
        assert shared.call(lambda r: bool(r.ping()), None) is None
        assert 0.05 <= time.monotonic() - started < 1.0  # waited for a connection, in vain
        assert shared.available and shared.last_error is None

        def free_one_soon() -> None:
            time.sleep(0.03)
            pool.release(held.pop())

        threading.Thread(target=free_one_soon).start()
        assert shared.call(lambda r: bool(r.ping()), None) is True  # it waited, and got one
    finally:
        for connection in held:
            pool.release(connection)
