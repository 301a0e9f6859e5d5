"""The drainer, one step at a time (`drain_once`), against a mock of Segment's `/v1/batch`; the
rig's outbox is SQLite's and PostgreSQL's in turn (tests/conftest.py `open_outbox`)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.config.loading import Connection, load_connection
from connector.errors import OutboxUnavailable
from connector.writeback.drainer import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    SEND_TIMEOUT,
    TIDY_EVERY_SECONDS,
    Drainer,
    DrainPolicy,
    batch_body,
)
from connector.writeback.outbox import KEEP_SENT_SECONDS, Depth, LazyOutbox, OutboxStore, Row
from connector.writeback.postgres_outbox import PostgresOutbox
from tests.conftest import OpenOutbox
from tests.postgres import closed_port_url
from tests.unit.connection import ENVIRON, TRACKING_API_URL, WRITE_KEY, write_connection
from tests.unit.fakes import FakeClock

START = 1_700_000_000.0
# Backoff between 4 s and 8 s after a first attempt, from 8 s to 16 s after a second.
POLICY = DrainPolicy(backoff_base=8.0, backoff_cap=16.0)
Answer = Callable[[list[dict[str, Any]]], httpx.Response | Exception]


def ok(batch: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, json={"success": True})


@dataclass
class TrackingApi:
    """Segment's `/v1/batch`: `answer` decides each reply from the batch it received."""

    answer: Answer = ok
    requests: list[httpx.Request] = field(default_factory=list)
    batches: list[list[dict[str, Any]]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        batch = json.loads(request.content)["batch"]
        self.batches.append(batch)
        answer = self.answer(batch)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sent_ids(self) -> list[list[str]]:
        return [[m["messageId"] for m in batch] for batch in self.batches]


@dataclass
class Rig:
    drainer: Drainer
    outbox: OutboxStore
    segment: TrackingApi
    clock: FakeClock

    def add(self, count: int, start: int = 0, **extra: Any) -> None:
        for number in range(start, start + count):
            assert self.outbox.add({"type": "track", "messageId": f"m-{number}", **extra})

    def due(self) -> list[str]:
        """What a drainer would claim now (and leaves leased: for the end of a test)."""
        return [r.message_id for r in self.outbox.claim(10_000, 10**9, 1.0)]


def connection(folder: Path, writeback: bool = True, give_up_after_hours: float = 20) -> Connection:
    path = write_connection(folder, writeback=writeback, give_up_after_hours=give_up_after_hours)
    return load_connection(path, ENVIRON)


@pytest.fixture
def make_rig(tmp_path: Path, open_outbox: OpenOutbox) -> Iterator[Callable[..., Rig]]:
    clients: list[httpx.Client] = []
    drainers: list[Drainer] = []

    def build(answer: Answer = ok, writeback: bool = True, give_up_after_hours: float = 20) -> Rig:
        clock = FakeClock(START)
        conn = connection(tmp_path, writeback, give_up_after_hours)
        segment = TrackingApi(answer)
        clients.append(httpx.Client(transport=httpx.MockTransport(segment)))
        lazy = LazyOutbox(lambda: open_outbox(clock))
        drainer = Drainer(lazy, clients[-1], lambda: conn, POLICY, clock)
        drainers.append(drainer)
        return Rig(drainer, open_outbox(clock), segment, clock)

    yield build
    for drainer in drainers:
        drainer.stop()
    for client in clients:
        client.close()


def test_a_batch_is_sent_with_the_write_key_and_its_rows_marked_sent(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    rig.add(3, properties={"note": "caf\u00e9"})

    assert rig.drainer.drain_once() == 3

    (request,) = rig.segment.requests
    assert request.method == "POST"
    assert str(request.url) == f"{TRACKING_API_URL}/v1/batch"
    expected = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.extensions["timeout"]["read"] == SEND_TIMEOUT.read
    assert rig.segment.sent_ids() == [["m-0", "m-1", "m-2"]]
    assert b"caf\\u00e9" in request.content  # the stored bytes, not re-encoded
    assert rig.outbox.depth() == Depth(pending=0, oldest_pending_age=None, sent=3, dead=0)
    assert rig.drainer.drain_once() == 0
    assert len(rig.segment.requests) == 1


def test_batch_body_joins_the_stored_bytes() -> None:
    rows = [Row(1, "a", b'{"a":1}', 7, 0.0, 1), Row(2, "b", b'{"b":2}', 7, 0.0, 1)]
    assert batch_body(rows) == b'{"batch":[{"a":1},{"b":2}]}'
    assert batch_body([]) == b'{"batch":[]}'


def test_nothing_is_sent_while_writeback_is_off(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(writeback=False)
    rig.add(1)
    assert rig.drainer.drain_once() == 0
    assert rig.outbox.depth().pending == 1
    assert rig.segment.requests == []


def test_a_closed_outbox_is_never_opened_by_the_drainer(tmp_path: Path) -> None:
    conn = connection(tmp_path, writeback=False)
    lazy = LazyOutbox.sqlite(lambda: conn.outbox_path)
    with httpx.Client(transport=httpx.MockTransport(TrackingApi())) as http:
        drainer = Drainer(lazy, http, lambda: conn)
        assert drainer.drain_once() == 0
        drainer.tidy_if_due()
    assert lazy.opened() is None
    assert not conn.outbox_path.exists()


def test_batches_hold_at_most_the_message_limit(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.add(MAX_BATCH_MESSAGES + 1)
    assert rig.drainer.drain_once() == MAX_BATCH_MESSAGES
    assert rig.drainer.drain_once() == 1
    assert [len(b) for b in rig.segment.batches] == [MAX_BATCH_MESSAGES, 1]


def test_batches_hold_at_most_the_byte_limit(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.add(3, properties={"blob": "x" * (MAX_BATCH_BYTES // 3)})
    assert rig.drainer.drain_once() == 2
    assert rig.drainer.drain_once() == 1
    assert all(len(r.content) <= MAX_BATCH_BYTES + 20 for r in rig.segment.requests)
    assert rig.outbox.depth().sent == 3


# --- failures come back later ------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, headers={"Retry-After": "30"}),
        httpx.Response(429, headers={"Retry-After": "30"}),
        httpx.Response(500, headers={"Retry-After": "30"}),
    ],
)
def test_retry_after_holds_the_batch_back(
    make_rig: Callable[..., Rig], answer: httpx.Response
) -> None:
    rig = make_rig(lambda batch: answer)
    rig.add(2)
    assert rig.drainer.drain_once() == 2
    rig.clock.advance(29.5)
    assert rig.drainer.drain_once() == 0
    assert len(rig.segment.requests) == 1
    assert rig.outbox.depth().pending == 2
    rig.clock.advance(0.5)
    rig.segment.answer = ok
    assert rig.drainer.drain_once() == 2
    assert rig.outbox.depth().sent == 2


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503),
        httpx.Response(429),
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(401, json={"error": {"code": "auth", "message": "bad write key"}}),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
)
def test_failures_back_off_longer_with_each_attempt(
    make_rig: Callable[..., Rig], answer: httpx.Response | Exception
) -> None:
    rig = make_rig(lambda batch: answer)
    rig.add(1)
    assert rig.drainer.drain_once() == 1
    rig.clock.advance(3.9)  # the first backoff is at least 4 s
    assert rig.drainer.drain_once() == 0
    rig.clock.advance(4.1)  # and at most 8 s
    assert rig.drainer.drain_once() == 1
    rig.clock.advance(7.9)  # the second at least 8 s
    assert rig.drainer.drain_once() == 0
    rig.clock.advance(8.1)
    assert rig.drainer.drain_once() == 1
    assert len(rig.segment.requests) == 3
    assert rig.outbox.depth() == Depth(1, rig.clock() - START, 0, 0)


def test_backoff_policy_doubles_up_to_its_cap() -> None:
    policy = DrainPolicy(backoff_base=0.5, backoff_cap=60.0)
    for attempts, ceiling in [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (8, 60.0), (50, 60.0)]:
        delays = [policy.backoff(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempts, delays)


# --- a refused batch ---------------------------------------------------------------------------


def refuses(*bad: str) -> Answer:
    def answer(batch: list[dict[str, Any]]) -> httpx.Response:
        refused = [m["messageId"] for m in batch if m["messageId"] in bad]
        if refused:
            body = {"error": {"code": "invalid_request_error", "message": f"bad {refused[0]}"}}
            return httpx.Response(400, json=body)
        return httpx.Response(200, json={"success": True})

    return answer


def test_a_400_isolates_the_bad_message_and_sends_the_rest(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(refuses("m-2"))
    rig.add(4)
    assert rig.drainer.drain_once() == 4
    assert rig.segment.sent_ids() == [
        ["m-0", "m-1", "m-2", "m-3"],
        ["m-0", "m-1"],
        ["m-2", "m-3"],
        ["m-2"],
        ["m-3"],
    ]
    assert rig.outbox.depth() == Depth(pending=0, oldest_pending_age=None, sent=3, dead=1)
    ((message_id, reason, _),) = rig.outbox.dead_letters()
    assert message_id == "m-2"
    assert reason == "refused by Segment: invalid_request_error: bad m-2"


def test_every_bad_message_of_a_batch_is_parked(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(refuses("m-0", "m-5", "m-6"))
    rig.add(8)
    assert rig.drainer.drain_once() == 8
    assert sorted(m for m, _, _ in rig.outbox.dead_letters()) == ["m-0", "m-5", "m-6"]
    assert rig.outbox.depth().sent == 5
    alone = {batch[0] for batch in rig.segment.sent_ids() if len(batch) == 1}
    assert {"m-0", "m-5", "m-6"} <= alone  # each was parked after being tried alone


def test_a_lone_400_is_parked_at_once(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(lambda batch: httpx.Response(400, text="nope"))
    rig.add(1)
    rig.drainer.drain_once()
    assert rig.outbox.dead_letters()[0][:2] == ("m-0", "refused by Segment: HTTP 400 from Segment")
    assert len(rig.segment.requests) == 1


# --- age and housekeeping ----------------------------------------------------------------------


def test_messages_past_the_give_up_age_are_parked_unsent(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(give_up_after_hours=1)
    rig.add(1)
    rig.clock.advance(1800)
    rig.add(1, start=1)
    rig.clock.advance(1800.5)  # m-0 is an hour and half a second old, m-1 half an hour
    assert rig.drainer.drain_once() == 2
    assert rig.segment.sent_ids() == [["m-1"]]
    assert rig.outbox.dead_letters()[0][:2] == ("m-0", "not delivered before the give-up age")


def test_tidy_runs_once_a_period_and_forgets_old_sent_rows(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.add(1)
    rig.drainer.drain_once()  # m-0 sent at START
    rig.clock.advance(30)
    rig.add(1, start=1)
    rig.drainer.drain_once()  # m-1 sent at START + 30
    rig.clock.advance(KEEP_SENT_SECONDS - 20)
    rig.drainer.tidy_if_due()
    assert rig.outbox.depth().sent == 1  # m-0 kept its day, m-1 not yet
    rig.clock.advance(TIDY_EVERY_SECONDS - 1)  # m-1 is past its day too, but tidy is not due
    rig.drainer.tidy_if_due()
    assert rig.outbox.depth().sent == 1
    rig.clock.advance(1)
    rig.drainer.tidy_if_due()
    assert rig.outbox.depth().sent == 0


def test_the_thread_drains_until_stopped(make_rig: Callable[..., Rig]) -> None:
    delivered = threading.Event()

    def answer(batch: list[dict[str, Any]]) -> httpx.Response:
        delivered.set()
        return httpx.Response(200)

    rig = make_rig(answer)
    rig.add(3)
    rig.drainer.start(idle=0.01)
    assert delivered.wait(10)
    for _ in range(1000):  # the thread marks the rows sent right after the answer
        if rig.outbox.depth().sent == 3:
            break
        threading.Event().wait(0.005)
    rig.drainer.stop()
    assert rig.outbox.depth().sent == 3
    assert rig.segment.sent_ids() == [["m-0", "m-1", "m-2"]]


def test_an_undecodable_answer_does_not_escape_as_an_httpx_error(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(
        lambda batch: httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"xx")
    )
    rig.add(1)
    assert rig.drainer.drain_once() == 1
    assert rig.outbox.depth().pending == 1


def test_the_drainer_outlives_an_unreachable_outbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn = connection(tmp_path)
    box = PostgresOutbox(closed_port_url(), pool_timeout=0.5)
    with httpx.Client(transport=httpx.MockTransport(TrackingApi())) as http:
        drainer = Drainer(LazyOutbox(lambda: box), http, lambda: conn)
        with pytest.raises(OutboxUnavailable):
            drainer.drain_once()
        drainer.start(idle=0.01)
        try:
            deadline = time.monotonic() + 10
            while "outbox drain paused" not in caplog.text:
                assert time.monotonic() < deadline, "the drainer said nothing"
                time.sleep(0.05)
            assert drainer._thread is not None and drainer._thread.is_alive()
        finally:
            drainer.stop()
            box.close()
