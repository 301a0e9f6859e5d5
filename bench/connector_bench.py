"""The connector vs a naive Studio Function, side by side, against a sandbox with 40 ms latency.

    python -m bench.connector_bench --profiles 2000 --lookups 400 --concurrency 8

The connector runs under gunicorn (`connector serve`, 2 workers); the sandbox is a separate
`connector sandbox` process with `--latency-ms 40` on every Profile API request. Both sides look
up the same callers by phone and fetch the same sections (traits, audiences, computed traits,
external ids, events, links, each linked account's traits):

- connector: cold lookups (each caller for the first time), then warm ones (the same callers
  again; each gunicorn worker has its own cache, so warm passes repeat until both are warm);
- baseline: what a hand-written Studio Function does: a new connection per lookup, sections
  fetched one after another, no cache (so cold and warm are alike).

Upstream calls per lookup are counted at the sandbox. Segment's per-space rate limit is lifted in
the sandbox for the run, so that latency is measured rather than throttling; the capacity each
side would have under the real 100 requests/s follows from its calls per lookup. One agent makes
every connector lookup (with its Flex token, checked once per worker), its per-agent limit lifted
for the same reason.
"""

from __future__ import annotations

import argparse
import itertools
import random
import ssl
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from twilio.request_validator import RequestValidator

from bench.common import percentiles, table, timed_concurrently
from bench.floor import FLOORS, floor_served
from bench.loadgen import Load, beside_floor, hey
from connector.sandbox.control_client import SandboxControl
from connector.sandbox.core import SandboxConfig
from connector.sandbox.datagen import synthetic_phone, write_synthetic
from connector.sandbox.process import sandbox_process
from connector.serving.processes import served_process

SPACE, TOKEN = "spa_bench", "bench-token"
SANDBOX = SandboxConfig()  # its Twilio account checks the benchmark agent's Flex token
TRAIT_KEYS = "plan,lifetime_value,customer_since,city,name,first_name,last_name"
CONFIG = f"""
[connection]
friendly_name = "Benchmark"
space_id = "{SPACE}"
profile_api_url = "{{url}}"

[lookup]
rate_limit = 100000
card_ttl_seconds = 600

[auth]
agent_lookups_per_minute = 1000000

[[traits]]
key = "plan"
label = "Plan"

[[traits]]
key = "lifetime_value"
label = "Lifetime value"
format = "currency"

[[traits]]
key = "customer_since"
label = "Customer since"
format = "date"

[[traits]]
key = "city"
label = "City"
"""


TLS = ssl.create_default_context()


def naive_lookup(sandbox_url: str, phone: str) -> bool:
    """A Studio Function's lookup: one new connection, every section in turn, no cache."""
    base = f"{sandbox_url}/v1/spaces/{SPACE}/collections"
    who = "phone:" + phone.replace("+", "%2B")
    # A new connection per lookup, as a Function makes; one TLS context for all of them, as
    # Node keeps one (a new httpx client would load the CA store each time: 45 ms of Python's).
    with httpx.Client(auth=(TOKEN, ""), timeout=10, verify=TLS) as http:
        first = http.get(f"{base}/users/profiles/{who}/traits", params={"include": TRAIT_KEYS})
        if first.status_code == 404:
            return False
        for section, params in (
            ("traits", {"class": "audience"}),
            ("traits", {"class": "computed_trait"}),
            ("external_ids", {}),
            ("events", {"limit": "10"}),
        ):
            http.get(f"{base}/users/profiles/{who}/{section}", params=params)
        links = http.get(f"{base}/users/profiles/{who}/links").json()["data"]
        for link in links:
            for external in link["external_ids"]:
                http.get(f"{base}/accounts/profiles/group_id:{external['id']}/traits")
    return True


def connector_lookup(client: httpx.Client, phone: str) -> bool:
    card = client.get("/v1/cards", params={"from": phone}).json()
    return bool(card["found"])


def measured(
    control: SandboxControl, phones: list[str], concurrency: int, lookup: Callable[[str], bool]
) -> dict[str, Any]:
    def one(phone: str) -> None:
        if not lookup(phone):
            raise RuntimeError(f"no profile for {phone}: the data and the lookups disagree")

    before = control.stats()["profile_api"]["requests"]
    latencies, wall = timed_concurrently(phones, concurrency, one)
    calls = control.stats()["profile_api"]["requests"] - before
    return {**percentiles(latencies), "calls": calls / len(phones), "rate": len(phones) / wall}


def warm_up(
    control: SandboxControl, phones: list[str], concurrency: int, lookup: Callable[[str], bool]
) -> int:
    """Repeat passes until one costs no upstream call: each gunicorn worker has its own cache."""
    for passes in range(1, 21):
        if measured(control, phones, concurrency, lookup)["calls"] == 0:
            return passes
    return 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=2000)
    parser.add_argument("--lookups", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="connector serve instances (more than one share a Redis: --redis-url)",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="REDIS_URL for the instances (default with --instances 2+: the local Redis, db 14)",
    )
    parser.add_argument("--rate", type=float, default=300, help="warm lookups/s (hey: 10 clients)")
    parser.add_argument("--seconds", type=float, default=10, help="of each paced warm run")
    args = parser.parse_args()
    if args.instances > 1 and args.redis_url is None:
        args.redis_url = "redis://127.0.0.1:6379/14"
    rng = random.Random(7)
    chosen = rng.sample(range(args.profiles), 2 * args.lookups + SCREEN_POPS)
    connector_phones = [synthetic_phone(n) for n in chosen[: args.lookups]]
    naive_phones = [synthetic_phone(n) for n in chosen[args.lookups : 2 * args.lookups]]
    screen_pop_phones = [synthetic_phone(n) for n in chosen[2 * args.lookups :]]

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "profiles.jsonl"
        with data.open("w", encoding="utf-8") as file:
            write_synthetic(file, args.profiles, seed=1)
        with sandbox_process(
            "--data",
            str(data),
            "--rebase-time",
            "--space-id",
            SPACE,
            "--token",
            TOKEN,
            "--rate-limit",
            "0",
            "--latency-ms",
            str(args.latency_ms),
        ) as sandbox:
            control = SandboxControl(sandbox.url)
            config = Path(tmp) / "connection.toml"
            config.write_text(CONFIG.replace("{url}", sandbox.url), encoding="utf-8")
            env = {"SEGMENT_PROFILE_API_TOKEN": TOKEN, **SANDBOX.twilio_environment(sandbox.url)}
            if args.redis_url:
                env["REDIS_URL"] = args.redis_url
            agent = control.issue_agent_token()["token"]
            with ExitStack() as stack:
                servers = [
                    stack.enter_context(
                        served_process(config, env, workers=args.workers, threads=32)
                    )
                    for _ in range(args.instances)
                ]
                clients = [
                    stack.enter_context(
                        httpx.Client(
                            base_url=server.url,
                            timeout=15,
                            limits=httpx.Limits(max_connections=64),
                            headers={"Authorization": f"Bearer {agent}"},
                        )
                    )
                    for server in servers
                ]
                turn = itertools.count()

                def through_connector(phone: str) -> bool:
                    # Instances in turn: a caller meets another instance on the next pass.
                    return connector_lookup(clients[next(turn) % len(clients)], phone)

                cold = measured(control, connector_phones, args.concurrency, through_connector)
                args.warm_passes = warm_up(
                    control, connector_phones, args.concurrency, through_connector
                )
                warm = measured(control, connector_phones, args.concurrency, through_connector)
                ahead = screen_pop(
                    control, servers[0].url, agent, screen_pop_phones, args.concurrency
                )
                # Warm lookups at a paced rate, by hey (a Python client would add its own ms).
                at_rate = {
                    "connector": hey(
                        f"{servers[0].url}/v1/cards?from={quote(connector_phones[0])}",
                        args.seconds,
                        WARM_CLIENTS,
                        args.rate / WARM_CLIENTS,
                        {"Authorization": f"Bearer {agent}"},
                        server_pid=servers[0].process.pid,
                    )
                }

            def naive(phone: str) -> bool:
                return naive_lookup(sandbox.url, phone)

            naive_cold = measured(control, naive_phones, args.concurrency, naive)
            naive_warm = measured(control, naive_phones, args.concurrency, naive)
            control.close()
        for name, served in FLOORS.items():
            at_rate[name] = floor_at_rate(served, args)
    report(args, cold, warm, naive_cold, naive_warm)
    print(
        f"\nScreen pop ahead of the agent: a Studio lookup (signed as Twilio signs) for each of "
        f"{SCREEN_POPS} new callers, then the agents' cards {AGENT_AFTER:g} s after the last: "
        f"card p50 {ahead['p50']:.1f} ms, p99 {ahead['p99']:.1f} ms (a cold card: "
        f"{cold['p50']:.1f} ms); {ahead['calls']:.1f} upstream calls per card."
    )
    report_at_rate(args, at_rate)


AGENT_AFTER = 2.0  # seconds between the Studio lookups and the agents' cards
SCREEN_POPS = 100  # callers of the screen-pop measure


def screen_pop(
    control: SandboxControl, url: str, agent: str, phones: list[str], concurrency: int
) -> dict[str, float]:
    """Calls as they go: Studio's Make HTTP Request widget looks each caller up (the flow
    routes the call), then, AGENT_AFTER seconds after the last of them, each agent's plugin
    asks for the card."""
    signer = RequestValidator(SANDBOX.twilio_auth_token)
    studio_url = f"{url}/v1/studio/lookup"
    with httpx.Client(timeout=15, limits=httpx.Limits(max_connections=64)) as http:

        def studio(phone: str) -> None:
            form = {"From": phone}
            signature = signer.compute_signature(studio_url, form)
            http.post(studio_url, data=form, headers={"X-Twilio-Signature": signature})

        def agent_card(phone: str) -> bool:
            card = http.get(
                f"{url}/v1/cards",
                params={"from": phone},
                headers={"Authorization": f"Bearer {agent}"},
            )
            return bool(card.json()["found"])

        timed_concurrently(phones, concurrency, studio)
        time.sleep(AGENT_AFTER)
        return measured(control, phones, concurrency, agent_card)


WARM_CLIENTS = 10


def floor_at_rate(served: list[str], args: argparse.Namespace) -> Load:
    with floor_served(served, args.workers) as floor:
        return hey(
            f"{floor.url}/floor",
            args.seconds,
            WARM_CLIENTS,
            args.rate / WARM_CLIENTS,
            {},
            server_pid=floor.process.pid,
        )


def report_at_rate(args: argparse.Namespace, at_rate: dict[str, Load]) -> None:
    floor = min(
        (load for name, load in at_rate.items() if name != "connector"), key=lambda f: f.p50
    )
    connector = at_rate["connector"]
    print(
        f"\nWarm lookups at {args.rate:g}/s for {args.seconds:g} s (hey -c {WARM_CLIENTS} -q "
        f"{args.rate / WARM_CLIENTS:g}), one warm caller; the floor is a bare Flask app "
        f"(bench/floor.py) under the same gunicorn settings\n"
    )
    print(beside_floor(at_rate, connector, floor, by_rate=False))


def report(
    args: argparse.Namespace,
    cold: dict[str, Any],
    warm: dict[str, Any],
    naive_cold: dict[str, Any],
    naive_warm: dict[str, Any],
) -> None:
    def row(name: str, c: dict[str, Any], w: dict[str, Any]) -> list[object]:
        return [
            name,
            c["p50"],
            c["p95"],
            c["p99"],
            w["p50"],
            w["p95"],
            w["p99"],
            c["calls"],
            w["calls"],
            c["rate"],
            w["rate"],
        ]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:,.1f}x" if b else "n/a"

    print(
        f"\n{args.lookups} lookups per pass, {args.concurrency} at a time, {args.profiles:,} "
        f"profiles, {args.latency_ms:g} ms added to every Profile API request, connector "
        f"under gunicorn: {args.instances} instance(s) of {args.workers} workers"
        f"{' sharing Redis' if args.redis_url else ''}; warm: measured once a pass made no "
        f"upstream call ({args.warm_passes} warm-up pass(es))\n"
    )
    headers = [
        "",
        "cold p50 ms",
        "cold p95 ms",
        "cold p99 ms",
        "warm p50 ms",
        "warm p95 ms",
        "warm p99 ms",
        "upstream calls/lookup (cold)",
        "(warm)",
        "lookups/s (cold)",
        "(warm)",
    ]
    rows = [row("connector", cold, warm), row("naive Studio Function", naive_cold, naive_warm)]
    rows.append(
        [
            "naive / connector",
            *(ratio(naive_cold[k], cold[k]) for k in ("p50", "p95", "p99")),
            *(ratio(naive_warm[k], warm[k]) for k in ("p50", "p95", "p99")),
            ratio(naive_cold["calls"], cold["calls"]),
            ratio(naive_warm["calls"], warm["calls"]) if warm["calls"] else "all cached",
            ratio(cold["rate"], naive_cold["rate"]),
            ratio(warm["rate"], naive_warm["rate"]),
        ]
    )
    print(table(headers, rows))
    print(
        f"\nCold p50 in round trips to Segment ({args.latency_ms:g} ms each): connector "
        f"{cold['p50'] / args.latency_ms:.2f}, naive Function "
        f"{naive_cold['p50'] / args.latency_ms:.2f}."
    )
    print(
        f"\nUnder Segment's 100 requests/s per space: the connector sustains about "
        f"{100 / cold['calls']:,.0f} cold lookups/s; the naive Function "
        f"{100 / naive_cold['calls']:,.0f}."
    )


if __name__ == "__main__":
    main()
