"""Helpers shared by the benchmarks: percentiles and Markdown tables."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


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
