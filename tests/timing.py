"""Wall-clock assertions that a loaded CI machine cannot fail by one bad draw: the median of several runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def median_seconds(fn: Callable[[], T], runs: int = 3, setup: Callable[[], object] | None = None) -> tuple[float, T]:
    """``(median wall-clock seconds of runs calls of fn, fn's last result)``; ``setup`` runs untimed before each
    call (e.g. to clear a cache, so every run does the work being timed)."""
    if runs < 1 or runs % 2 == 0:
        raise ValueError(f"runs must be odd and >= 1 (a real median), got {runs}")
    times, result = [], None
    for _ in range(runs):
        if setup is not None:
            setup()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
