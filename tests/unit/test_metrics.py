"""The arithmetic behind the console's "last minutes": histogram quantiles and deltas."""

from __future__ import annotations

import math

from connector.metrics import Reading, delta_buckets, quantile, total

NAME = "connector_upstream_request_seconds"


def reading(section: str, buckets: dict[float, float]) -> Reading:
    return {
        (f"{NAME}_bucket", (("le", str(le)), ("section", section))): count
        for le, count in buckets.items()
    }


def test_a_quantile_interpolates_within_its_bucket() -> None:
    buckets = {0.01: 0.0, 0.1: 50.0, 1.0: 100.0, math.inf: 100.0}
    assert quantile(buckets, 0.5) == 0.1
    p25 = quantile(buckets, 0.25)
    assert p25 is not None and math.isclose(p25, 0.055)
    p95 = quantile(buckets, 0.95)
    assert p95 is not None and math.isclose(p95, 0.1 + 0.9 * 0.9)


def test_no_observations_no_quantile_and_past_the_last_bound_its_bound() -> None:
    assert quantile({0.1: 0.0, math.inf: 0.0}, 0.5) is None
    assert quantile({}, 0.5) is None
    assert quantile({0.1: 1.0, math.inf: 10.0}, 0.95) == 0.1


def test_the_window_is_the_difference_of_two_readings() -> None:
    before = reading("users/traits", {0.1: 10.0, math.inf: 10.0})
    now = {
        **reading("users/traits", {0.1: 10.0, math.inf: 20.0}),
        **reading("users/events", {0.1: 5.0, math.inf: 5.0}),
    }
    assert delta_buckets(now, before, NAME, section="users/traits") == {0.1: 0.0, math.inf: 10.0}
    assert quantile(delta_buckets(now, before, NAME, section="users/traits"), 0.5) == 0.1
    assert total(now, f"{NAME}_bucket", le="inf") == 25.0
