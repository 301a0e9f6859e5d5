"""The sandbox's count of the most Profile API requests that arrived within one second."""

from __future__ import annotations

import pytest

from connector.sandbox.stats import most_in_one_second


@pytest.mark.parametrize(
    ("arrivals", "most"),
    [
        ([], 0),
        ([5.0], 1),
        ([0.0, 0.5, 0.99, 1.0, 1.5], 3),  # 0.0-0.99, then 0.5-1.49: a second is [t, t + 1)
        ([0.0, 1.0, 2.0, 3.0], 1),
        ([0.0] * 10 + [0.999] * 5 + [1.0] * 7, 15),
    ],
)
def test_most_in_one_second(arrivals: list[float], most: int) -> None:
    assert most_in_one_second(arrivals) == most
