"""Which value of a metric's curve is its best, and at which step: the rule a sweep ranks its
trials' curves by (the worker records it) and `gradq compare` shows."""

import math
from collections.abc import Iterable

LOWER_IS_BETTER = {"cost"}


def best_point(metric: str, points: Iterable[tuple[int, float | None]]) -> tuple[float, int] | None:
    """(value, step) of the best finite value among ``points`` (step, value): the lowest cost,
    the highest accuracy; the first wins a tie. None when no value is finite."""
    finite = [(value, step) for step, value in points if value is not None and math.isfinite(value)]
    if not finite:
        return None
    pick = min if metric in LOWER_IS_BETTER else max
    best = pick(value for value, _ in finite)
    return best, next(step for value, step in finite if value == best)
