"""Percentiles of measured latencies, by the nearest-rank method: each one is a latency that
was observed, and at least q % of the observations are at or below it."""

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The smallest observed value with at least ``q`` % of ``values`` at or below it."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], got {q}")
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


def summary_ms(latencies: Sequence[float], qs=(50, 95, 99, 100)) -> dict[str, float]:
    """{"p50": ms, ...} of latencies in seconds; p100 is named "max"."""
    return {("max" if q == 100 else f"p{q:g}"): 1000 * percentile(latencies, q) for q in qs}
