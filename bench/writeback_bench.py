"""Write-back throughput: events/s accepted into the outbox, and delivered to Segment.

    python -m bench.writeback_bench --events 3000 --concurrency 16 [--database-url URL]

The connector runs under gunicorn (`connector serve`, 2 workers, each with a drainer thread) against
a `connector sandbox` process. Phase 1 holds delivery back (the sandbox's tracking API answers 503)
and measures acceptance alone: each POST /v1/events identifies the caller through the Profile API,
then commits to the SQLite outbox (or, with `--database-url`, to the PostgreSQL one: give it a
database or schema of its own, e.g. `?options=-c%20search_path%3Dbench`). Phase 2 lets delivery
through, makes every held event due at once (`connector outbox --retry-now`), and measures how fast
the drainers empty the outbox into /v1/batch. Phase 3 posts events as fast as Debian's `wrk`
sends them (`-t2 -c16`, each its own messageId; `sudo apt-get install -y wrk`), and the floor
(bench/floor.py, a bare Flask app under the same gunicorn settings) the same way.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import percentiles, table, timed_concurrently
from bench.floor import FLOORS, floor_served
from bench.loadgen import beside_floor, wrk
from connector.sandbox.control_client import SandboxControl
from connector.sandbox.core import SandboxConfig
from connector.sandbox.process import sandbox_process
from connector.serving.processes import served_process
from connector.writeback.outbox import Outbox, OutboxStore
from connector.writeback.postgres_outbox import PostgresOutbox

TOKEN, WRITE_KEY, SPACE = "bench-token", "bench-write-key", "spa_bench"
SANDBOX = SandboxConfig()  # its Twilio account checks the benchmark agent's Flex token
CALLERS = [
    "+14155550123",
    "+447700900123",
    "+33612345678",
    "+819012345678",
    "whatsapp:+5511912345678",
    "ada@example.com",
]
CONFIG = f"""
[connection]
friendly_name = "Write-back benchmark"
space_id = "{SPACE}"
profile_api_url = "{{url}}"

[lookup]
rate_limit = 100000

[auth]
agent_lookups_per_minute = 1000000

[writeback]
enabled = true
tracking_api_url = "{{url}}"
"""


def accept(url: str, agent: str, events: int, concurrency: int) -> tuple[list[float], float]:
    with httpx.Client(
        base_url=url,
        timeout=15,
        limits=httpx.Limits(max_connections=concurrency),
        headers={"Authorization": f"Bearer {agent}"},
    ) as client:

        def one(n: int) -> None:
            response = client.post(
                "/v1/events",
                json={
                    "event": "Bench Event",
                    "properties": {"n": n},
                    "from": CALLERS[n % len(CALLERS)],
                },
            )
            if response.status_code != 202:
                raise RuntimeError(f"refused: {response.status_code} {response.text}")

        return timed_concurrently(range(events), concurrency, one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", help="the outbox in this PostgreSQL (DATABASE_URL)")
    parser.add_argument("--seconds", type=float, default=10, help="of the wrk phase")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(
            "--data",
            "demo",
            "--space-id",
            SPACE,
            "--token",
            TOKEN,
            "--write-key",
            WRITE_KEY,
            "--rate-limit",
            "0",
        ) as sandbox,
    ):
        control = SandboxControl(sandbox.url)
        config = Path(tmp) / "connection.toml"
        config.write_text(CONFIG.replace("{url}", sandbox.url), encoding="utf-8")
        outbox: OutboxStore = Outbox(Path(tmp) / "outbox.sqlite")
        env = {
            "SEGMENT_PROFILE_API_TOKEN": TOKEN,
            "SEGMENT_WRITE_KEY": WRITE_KEY,
            **SANDBOX.twilio_environment(sandbox.url),
        }
        if args.database_url:
            outbox = PostgresOutbox(args.database_url)
            env["DATABASE_URL"] = args.database_url
        agent = control.issue_agent_token()["token"]
        with served_process(config, env, workers=2, threads=32) as served:
            url = served.url
            control.set_faults(error_rate=1.0, targets=["tracking"])  # phase 1: hold delivery
            latencies, accept_wall = accept(url, agent, args.events, args.concurrency)
            held = outbox.depth().pending
            control.clear_faults()  # phase 2: deliver, without waiting out phase 1's backoff
            started = time.perf_counter()
            outbox.retry_now()
            while outbox.depth().pending:
                time.sleep(0.02)
            deliver_wall = time.perf_counter() - started
            # Phase 3: as fast as wrk sends them, beside the floor under the same load.
            headers = {"Authorization": f"Bearer {agent}"}
            at_full = {
                "connector (POST /v1/events)": wrk(
                    f"{url}/v1/events",
                    args.seconds,
                    2,
                    16,
                    EVENT,
                    Path(tmp),
                    headers,
                    served.process.pid,
                )
            }
        for name, served_floor in FLOORS.items():
            with floor_served(served_floor, 2) as bare:
                at_full[name] = wrk(
                    f"{bare.url}/floor", args.seconds, 2, 16, EVENT, Path(tmp), {}, bare.process.pid
                )
        stats = control.stats()["tracking"]
        control.close()
    p = percentiles(latencies)
    print(
        f"\n{args.events} events from {args.concurrency} concurrent clients; connector under "
        f"gunicorn, 2 workers; outbox {outbox.location}\n"
    )
    print(
        table(
            ["phase", "events", "seconds", "events/s", "p50 ms", "p95 ms", "p99 ms"],
            [
                [
                    "accepted into the outbox (POST /v1/events -> 202)",
                    len(latencies),
                    accept_wall,
                    len(latencies) / accept_wall,
                    p["p50"],
                    p["p95"],
                    p["p99"],
                ],
                [
                    "delivered to /v1/batch from the outbox",
                    held,
                    deliver_wall,
                    held / deliver_wall,
                    "",
                    "",
                    "",
                ],
            ],
        )
    )
    print(
        f"\nat the sandbox: {stats.get('accepted', 0)} accepted, dropped {stats['dropped']}, "
        f"{stats['repeated_message_ids']} messageIds received more than once"
    )
    connector = at_full["connector (POST /v1/events)"]
    floor = max(
        (load for load in at_full.values() if load is not connector), key=lambda f: f.per_second
    )
    print(
        f"\nEvents at full speed for {args.seconds:g} s: wrk -t2 -c16, each event its own "
        f"messageId; the floor is a bare Flask app (bench/floor.py) under the same gunicorn "
        f"settings\n"
    )
    print(beside_floor(at_full, connector, floor, by_rate=True))


# wrk's body: `%s` is each event's own messageId (see bench.loadgen.wrk).
EVENT = (
    '{"event": "Bench Event", "from": "+14155550123", "messageId": "%s", '
    '"properties": {"channel": "voice"}}'
)


if __name__ == "__main__":
    main()
