"""Helpers shared by the benchmarks: percentiles and Markdown tables."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of samples given in seconds, in milliseconds."""
    if len(samples) < 2:
        only = samples[0] * 1000 if samples else float("nan")
        return {"p50": only, "p95": only, "p99": only}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": cuts[49] * 1000, "p95": cuts[94] * 1000, "p99": cuts[98] * 1000}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, ready for a closing note."""

    def cell(value: object) -> str:
        return f"{value:,.1f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def timed_concurrently(
    items: Sequence[T], concurrency: int, work: Callable[[T], None]
) -> tuple[list[float], float]:
    """Run `work` on every item, `concurrency` at a time: each call's seconds, and the wall time."""
    queue = list(items)
    lock = threading.Lock()
    latencies: list[float] = []

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop()
            started = time.perf_counter()
            work(item)
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started
