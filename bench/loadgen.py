"""Debian's `hey` and `wrk` as the load generators of the speed benchmarks.

A Python thread pool as the client adds milliseconds of its own and hides the server's figures;
these are written in Go and C. Install them with `sudo apt-get install -y hey wrk`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import percentiles, table


@dataclass(frozen=True)
class Load:
    requests: int
    ok: int  # 2xx answers
    per_second: float
    p50: float  # ms
    p95: float
    p99: float
    cpu_ms: float = float("nan")  # the server's workers' CPU per request (user + system)


def require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise SystemExit(f"{tool} is not installed: sudo apt-get install -y hey wrk")
    return found


def header_options(headers: dict[str, str]) -> list[str]:
    """`-H "Name: value"` for each header: hey and wrk take them alike."""
    return [option for name, value in headers.items() for option in ("-H", f"{name}: {value}")]


def workers_cpu(server_pid: int) -> float:
    """CPU seconds used so far by a server's worker processes (Linux: /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    used = 0
    for pid in children:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used += int(fields[11]) + int(fields[12])  # utime, stime
    return used / tick


def hey(
    url: str,
    seconds: float,
    workers: int,
    per_worker: float,
    headers: dict[str, str],
    server_pid: int | None = None,
) -> Load:
    """`workers` clients, each paced at `per_worker` requests/s, for `seconds`; every request's
    latency from hey's CSV, and the CPU the server's workers used per request."""
    cpu_before = workers_cpu(server_pid) if server_pid else 0.0
    command = [require("hey"), "-z", f"{seconds:g}s", "-c", str(workers), "-q", f"{per_worker:g}"]
    command += header_options(headers)
    out = subprocess.run([*command, "-o", "csv", url], capture_output=True, text=True, check=True)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    latencies = [float(row["response-time"]) for row in rows]
    ok = sum(1 for row in rows if row["status-code"].startswith("2"))
    span = max((float(row["offset"]) for row in rows), default=seconds) or seconds
    cpu = (workers_cpu(server_pid) - cpu_before) * 1000 / len(rows) if server_pid else float("nan")
    return Load(len(rows), ok, len(rows) / span, **percentiles(latencies), cpu_ms=cpu)


# Each request its own messageId (the connector would rightly answer a repeat as a duplicate),
# and wrk's own latency distribution printed in microseconds for the figures.
# Each thread has a Lua state of its own, seeded alike: a thread number from setup() keeps two
# threads from making the same ids.
EVENTS_LUA = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local id = string.format("bench-%d-%d-%d", os.time(), tid, counter)
  return wrk.format(nil, nil, nil, string.format(BODY, id))
end
done = function(summary, latency, requests)
  io.write(string.format("figures %d %d %d %d %d %d\\n", summary.requests,
    summary.requests - summary.errors.status - summary.errors.connect - summary.errors.read
      - summary.errors.write - summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def wrk(
    url: str,
    seconds: float,
    threads: int,
    connections: int,
    body: str,
    folder: Path,
    headers: dict[str, str],
    server_pid: int | None = None,
) -> Load:
    """wrk posting `body` (with `%s` where each request's messageId goes) as fast as it can,
    and the CPU the server's workers used per request."""
    cpu_before = workers_cpu(server_pid) if server_pid else 0.0
    script = folder / "events.lua"
    quoted = body.replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(f'BODY = "{quoted}"\n' + EVENTS_LUA, encoding="utf-8")
    command = [require("wrk"), "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s"]
    command += header_options(headers)
    out = subprocess.run(
        [*command, "-s", str(script), url], capture_output=True, text=True, check=True
    )
    match = re.search(r"^figures (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out.stdout, re.M)
    if match is None:
        raise RuntimeError(f"wrk said:\n{out.stdout}\n{out.stderr}")
    requests, ok, micros, p50, p95, p99 = (int(g) for g in match.groups())
    cpu = (workers_cpu(server_pid) - cpu_before) * 1000 / requests if server_pid else float("nan")
    return Load(requests, ok, requests / (micros / 1e6), p50 / 1000, p95 / 1000, p99 / 1000, cpu)


COLUMNS = ["", "requests", "2xx", "per second", "p50 ms", "p95 ms", "p99 ms", "CPU ms/request"]


def beside_floor(loads: dict[str, Load], connector: Load, floor: Load, by_rate: bool) -> str:
    """A table of each load, and a last row of the connector's figures over the floor's (its
    rate too when `by_rate`: at full speed; at a paced rate both answer the same number)."""
    rows: list[list[object]] = [
        [name, load.requests, load.ok, load.per_second, load.p50, load.p95, load.p99, load.cpu_ms]
        for name, load in loads.items()
    ]
    rate = f"{connector.per_second / floor.per_second:.2f}x" if by_rate else ""
    ratios = [
        f"{mine / theirs:.2f}x"
        for mine, theirs in (
            (connector.p50, floor.p50),
            (connector.p95, floor.p95),
            (connector.p99, floor.p99),
            (connector.cpu_ms, floor.cpu_ms),
        )
    ]
    rows.append(["connector / fastest floor", "", "", rate, *ratios])
    return table(COLUMNS, rows)
