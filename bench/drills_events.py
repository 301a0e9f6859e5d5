"""Write-back and auth drills: kill -9 mid-drain, chunked bodies, junk tokens, outbox growth,
non-ASCII events near the size limit."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from bench.drill_kit import (
    Stack,
    delivery,
    events_landed,
    known_phone,
    outbox_state,
    profile_events,
    settle,
    stack,
)
from bench.drill_load import (
    Judged,
    Kind,
    Row,
    Tally,
    concurrently,
    degraded,
    event,
    judge_event,
    segment_error,
    timed,
)


def wait_for_delivery(s: Stack, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if s.control.stats()["tracking"].get("accepted", 0):
            return True
        time.sleep(0.1)
    return False


def kill9_mid_drain(data: Path) -> Row:
    """300 events (a Studio flow) while the tracking API is slow (400 ms a request); once the
    first batch lands, kill -9 master and workers, restart `connector serve`, wait until the
    outbox is empty (notes: pending at the kill, events landed on profiles, re-sent)."""
    tally = Tally()
    callers = range(4)
    with stack(data) as s, s.studio_client(fresh=False, connections=8) as flow_client:
        before = sum(events_landed(s, n) for n in callers)
        s.control.set_faults(latency_ms=400, targets=["tracking"])

        def one(n: int) -> None:
            body = {"event": "Kill Drill", "properties": {"n": n}}
            timed(tally, partial(event, flow_client, tally, known_phone(n % 4), body))

        concurrently(range(300), 8, one)
        delivered_before = wait_for_delivery(s)
        s.serve.kill9()
        at_kill = outbox_state(s.config)
        s.serve.start()
        after = settle(s, within=90)
        lost, duplicated = delivery(s, tally.accepted)
        landed = sum(events_landed(s, n) for n in callers) - before
        resent = s.control.stats()["tracking"]["dropped"].get("duplicate", 0)
    notes = (
        f"{at_kill.pending} pending at the kill{'' if delivered_before else ' (none sent yet)'}, "
        f"{after.pending} after; {landed} landed on profiles for {len(set(tally.accepted))} "
        f"accepted; {resent} re-sent (deduplicated by messageId)"
    )
    return Row("kill9-mid-drain", tally, notes, lost, duplicated)


PADDING_CHARS = 11_700  # '!' per padding property in a form (3 bytes each: %21); half in JSON


def oversize_body(tag: str, form: bool) -> tuple[bytes, str]:
    """A ~70 KB body (over the 64 KB limit) whose event is ~24 KB (under Segment's 32 KB): two
    padding properties of '!' written escaped, then a last property, `zz_end`, that a body cut
    at 64 KB would lose while still making a valid event."""
    fields = {"event": f"Oversize {tag}", "from": known_phone(5)}
    if form:
        padding = {f"properties.pad{n}": "!" * PADDING_CHARS for n in (1, 2)}
        body = urlencode({**fields, **padding, "properties.zz_end": tag})
        return body.encode(), "application/x-www-form-urlencoded"
    pad = '"' + "\\u0021" * (PADDING_CHARS // 2) + '"'
    head = json.dumps(fields)[:-1]
    body = f'{head}, "properties": {{"pad1": {pad}, "pad2": {pad}, "zz_end": "{tag}"}}}}'
    return body.encode(), "application/json"


def chunks(body: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def oversize_request(client: httpx.Client, tally: Tally, form: bool, chunked: bool) -> Judged:
    """One ~70 KB event; 413 is the right answer, a 202 is failed (and tracked for delivery)."""
    tag = f"{'form' if form else 'json'}-{'chunked' if chunked else 'length'}"
    raw, kind = oversize_body(tag, form)
    content: bytes | Iterator[bytes] = chunks(raw) if chunked else raw
    response = client.post("/v1/events", content=content, headers={"Content-Type": kind})
    if response.status_code == 413 and segment_error(response):
        return Kind.OK, f"413 {tag}"
    if response.status_code == 202:
        judge_event(response, tally)
        return Kind.FAILED, f"202 {tag}"
    return degraded(response)[0], f"{response.status_code} {tag}"


def intact(s: Stack, accepted: Sequence[str], profile: int, marker: str) -> int:
    """How many accepted events reached the profile with their last property (`marker` key)."""
    found = [json.dumps(e) for e in profile_events(s, profile)]
    return sum(1 for m in set(accepted) if any(m in e and marker in e for e in found))


def chunked_body(data: Path) -> Row:
    """A 70 KB event (over the 64 KB limit) as a form and as JSON, each with Content-Length and
    with Transfer-Encoding: chunked: all four must be 413s. A 202 is failed; a 202'd event that
    reaches Segment without its last property is also lost."""
    tally = Tally()
    lost = duplicated = 0
    with stack(data) as s, s.agent_client() as agent:
        for form in (True, False):
            for chunked in (False, True):
                timed(tally, partial(oversize_request, agent, tally, form, chunked))
        truncated = 0
        if tally.accepted:
            settle(s, within=30)
            never, duplicated = delivery(s, tally.accepted)
            lost = len(set(tally.accepted)) - intact(s, tally.accepted, 5, "zz_end")
            truncated = lost - never
    answers = ", ".join(f"{count} x {status}" for status, count in sorted(tally.statuses.items()))
    notes = f"answers: {answers}; {truncated} delivered without their last property"
    return Row("chunked-body", tally, notes, lost, duplicated)


def junk_token(n: int) -> str:
    """Distinct junk: half random strings, half shaped like a Flex JWT with a bad signature."""
    if n % 2 == 0:
        return secrets.token_urlsafe(24)
    header = {"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1"}
    claims = {"iss": "SK" + secrets.token_hex(16), "sub": "AC" + secrets.token_hex(16), "n": n}
    parts = [json.dumps(part).encode() for part in (header, claims)] + [secrets.token_bytes(32)]
    return ".".join(base64.urlsafe_b64encode(p).rstrip(b"=").decode() for p in parts)


def junk_answer(response: httpx.Response) -> Judged:
    """A refusal (401, 403, 429 in Segment's shape) is the right answer to a junk token."""
    status = str(response.status_code)
    if response.status_code in (401, 403, 429) and segment_error(response):
        return Kind.OK, status
    if response.status_code == 200:
        return Kind.FAILED, "junk token accepted"
    return degraded(response)


def junk_tokens(data: Path) -> Row:
    """2,000 card requests, each with a distinct junk Bearer token, 16 at a time (notes: calls
    Twilio's token check received)."""
    tally = Tally()
    with stack(data) as s, httpx.Client(base_url=s.url, timeout=15) as client:
        s.control.reset_stats()

        def one(n: int) -> None:
            headers = {"Authorization": f"Bearer {junk_token(n)}"}
            request = partial(client.get, "/v1/cards", params={"from": known_phone(1)})
            timed(tally, lambda: junk_answer(request(headers=headers)))

        concurrently(range(2000), 16, one)
        twilio = sum(s.control.stats()["twilio"].values())
    return Row("junk-tokens", tally, f"{twilio:,} calls to Twilio's token check")


def outbox_growth(data: Path, events: int = 10_000) -> Row:
    """`events` events through POST /v1/events (16 at a time, 6 callers), all delivered; then
    the size of the outbox files (database, WAL, shared memory)."""
    tally = Tally()
    with stack(data) as s, s.agent_client(fresh=False, connections=16) as agent:

        def one(n: int) -> None:
            body = {"event": "Growth Drill", "properties": {"n": n}}
            timed(tally, partial(event, agent, tally, known_phone(n % 6), body))

        started = time.monotonic()
        concurrently(range(events), 16, one)
        rate = tally.requests / (time.monotonic() - started)
        state = settle(s, within=120)
        lost, duplicated = delivery(s, tally.accepted)
        delivered = s.outbox_files_bytes()
        tidied = after_tidy(s)
    notes = (
        f"{rate:,.0f} events/s accepted; {state.sent:,} sent rows kept; "
        f"delivered: {megabytes(delivered)}; a minute later: {megabytes(tidied)}"
    )
    return Row("outbox-growth", tally, notes, lost, duplicated)


def after_tidy(s: Stack, within: float = 75.0) -> dict[str, int]:
    """The outbox files once the -wal file stops holding the burst (connectors that tidy the
    outbox do it within a minute), or as they are after `within` s."""
    deadline = time.monotonic() + within
    sizes = s.outbox_files_bytes()
    while time.monotonic() < deadline and sizes.get("outbox.sqlite-wal", 0) > 1_100_000:
        time.sleep(1)
        sizes = s.outbox_files_bytes()
    return sizes


def megabytes(sizes: dict[str, int]) -> str:
    total = sum(sizes.values())
    return (
        f"{total / 1e6:.2f} MB ("
        + ", ".join(
            f"{name.removeprefix('outbox.sqlite') or 'db'} {size / 1e6:.2f}"
            for name, size in sizes.items()
        )
        + ")"
    )


def non_ascii(target_bytes: int, alphabet: str) -> str:
    text = ""
    while len(text.encode()) < target_bytes:
        text += alphabet
    return text


def utf8_30kb(data: Path) -> Row:
    """Two events of ~30 KB of non-ASCII text (accented Latin, then CJK): under 32 KB as UTF-8,
    far over it with non-ASCII escaped. A refusal at the API (4xx) or a delivery is OK; a 202
    followed by a dead letter is failed and lost."""
    tally = Tally()
    with stack(data) as s, s.agent_client(fresh=False) as agent:
        for alphabet in ("Ünïcödé ëvénts àré fïné ", "统一客户档案连接器"):
            body = {"event": "Unicode Drill", "properties": {"note": non_ascii(30_000, alphabet)}}
            timed(tally, partial(event_or_refusal, agent, tally, body))
        state = settle(s, within=60)
        lost, duplicated = delivery(s, tally.accepted)
        tally.demote(lost)
    reasons = [
        line.split(": ", 1)[-1]
        for line in state.printed.splitlines()
        if line.strip().startswith("dead ")
    ]
    notes = f"{len(tally.accepted)} accepted, {state.dead} dead-lettered" + (
        f" ({reasons[0][:120]})" if reasons else ""
    )
    return Row("utf8-30kb", tally, notes, lost, duplicated)


def event_or_refusal(client: httpx.Client, tally: Tally, body: dict[str, Any]) -> Judged:
    """202 (judged again after delivery), or a typed refusal such as 413 or 400: both right."""
    response = client.post("/v1/events", json={**body, "from": known_phone(7)})
    if response.status_code in (400, 413) and segment_error(response):
        return Kind.OK, str(response.status_code)
    return judge_event(response, tally)
