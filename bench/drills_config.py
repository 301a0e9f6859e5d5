"""Connection-file drills: edits in place, a good edit then a bad one, label edits, a bad file
plus a worker restart."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx

from bench.drill_kit import (
    Stack,
    connection_toml,
    delivery,
    known_phone,
    replace_atomically,
    settle,
    stack,
    unknown_phone,
)
from bench.drill_load import (
    Judged,
    Kind,
    Row,
    Tally,
    card,
    degraded,
    event,
    flow,
    in_background,
    judge_card,
    studio,
    timed,
    warm,
)

CALLERS = [known_phone(n) for n in range(20)]
GAPS = (0.2, 0.5, 0.8, 1.1)  # seconds between a good edit and a bad one
# How long an edit must stand to be applied: the connector's settle time, plus up to its
# watcher's period. Code before that contract applied edits on sight.
SETTLE, CHECK = 0.5, 0.25


def rewrite_in_place(path: Path, times: int, line_every: float = 0.02) -> int:
    """Rewrite the file's own text in place `times` times: truncate, then one line every 20 ms
    (as an editor without atomic saves, or `cat > file`, does). Returns the lines per rewrite."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for _ in range(times):
        with path.open("r+", encoding="utf-8") as file:
            file.truncate(0)
            for line in lines:
                file.write(line)
                file.flush()
                os.fsync(file.fileno())
                time.sleep(line_every)
        time.sleep(1.0)
    return len(lines)


def lookups_and_events(
    tally: Tally, agent: httpx.Client, flow_client: httpx.Client
) -> Callable[[int], None]:
    """Cards, Studio lookups and events of known callers, and cards of unknown ones, in turn."""

    def work(n: int) -> None:
        caller = CALLERS[n % len(CALLERS)]
        requests = [
            partial(card, agent, caller, True),
            partial(studio, flow_client, caller, True),
            partial(event, agent, tally, caller, {"event": "Config Drill", "properties": {"n": n}}),
            partial(card, agent, unknown_phone(n), False),
        ]
        timed(tally, requests[n % len(requests)])

    return work


def config_in_place(data: Path) -> Row:
    """The connection file rewritten in place (same text; truncate, then a line every 20 ms)
    three times while cards, Studio lookups and events flow for 8 s. A card with fewer traits
    than configured, a refused event or a 401/429 from a half-read [auth] counts as failed."""
    tally = Tally()
    with stack(data) as s, s.agent_client() as agent, s.studio_client() as flow_client:
        lines: list[int] = []

        def rewrite() -> None:
            time.sleep(0.5)
            lines.append(rewrite_in_place(s.config, times=3))

        rewriter = in_background(rewrite)
        flow(lookups_and_events(tally, agent, flow_client), threads=6, seconds=8.0, pause=0.02)
        rewriter.join()
        state = settle(s)
        lost, duplicated = delivery(s, tally.accepted)
        refusals = ", ".join(
            f"{count} x {status}"
            for status, count in tally.statuses.most_common()
            if status not in ("200", "202")
        )
    notes = f"3 rewrites of {lines[0]} lines; not OK: {refusals or 'none'}; {state.dead} dead"
    return Row("config-in-place", tally, notes, lost, duplicated)


def readiness(client: httpx.Client, expected: str, versions: Counter[str]) -> Judged:
    """/readyz with credentials: OK when it reports the `expected` connection name; the version
    it reports is counted."""
    response = client.get("/readyz")
    if response.status_code != 200:
        return degraded(response)
    body = response.json()
    versions[str(body.get("version"))] += 1
    if body.get("connection") != expected:
        return Kind.FAILED, "old connection"
    return Kind.OK, "200"


def edited_card(client: httpx.Client, caller: str, expected: str) -> Judged:
    response = client.get("/v1/cards", params={"from": caller})
    return judge_card(response, known=True, connection=expected)


def good_then_bad_round(
    s: Stack, agent: httpx.Client, name: str, gap: float, allowed: tuple[str, ...]
) -> tuple[Tally, int, str]:
    """A good edit, a bad one `gap` s later, then samples that must all show the same one of
    the `allowed` connection names: their tally, how many versions /readyz reported, and the
    name shown."""
    tally = Tally()
    s.rewrite(friendly_name=name)
    time.sleep(0.1)
    with s.agent_client(fresh=False, connections=1) as one:  # one connection: one worker
        for caller in CALLERS[:2]:
            timed(Tally(), partial(card, one, caller, True))
    time.sleep(max(0.0, gap - 0.1))
    replace_atomically(s.config, broken(s))
    time.sleep(2.0)
    shown = str(agent.get("/readyz").json().get("connection"))
    expected = shown if shown in allowed else allowed[0]
    versions: Counter[str] = Counter()
    for n in range(12):
        timed(tally, partial(readiness, agent, expected, versions))
        if n % 2 == 0:
            timed(tally, partial(edited_card, agent, CALLERS[n], expected))
    return tally, len(versions), expected


def config_good_then_bad(data: Path) -> Row:
    """4 rounds of: a good edit (friendly_name), 0.1 s later 2 lookups on one keep-alive
    connection (one worker), a bad edit (invalid TOML) 0.2, 0.5, 0.8 then 1.1 s after the good
    one, both atomic; 2 s later 12 /readyz and 6 cards on new connections must all show the
    good edit (the version before it when the good edit stood less than SETTLE s; either when
    it stood less than SETTLE + CHECK s), every sample the same (notes: versions /readyz
    reported in each round; 2 = the workers diverged)."""
    tally = Tally()
    with stack(data) as s, s.agent_client() as agent:
        for caller in CALLERS[:10]:
            timed(Tally(), partial(card, agent, caller, True))
        current = str(agent.get("/readyz").json().get("connection"))
        rounds = []
        for gap in GAPS:
            name = f"Drills (edit {gap})"
            # The connector applies a file once it has stood still SETTLE s, seen by a watcher
            # every CHECK s: an edit replaced sooner is a transient (like a half-written file)
            # and the version before stays; one replaced in between may go either way.
            allowed = (name,) if gap >= SETTLE + CHECK else (current, name)
            if gap < SETTLE:
                allowed = (current,)
            tally_of_round, versions, current = good_then_bad_round(s, agent, name, gap, allowed)
            rounds.append((tally_of_round, versions))
    shown = []
    for gap, (one, versions) in zip(GAPS, rounds, strict=True):
        tally.merge(one)
        shown.append(f"{gap} s: {versions} version(s), {one.kinds[Kind.FAILED]} wrong")
    notes = "by gap between the edits: " + "; ".join(shown)
    return Row("config-good-then-bad", tally, notes)


def broken(s: Stack) -> str:
    """The current file with its first table header's bracket missing: invalid TOML."""
    return connection_toml(s.sandbox_url).replace("[connection]", "[connection", 1)


def label_edits(data: Path) -> Row:
    """5 label-only edits (atomic), 2 s apart, while warm callers' cards and Studio lookups flow
    for 10 s (notes: 503s and the upstream calls the edits caused)."""
    tally = Tally()
    with stack(data) as s, s.agent_client() as agent, s.studio_client() as flow_client:
        warm(agent, CALLERS * 2, s.upstream_calls)
        s.control.reset_stats()

        def edits() -> None:
            for n in range(1, 6):
                time.sleep(0.5 if n == 1 else 2.0)
                s.rewrite(label_suffix=f" v{n}")

        def work(n: int) -> None:
            client, ask = (agent, card) if n % 2 == 0 else (flow_client, studio)
            timed(tally, partial(ask, client, CALLERS[n % len(CALLERS)], True))

        editor = in_background(edits)
        flow(work, threads=6, seconds=10.0, pause=0.02)
        editor.join()
        calls = s.upstream_calls()
    notes = (
        f"{calls} upstream calls during the edits (warm callers: none without them); "
        f"{tally.statuses['503']} x 503"
    )
    return Row("label-edits", tally, notes)


def bad_file_worker_restart(data: Path) -> Row:
    """Serving a good file, it is replaced by invalid TOML, one gunicorn worker is killed (-9);
    3 s later, 20 card lookups (notes: whether gunicorn exited, worker boot failures logged)."""
    tally = Tally()
    with stack(data) as s, s.agent_client(timeout=5) as agent:
        for caller in CALLERS[:6]:
            timed(Tally(), partial(card, agent, caller, True))
        replace_atomically(s.config, broken(s))
        time.sleep(1.5)
        workers = s.serve.workers()
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(3.0)
        for caller in CALLERS:
            timed(tally, partial(card, agent, caller, True))
        exited = s.serve.exited()
        after = len(s.serve.workers())
        boot_failures = s.serve.logs().count("Worker failed to boot")
    state = "gunicorn exited" if exited else f"gunicorn kept serving with {after} worker(s)"
    return Row(
        "bad-file-worker-restart", tally, f"{state}; {boot_failures} 'failed to boot' logged"
    )
