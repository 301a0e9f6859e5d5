"""Fault drills: how the connector holds up when Segment, the network, the admin or an attacker
misbehaves. One command, one table, before and after each change to serving, caching, config or
the outbox.

    python -m bench.drills                      # every drill, about 4 minutes on 2 cores
    python -m bench.drills --only outage,hang-burst
    python -m bench.drills --list

Each drill starts its own `connector sandbox` (2,000 generated profiles, Segment's 100 requests/s
limit on) and its own `connector serve` (gunicorn, 2 workers, the command's default threads),
with a connection file showing 4 traits, write-back on and limits per agent/flow lifted. The
drills use only the public interface: the commands, the connection file, signals, HTTP routes
and the sandbox's control plane, so they run unchanged against future code. Agents send a Flex
token issued by the sandbox; Studio flows use Basic auth. Most requests open a new connection,
as Studio's do, so that they spread over both workers.

The drills (issue 9, items 7-14; DESIGN.md section 6):

- upstream-5xx: 30 % of Profile API requests answer 503 for 8 s while cards and Studio lookups
  of warm, cold and unknown callers flow (6 threads).
- 429-storm: every Profile API request answers 429 with `Retry-After: 1` for 4 s of 8 s of the
  same lookups.
- outage: the sandbox refuses connections for 5 s; warm callers' cards are past their TTL (3 s),
  so they should be served stale, and cold callers get a typed "unavailable".
- hang-burst: the Profile API hangs (30 s); 200 concurrent lookups of unknown callers (half
  Studio, half cards); /healthz polled each second with a 2 s timeout. Target: every answer
  within timeout_seconds + 0.5 s (4.5 s); notes give the late answers and /healthz failures.
- slow-clients: 70, then 1,000 connections each sending one header line every 2 s for 15 s;
  8 normal card lookups per phase (new connections, 1 s apart) against 6 without slow clients.
- config-in-place: the connection file rewritten in place (truncate, one line every 20 ms), 3
  times, while cards, Studio lookups and events flow: a card with fewer traits than configured,
  a refused event (write-back off in a half file) or a 401/429 (a half [auth]) is failed.
- config-good-then-bad: a good edit (friendly_name), traffic to one worker, a bad edit (invalid
  TOML) 0.2 s later; 2 s on, every /readyz (notes: the versions they report) and every card
  must show the good edit.
- label-edits: 5 label-only edits in 10 s while warm callers are looked up (notes: upstream
  calls and 503s the edits caused).
- bad-file-worker-restart: the file replaced by invalid TOML, one worker killed with -9, then 20
  lookups (notes: whether gunicorn exited).
- kill9-mid-drain: 300 events during a slow tracking API, kill -9 of master and workers once
  delivery began, restart, drain.
- chunked-body: a 70 KB event (form and JSON), with Content-Length and chunked: each must be a
  413; a 202 is failed, and lost if it reaches Segment without its last property.
- junk-tokens: 2,000 distinct junk Bearer tokens; a 401/403/429 is the right answer (OK); notes:
  calls that reached Twilio's token check.
- outbox-growth: 10,000 events accepted and delivered; notes: the outbox files' sizes after.
- utf8-30kb: ~30 KB events of non-ASCII text; a 202 then a dead letter is failed and lost.
- redis-restart, cold-storm-4x2: several instances sharing a Redis (see bench/drills_shared.py).
- instance-kill-mid-drain, postgres-restart: two instances sharing the PostgreSQL outbox (see
  bench/drills_postgres.py).

How to read the table: every request a drill makes is in exactly one of answered OK (a 2xx with
the right answer: the card found or not found as the data says, with all 4 traits; Studio
`found`/`not_found`; an event's 202; for the refusal drills, the refusal asked for), stale (a card
or Studio answer marked stale), unavailable (a typed degraded answer: a 503 in Segment's error
shape, or Studio's 200 `status: unavailable`) and failed (anything else: connection errors,
timeouts, other statuses, wrong answers). Over 10 s counts client-side latencies past Studio's
limit, whatever the answer. Events lost: events answered 202 that Segment (the sandbox) never
received once the outbox was empty, or received broken; events duplicated: 202'd events Segment
received more than once (re-sent; Segment's messageId deduplication absorbs them within 24 h);
"-" when the drill writes no event. Notes carry each drill's own figure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from bench.common import table
from bench.drill_kit import write_data
from bench.drill_load import Kind, Row, Tally
from bench.drills_config import (
    bad_file_worker_restart,
    config_good_then_bad,
    config_in_place,
    label_edits,
)
from bench.drills_events import chunked_body, junk_tokens, kill9_mid_drain, outbox_growth, utf8_30kb
from bench.drills_lookup import hang_burst, outage, slow_clients, storm_429, upstream_5xx
from bench.drills_postgres import instance_kill_mid_drain, postgres_restart
from bench.drills_shared import cold_storm, redis_restart

Drill = Callable[[Path], Row]
HEADERS = [
    "drill",
    "requests",
    "answered OK",
    "stale",
    "unavailable",
    "failed",
    "over 10 s",
    "events lost",
    "events duplicated at Segment",
    "notes",
]


def drills(events: int) -> dict[str, Drill]:
    """Every drill by name, in the order they run."""
    return {
        "upstream-5xx": upstream_5xx,
        "429-storm": storm_429,
        "outage": outage,
        "hang-burst": hang_burst,
        "slow-clients": slow_clients,
        "config-in-place": config_in_place,
        "config-good-then-bad": config_good_then_bad,
        "label-edits": label_edits,
        "bad-file-worker-restart": bad_file_worker_restart,
        "kill9-mid-drain": kill9_mid_drain,
        "chunked-body": chunked_body,
        "junk-tokens": junk_tokens,
        "outbox-growth": partial(outbox_growth, events=events),
        "utf8-30kb": utf8_30kb,
        "redis-restart": redis_restart,
        "cold-storm-4x2": cold_storm,
        "instance-kill-mid-drain": instance_kill_mid_drain,
        "postgres-restart": postgres_restart,
    }


def cells(row: Row) -> list[object]:
    t = row.tally

    def events(value: int | None) -> object:
        return "-" if value is None else value

    return [
        row.drill,
        t.requests,
        t.kinds[Kind.OK],
        t.kinds[Kind.STALE],
        t.kinds[Kind.UNAVAILABLE],
        t.kinds[Kind.FAILED],
        t.over_limit,
        events(row.lost),
        events(row.duplicated),
        row.notes.replace("|", "/"),
    ]


def run_one(name: str, drill: Drill, data: Path) -> Row:
    """Run one drill; a drill that crashes is a row saying so, not the end of the run."""
    started = time.monotonic()
    print(f"drill {name} ...", file=sys.stderr, flush=True)
    try:
        row = drill(data)
    except Exception as error:  # report it in the table, run the next drill
        traceback.print_exc()
        row = Row(name, Tally(), f"drill crashed: {type(error).__name__}: {error}"[:200])
    print(f"drill {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return row


def code_version() -> str:
    """The commit under test (`git describe`, -dirty for local changes) and the last commit that
    changed connector/, so that a table names the code it measured."""

    def git(*args: str) -> str:
        try:
            result = subprocess.run(
                ["git", *args],  # noqa: S607 - git from PATH
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except OSError:
            return ""
        return result.stdout.strip()

    described = git("describe", "--always", "--dirty") or "unknown"
    connector = git("log", "-1", "--format=%h", "--", "connector")
    return f"{described}, connector/ as of {connector}" if connector else described


def summary(drill: Drill) -> str:
    """The first sentence of a drill's docstring, on one line."""
    doc = " ".join((getattr(drill, "func", drill).__doc__ or "").split())
    return doc.split(". ")[0].rstrip(".")


def selected(all_drills: dict[str, Drill], only: str | None) -> dict[str, Drill]:
    if not only:
        return all_drills
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in all_drills]
    if unknown:
        raise SystemExit(f"unknown drill(s): {', '.join(unknown)} (see --list)")
    return {name: all_drills[name] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--only", help="comma-separated drill names (see --list)")
    parser.add_argument("--list", action="store_true", help="list the drills and exit")
    parser.add_argument("--events", type=int, default=10_000, help="events for outbox-growth")
    args = parser.parse_args()
    all_drills = drills(args.events)
    if args.list:
        for name, drill in all_drills.items():
            print(f"{name:26} {summary(drill)}")
        return
    chosen = selected(all_drills, args.only)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="drills-") as tmp:
        data = Path(tmp) / "profiles.jsonl"
        write_data(data)
        rows = [run_one(name, drill, data) for name, drill in chosen.items()]
    wall = time.monotonic() - started
    print(
        f"\nDrills against {code_version()} on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
        f"`connector serve` (gunicorn, 2 workers x default threads) and `connector sandbox`; "
        f"{wall:.0f} s wall time\n"
    )
    print(table(HEADERS, [cells(row) for row in rows]))


if __name__ == "__main__":
    main()
