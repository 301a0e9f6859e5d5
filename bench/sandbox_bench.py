"""Sandbox benchmark: ingest rate of N synthetic profiles, then Profile API latency on loopback.

    python -m bench.sandbox_bench --profiles 100000 --requests 6000 --concurrency 1,8

Ingest runs in this process (identity resolution into SQLite, as `connector sandbox --data`
does); the Profile API is then served by a separate `connector sandbox --db` process, so the
load generator and the server do not share an interpreter. Lookups use pooled keep-alive
connections, phone identifiers sent as %2B, and a mix of the sections a profile card needs;
one client shows the latency of a request alone, more show the server's throughput.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

from bench.common import percentiles, table
from connector.sandbox import Sandbox, SandboxConfig
from connector.sandbox.datagen import synthetic_phone, write_synthetic
from connector.sandbox.process import sandbox_process

DATA = Path(__file__).resolve().parent / "data"
SPACE, TOKEN = "spa_bench", "bench-token"
SECTIONS = {
    "traits": {"include": "name,email,phone,plan,lifetime_value,city,customer_since"},
    "audiences": {"class": "audience"},
    "events": {"limit": "10"},
    "external_ids": {},
    "links": {},
}


def ingest(profiles: int, seed: int) -> Path:
    source = DATA / f"synthetic-{profiles}-{seed}.jsonl"
    if not source.exists():
        with source.open("w", encoding="utf-8") as file:
            write_synthetic(file, profiles, seed)
    db = DATA / f"synthetic-{profiles}-{seed}.sqlite"
    for leftover in DATA.glob(db.name + "*"):
        leftover.unlink()
    sandbox = Sandbox(SandboxConfig(space_id=SPACE, token=TOKEN, db_path=db))
    report = sandbox.load(source, rebase_time=True)
    counts = sandbox.store.counts()
    sandbox.close()
    print(
        f"ingest: {report.messages:,} messages -> {counts['users']:,} profiles, "
        f"{counts['accounts']:,} accounts, {counts['events']:,} events in "
        f"{report.seconds:.1f}s = {report.rate:,.0f} messages/s "
        f"({counts['users'] / report.seconds:,.0f} profiles/s)"
    )
    return db


def load(url: str, profiles: int, requests: int, concurrency: int) -> None:
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[int, int] = defaultdict(int)
    lock = threading.Lock()
    per_worker = requests // concurrency

    def worker(number: int) -> None:
        rng = random.Random(number)
        with httpx.Client(base_url=url, auth=(TOKEN, ""), timeout=10) as client:
            for _ in range(per_worker):
                section = rng.choice(list(SECTIONS))
                phone = synthetic_phone(rng.randrange(profiles)).replace("+", "%2B")
                path = "traits" if section == "audiences" else section
                started = time.perf_counter()
                response = client.get(
                    f"/v1/spaces/{SPACE}/collections/users/profiles/phone:{phone}/{path}",
                    params=SECTIONS[section],
                )
                elapsed = time.perf_counter() - started
                with lock:
                    latencies[section].append(elapsed)
                    statuses[response.status_code] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    everything = [s for samples in latencies.values() for s in samples]
    rows = [
        (name, len(samples), *percentiles(samples).values())
        for name, samples in sorted(latencies.items())
    ]
    rows.append(("all", len(everything), *percentiles(everything).values()))
    print(
        f"\nProfile API on loopback, {concurrency} pooled clients, "
        f"{len(everything) / wall:,.0f} requests/s, statuses {dict(statuses)}"
    )
    print(table(["section", "requests", "p50 ms", "p95 ms", "p99 ms"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--requests", type=int, default=6_000)
    parser.add_argument(
        "--concurrency",
        default="1,8",
        help="comma-separated numbers of concurrent clients, one run each",
    )
    args = parser.parse_args()
    DATA.mkdir(exist_ok=True)
    db = ingest(args.profiles, args.seed)
    with sandbox_process(
        "--db", str(db), "--space-id", SPACE, "--token", TOKEN, "--rate-limit", "0"
    ) as sandbox:
        for concurrency in (int(n) for n in args.concurrency.split(",")):
            load(sandbox.url, args.profiles, args.requests, concurrency)


if __name__ == "__main__":
    main()
