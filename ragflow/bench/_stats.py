"""Percentiles and the p50/p90/p99/max summary every table and report of the benchmark shows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method (a value that was measured)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True, slots=True)
class Summary:
    """p50/p90/p99/max of a list of seconds; ``count`` is how many."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(
            len(values),
            percentile(values, 0.5),
            percentile(values, 0.9),
            percentile(values, 0.99),
            max(values) if values else math.nan,
        )
