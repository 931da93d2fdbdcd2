"""Summary statistics for experiment results: t confidence intervals, monotonicity, centered moving averages and
the smoothing window every curve of the report uses (:func:`smoothing_window`).

Nothing here needs scipy: the Student-t quantile is :func:`varpo.significance.t_quantile` (the regularized
incomplete beta function, inverted by bisection).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from varpo import significance


def t_quantile(confidence: float, df: int) -> float:
    """Two-sided critical value t* with P(|T_df| <= t*) = confidence (e.g. 0.95, df=2 -> 4.303).

    The quantile itself is :func:`varpo.significance.t_quantile` (the one Student-t in the project)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    return significance.t_quantile(0.5 + confidence / 2, int(df))


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values with a two-sided t confidence interval: mean ± t*_{n−1} · s / √n (s: unbiased std).

    ``half_width`` is NaN when n < 2 (one seed has no spread to estimate); ``std`` likewise.
    """

    mean: float
    half_width: float
    std: float
    n: int
    confidence: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def format(self, digits: int = 3) -> str:
        if self.n == 0:
            return "n/a"
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """Mean and t-interval of the finite entries of ``values`` (NaN entries are dropped and not counted)."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, math.nan, 0, confidence)
    mean = float(arr.mean())
    if n == 1:
        return MeanCI(mean, math.nan, math.nan, 1, confidence)
    std = float(arr.std(ddof=1))
    return MeanCI(mean, t_quantile(confidence, n - 1) * std / math.sqrt(n), std, n, confidence)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation ρ = cov(x, y) / (σ_x σ_y); NaN when fewer than 2 points or either side is constant."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in shape: {xa.shape} vs {ya.shape}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if xa.size < 2:
        return math.nan
    dx, dy = xa - xa.mean(), ya - ya.mean()
    denom = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    if denom == 0.0:
        return math.nan
    return float((dx * dy).sum() / denom)


def monotonicity(scores: Sequence[float]) -> float:
    """VL Norm's monotonicity score (Table 5): Pearson correlation between the evaluation index {0, 1, 2, …} and
    the held-out scores {score_0, score_Δ, score_2Δ, …} taken every Δ steps. +1: the score rose at every
    evaluation by a constant amount; 0: no linear trend; NaN: fewer than 2 evaluations or a constant score.

    The paper correlates with the index, not the step number; with evenly spaced evaluations the two are identical
    (Pearson is invariant to affine maps of either variable).
    """
    return pearson(np.arange(len(scores), dtype=np.float64), scores)


def moving_average(values: Sequence[float], window: int = 15) -> np.ndarray:
    """Centered moving average (the papers' curves use window 15): out_i = mean of the finite values in
    [i − ⌊w/2⌋, i + ⌊w/2⌋], the window shrinking at both ends (pandas ``rolling(w, center=True, min_periods=1)``).
    NaN entries are skipped; an all-NaN window gives NaN. Even w uses the window [i − w/2, i + w/2 − 1].
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = arr.size
    if n == 0:
        return arr.copy()
    finite = np.isfinite(arr)
    csum = np.concatenate(([0.0], np.cumsum(np.where(finite, arr, 0.0))))
    ccnt = np.concatenate(([0], np.cumsum(finite)))
    idx = np.arange(n)
    lo = np.clip(idx - window // 2, 0, n)
    hi = np.clip(idx - window // 2 + window, 0, n)
    counts = ccnt[hi] - ccnt[lo]
    sums = csum[hi] - csum[lo]
    out = np.full(n, np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def smoothing_window(n_points: int, window: int = 15) -> int:
    """The centered moving-average window actually used on a series of ``n_points`` points: the requested window
    (the papers' 15), capped at a quarter of the series and the cap made odd so the window stays centred:

        w = min(window, c),  c = max(1, ⌊n / 4⌋) − [⌊n / 4⌋ even and ≥ 2]

    n = 4 → 1 (drawn unsmoothed: a 15-step window over 4 steps flattens every curve to its mean), n = 12 → 3,
    n = 30 → 7, n ≥ 60 → 15. One rule for every curve the report draws (training dynamics and held-out curves),
    so sparse series are never averaged into flat lines.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    cap = max(1, int(n_points) // 4)
    if cap % 2 == 0:
        cap -= 1
    return min(int(window), cap)
