"""Pareto dominance and exact hypervolume, every objective **maximized**.

A point p dominates q when p_k >= q_k for every objective k and p_k > q_k for at least one. The *hypervolume* of a
point set S with respect to a reference point r is the Lebesgue measure of the region it dominates above r:

    HV(S; r) = λ( ∪_{p ∈ S} [r_1, p_1] × … × [r_K, p_K] ).

It is the one scalar that rewards a frontier both for being far from r and for being spread out, and it is strictly
monotone in Pareto dominance: if S' dominates S then HV(S') >= HV(S). Points that do not strictly exceed r in every
objective dominate a zero-volume box and contribute nothing, so the reference point must be stated with every value
(``docs/experiments.md``: we use the worst possible value of each objective, 0 for success rates).

Exact algorithms (no sampling):

* K = 1: max_p (p_1 − r_1).
* K = 2: sort the non-dominated points by objective 1 descending (objective 2 is then ascending) and sum the
  staircase rectangles Σ_i (p_i1 − r_1)(p_i2 − p_{i−1,2}), with p_{0,2} = r_2. O(n log n), vectorized.
* K >= 3: hypervolume by slicing objectives (HSO, While et al. 2006): sort by the last objective descending,
  z_1 >= … >= z_n; the slab between z_{i+1} (z_{n+1} = r_K) and z_i is covered by exactly the (K−1)-dim
  projections of points 1..i, so HV_K = Σ_i (z_i − z_{i+1}) · HV_{K−1}(proj(p_1..p_i)), recursing down to the 2-D
  sweep. It makes C(n+K−3, K−2) calls of the 2-D sweep for n non-dominated points: fine for the tens of points of
  a weight sweep at K <= 4, but 8·10^5 calls at n = 10, K = 16.
* Many objectives, few points (RVPO's setting has 17 reward channels): inclusion–exclusion over the subsets T of
  the n non-dominated points, HV = Σ_{T ≠ ∅} (−1)^{|T|+1} Π_k (min_{p ∈ T} p_k − r_k), exact and O(2^n · K)
  whatever K is; vectorized over subsets in chunks. Used when it is cheaper than slicing.

Beyond both exact budgets (:data:`EXACT_BUDGET` elementary operations) :func:`hypervolume_estimate` uses Monte Carlo:
M points uniform in the box B = [r, max_p p] (volume V), HV ≈ V · (fraction dominated by some point). Each sample
is a bounded indicator, so by Hoeffding's inequality |HV_MC − HV| <= V · sqrt(ln(2/δ) / (2M)) with probability
>= 1 − δ; the estimate reports that bound (δ = 0.05, M = 200 000 by default: bound = 0.0030·V) and a fixed seed
makes it reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def as_points(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """``[n, K]`` float64 array; raises on a ragged/empty-dimension input or NaN/inf (a frontier must be total)."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(f"points must be a 2-D array [n, K], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("points contain NaN or inf")
    return arr


def dominates(p: Sequence[float], q: Sequence[float]) -> bool:
    """True when p Pareto-dominates q (>= everywhere, > somewhere)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return bool(np.all(p >= q) and np.any(p > q))


def non_dominated(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Boolean mask ``[n]`` of the points no other point dominates (duplicates of a frontier point are all kept).

    Vectorized pairwise test: D[i, j] = all_k(p_ik >= p_jk) & any_k(p_ik > p_jk); point j is kept when column j of
    D is all False. Memory O(n² K), fine up to a few thousand points.
    """
    arr = as_points(points)
    if arr.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    ge = (arr[:, None, :] >= arr[None, :, :]).all(axis=2)  # [n, n]: i >= j everywhere
    gt = (arr[:, None, :] > arr[None, :, :]).any(axis=2)  # [n, n]: i > j somewhere
    return ~(ge & gt).any(axis=0)


def pareto_front(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The non-dominated points, unique, sorted by objective 1 ascending (then the others): ready to draw."""
    arr = as_points(points)
    front = np.unique(arr[non_dominated(arr)], axis=0)  # np.unique sorts lexicographically
    return front


#: Largest exact computation (2-D sweeps for slicing, subset-objective products for inclusion–exclusion).
EXACT_BUDGET = 4_000_000
MC_SAMPLES = 200_000
MC_DELTA = 0.05


@dataclass(frozen=True)
class HypervolumeEstimate:
    """``value`` and how it was obtained: ``method`` in {"slicing", "inclusion-exclusion", "monte-carlo"};
    ``bound``: 0 when exact, else the Hoeffding half-width that holds with probability ``1 - delta``."""

    value: float
    method: str
    bound: float = 0.0
    delta: float = 0.0


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float]) -> float:
    """Hypervolume dominated by ``points`` [n, K] above ``reference`` [K] (all objectives maximized): exact within
    :data:`EXACT_BUDGET`, else the Monte-Carlo estimate of :func:`hypervolume_estimate` (see its error bound).

    Points not strictly above the reference in every objective contribute nothing. Returns 0.0 for an empty set.
    """
    return hypervolume_estimate(points, reference).value


def exact_method(n: int, k: int, budget: int = EXACT_BUDGET) -> str | None:
    """The cheaper exact algorithm for n non-dominated points in K objectives, or None beyond ``budget``."""
    slicing = math.comb(n + k - 3, k - 2) if k >= 3 else n
    subsets = (2**n) * k if n < 60 else math.inf
    if min(slicing, subsets) > budget:
        return None
    return "slicing" if slicing <= subsets else "inclusion-exclusion"


def hypervolume_estimate(
    points: Sequence[Sequence[float]] | np.ndarray,
    reference: Sequence[float],
    *,
    budget: int = EXACT_BUDGET,
    samples: int = MC_SAMPLES,
    delta: float = MC_DELTA,
    seed: int = 0,
) -> HypervolumeEstimate:
    """Hypervolume with the method used and its error bound (0 when exact); see the module docstring."""
    arr = _dominating(points, reference)
    if arr is None:
        return HypervolumeEstimate(0.0, "slicing")
    n, k = arr.shape
    method = exact_method(n, k, budget)
    if method == "slicing":
        return HypervolumeEstimate(float(_hv(arr)), method)
    if method == "inclusion-exclusion":
        return HypervolumeEstimate(_hv_inclusion_exclusion(arr), method)
    rng = np.random.default_rng(seed)
    top = arr.max(axis=0)
    volume = float(np.prod(top))
    hits = 0
    for start in range(0, samples, 20_000):
        m = min(20_000, samples - start)
        u = rng.random((m, k)) * top  # [m, K] uniform in the box [0, top]
        hits += int((arr[None, :, :] >= u[:, None, :]).all(axis=2).any(axis=1).sum())
    bound = volume * math.sqrt(math.log(2 / delta) / (2 * samples))
    return HypervolumeEstimate(volume * hits / samples, "monte-carlo", bound, delta)


def _dominating(points, reference) -> np.ndarray | None:
    """Non-dominated points strictly above the reference, shifted so the reference is the origin (None: empty)."""
    arr = as_points(points)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    if arr.shape[0] == 0:
        return None
    if arr.shape[1] != ref.shape[0]:
        raise ValueError(f"points have K={arr.shape[1]} objectives but the reference point has {ref.shape[0]}")
    if not np.isfinite(ref).all():
        raise ValueError("reference point contains NaN or inf")
    arr = arr[(arr > ref).all(axis=1)]
    if arr.shape[0] == 0:
        return None
    return np.unique(arr[non_dominated(arr)], axis=0) - ref


def _hv_inclusion_exclusion(shifted: np.ndarray) -> float:
    """Σ over non-empty subsets T of (−1)^{|T|+1} Π_k min_{p∈T} p_k, subsets enumerated by bit masks in chunks."""
    n, k = shifted.shape
    total = 0.0
    bits = 1 << np.arange(n)
    chunk = max(1, 2_000_000 // (n * k))  # bounds the [chunk, n, K] temporary to ~16 MB
    for start in range(1, 2**n, chunk):
        masks = np.arange(start, min(start + chunk, 2**n))
        member = (masks[:, None] & bits[None, :]) > 0  # [m, n]
        mins = np.where(member[:, :, None], shifted[None, :, :], np.inf).min(axis=1)  # [m, K]
        sign = np.where(member.sum(1) % 2 == 1, 1.0, -1.0)
        total += float((sign * mins.prod(axis=1)).sum())
    return total


def _hv(shifted: np.ndarray) -> float:
    """Hypervolume of points already shifted so the reference is the origin (all coordinates > 0)."""
    n, k = shifted.shape
    if n == 0:
        return 0.0
    if k == 1:
        return float(shifted[:, 0].max())
    if k == 2:
        return _hv2(shifted)
    order = np.argsort(-shifted[:, -1], kind="stable")
    pts = shifted[order]
    z = pts[:, -1]
    heights = z - np.append(z[1:], 0.0)  # [n] slab thickness below each point's last coordinate
    total = 0.0
    for i in np.flatnonzero(heights > 0):
        total += heights[i] * _hv(_prune(pts[: i + 1, :-1]))
    return total


def _hv2(shifted: np.ndarray) -> float:
    """2-D staircase sum; tolerant of dominated points (they add zero-height steps)."""
    order = np.lexsort((-shifted[:, 1], -shifted[:, 0]))  # x descending, ties: y descending
    x, y = shifted[order, 0], shifted[order, 1]
    ymax = np.maximum.accumulate(y)  # best y among points with x' >= x
    steps = np.diff(np.concatenate(([0.0], ymax)))  # only increases of the running max add area
    return float((x * steps).sum())


def _prune(pts: np.ndarray) -> np.ndarray:
    """Drop dominated points of a projection before recursing (keeps the recursion small; exact either way)."""
    if pts.shape[0] <= 2:
        return pts
    return pts[non_dominated(pts)]
