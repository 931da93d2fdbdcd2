"""Per-group statistics of a reward matrix in scale-robust units, and the quantities built from them.

Numerics: statistics are computed in float64 (rewards of magnitude 1e30 square to 1e60, which overflows float32)
and non-finite rewards (NaN, ±inf) are treated as *missing*: they are excluded from their component's statistics and
their centered deviation is 0, so they never propagate. **Scale robustness**: each group's component is divided by a
power of two s_gk (the largest power of two <= max_i |r_ik|, :func:`varpo.numerics.pow2_scale`) before anything is
summed or squared, and :class:`GroupStats` keeps deviations and stds in those units. Dividing by a power of two is
exact in binary floating point, so wherever the unscaled float64 computation would not overflow or underflow the
results are bit-identical to it; where it would (|r| ~ 1e300 squares to inf, |Δr| ~ 1e-200 squares to 0) they stay
exact instead of turning into 0 or inf. Each group's scale depends only on that group, so groups stay independent.

Standard deviation convention: ``std = sqrt(Σ (x - μ)² / (n - ddof))``; with ``n - ddof <= 0`` (a group of size 1
with ``ddof=1``) the std is defined as 0, i.e. "no signal" — verl instead gives singleton groups mean 0 / std 1,
which turns the raw score into an advantage; we deliberately do not.

:func:`group_stats` is the reference (whole-matrix) computation; :func:`varpo.tiles.fast_group_stats` produces the
same :class:`GroupStats` tile by tile when every reward is present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from varpo.groups import GroupIndex, broadcast, segment_max, segment_sum, segment_sum_sq
from varpo.numerics import (
    F64_MAX,
    STAT_DTYPE,
    dispersion,
    inverse_or_zero,
    needs_scaling,
    pow2_scale,
    pow2_scale_float,
    safe_div,
    valid_mask,
)
from varpo.workspace import Workspace


class LazyDeviations(Protocol):
    """Deviations kept as a recipe instead of an [N, K] matrix (:class:`varpo.tiles.Deviations`)."""

    def project(self, coef: Tensor) -> Tensor: ...

    def full(self) -> Tensor: ...


class GroupStats:
    """Per-component group statistics of a reward matrix (float64), in per-group **scaled units**.

    Group g's component k is measured in units of ``scale[g, k]`` = s_gk (a power of two, see
    :func:`varpo.numerics.pow2_scale`): the real deviation is ``dev * s`` and the real std ``std * s``. z-scores
    and every ratio of same-unit quantities need no conversion.

    Attributes:
        std: ``[P, K]`` group std / s with the requested ddof (0 for groups with ``n - ddof <= 0``).
        count: ``[P, K]`` number of valid samples of that component in the group.
        mean: ``[P, K]`` group mean μ_gk / s.
        sum_sq: ``[P, K]`` Σ_i (r_ik - μ_gk)² / s² (for pooled batch statistics).
        scale: ``[P, K]`` s_gk.
        unit: every scale is 1 (the fast path): scaled units are reward units.
        lazy: on the fast path, the deviations as a tile stream (``project`` without an [N, K] matrix); else None.
        dense_dev: ``[N, K]`` deviations once materialized: set by :func:`group_stats`, and on the fast path by the
            first read of :attr:`dev` (a cache; ``None`` until then). Not frozen: this is the one field that changes.
    """

    __slots__ = ("dense_dev", "std", "count", "mean", "sum_sq", "scale", "unit", "lazy")

    def __init__(
        self,
        dense_dev: Tensor | None,
        std: Tensor,
        count: Tensor,
        mean: Tensor,
        sum_sq: Tensor,
        scale: Tensor,
        unit: bool = False,
        lazy: LazyDeviations | None = None,
    ) -> None:
        if dense_dev is None and lazy is None:
            raise ValueError("GroupStats needs the deviations: dense_dev or lazy")
        self.dense_dev, self.std, self.count, self.mean = dense_dev, std, count, mean
        self.sum_sq, self.scale, self.unit, self.lazy = sum_sq, scale, unit, lazy

    @property
    def tiled(self) -> bool:
        """The deviations are streamed (fast path) and not materialized yet."""
        return self.dense_dev is None

    @property
    def dev(self) -> Tensor:
        """``[N, K]`` centered deviation ``(r - μ_group) / s`` (0 where the reward is missing); on the fast path
        materialized from :attr:`lazy` on first use and kept in :attr:`dense_dev` (registered estimators may use
        it; built-ins project instead)."""
        if self.dense_dev is None:
            self.dense_dev = self.lazy.full()
        return self.dense_dev

    def deviations(self) -> Tensor:
        """``[N, K]`` dev (built-ins call this only when they need every entry, e.g. rvpo)."""
        return self.dev

    def project(self, coef: Tensor) -> Tensor:
        """``[N]`` Σ_k coef dev_ik for ``coef [K]`` (or per group ``[P, K]`` on the fast path)."""
        if self.dense_dev is None:
            return self.lazy.project(coef)
        return self.dense_dev @ coef

    @property
    def real_std(self) -> Tensor:
        """``[P, K]`` σ_gk in reward units (saturates at the float64 maximum instead of overflowing)."""
        return self.std if self.unit else (self.std * self.scale).clamp(max=F64_MAX)


def group_stats(
    rewards: Tensor, index: GroupIndex, ddof: int = 1, valid: Tensor | None = None, all_valid: bool | None = None
) -> GroupStats:
    """NaN-aware per-group, per-component mean/std of ``rewards [N, K]``, in scaled units (see :class:`GroupStats`).

    μ_gk = Σ_{i∈g, valid} r_ik / n_gk ;  σ_gk = sqrt(Σ (r_ik - μ_gk)² / (n_gk - ddof)), 0 if n_gk - ddof <= 0.
    Everything is computed on r / s_gk (exact, |r / s| < 2), two-pass (center first, then square) for accuracy.
    ``valid`` (``[N, K]`` bool) and ``all_valid`` may be passed when already known; ``None`` means "compute it"
    (when everything is valid the masking is skipped). A group whose std is below float64 rounding noise of its
    mean (σ <= 1e-12·|μ|) is treated as constant: σ = 0 and deviations 0 — otherwise ``sum(0.1 × 16) / 16 != 0.1``
    would turn a constant group into ±1 z-scores when eps = 0.
    """
    valid = valid_mask(rewards) if valid is None else valid
    all_valid = bool(valid.all()) if all_valid is None else all_valid
    r = rewards.to(STAT_DTYPE) if all_valid else torch.where(valid, rewards.to(STAT_DTYPE), 0.0)  # [N, K]
    unit = not needs_scaling(r)
    if unit:  # fast path: nothing can overflow or underflow, unit scales change nothing
        scale = torch.ones((index.num_groups, r.shape[1]), dtype=STAT_DTYPE, device=r.device)
    else:
        scale = pow2_scale(segment_max(r.abs(), index))  # [P, K]
        r = r / broadcast(scale, index)
    if all_valid and index.group_size is not None:
        cnt = torch.full((index.num_groups, r.shape[1]), float(index.group_size), dtype=STAT_DTYPE, device=r.device)
    else:
        cnt = segment_sum(valid.to(STAT_DTYPE), index)  # [P, K]
    mean = segment_sum(r, index) / cnt.clamp_min(1.0)  # [P, K]
    dev = r - broadcast(mean, index)  # [N, K]
    if not all_valid:
        dev = torch.where(valid, dev, 0.0)
    sum_sq = segment_sum(dev * dev, index)  # [P, K]
    std = dispersion(sum_sq, cnt, ddof)
    constant = std <= 1e-12 * mean.abs()
    if bool(constant.any()):
        std = torch.where(constant, 0.0, std)
        dev.mul_(broadcast((~constant).to(STAT_DTYPE), index))
    return GroupStats(dense_dev=dev, std=std, count=cnt, mean=mean, sum_sq=sum_sq, scale=scale, unit=unit)


@dataclass(frozen=True)
class Combined:
    """A weighted combination Σ_k w_k x_ik of per-component quantities in per-group units.

    The real value of row i is ``value[i] * unit[g(i)]`` with ``unit = weight_scale · group_scale`` (both powers
    of two); the product is never formed where it could overflow. ``coef [P, K]`` = w_k s_gk / unit_g ∈ [0, 2).
    """

    value: Tensor  # [N]
    coef: Tensor  # [P, K]
    weight_scale: float  # W, power of two
    group_scale: Tensor | None  # [P] S_g = max_k s_gk; None when every S_g is 1 (fast path)

    def eps(self, eps: float) -> Tensor | float:
        """``[P]`` eps / unit_g (0 where that underflows: eps is then negligible against the group's spread)."""
        return eps / self.weight_scale if self.group_scale is None else eps / self.weight_scale / self.group_scale

    def real(self, index: GroupIndex) -> Tensor:
        """``[N]`` the combination in reward units (±inf where it exceeds float64, never NaN)."""
        if self.group_scale is None:
            return self.value * self.weight_scale
        return self.value * broadcast(self.group_scale, index) * self.weight_scale


def combine(stats: GroupStats, weights: Tensor, index: GroupIndex, weight_max: float | None = None) -> Combined:
    """c_i = Σ_k w_k (r_ik - μ_gk) in units of W·S_g (W = :func:`pow2_scale` of max w, S_g = max_k s_gk).

    Exact: every factor that changes units is a power of two. ``weights [K]`` float64, finite, >= 0.
    """
    w_scale = pow2_scale_float(weight_max) if weight_max is not None else float(pow2_scale(weights.max()))
    what = weights / w_scale if w_scale != 1.0 else weights
    if stats.unit:  # fast path (unit scales): one matmul
        return Combined(stats.project(what), what.unsqueeze(0), w_scale, None)
    group_scale = stats.scale.amax(1)  # [P]
    coef = what * (stats.scale / group_scale.unsqueeze(1))  # [P, K]
    value = (stats.dev * broadcast(coef, index)).sum(1)  # [N]
    return Combined(value, coef, w_scale, group_scale)


def combined_std(
    c: Tensor, index: GroupIndex, scorable: Tensor | None, ddof: int = 1, workspace: Workspace | None = None
) -> Tensor:
    """Group std of a combined deviation ``c [N]`` (any units), ``[P]``.

    The combined deviation ``c_i = Σ_k w_k (r_ik - μ_gk)`` has group mean exactly 0 (each component's deviations
    sum to 0 over its valid samples, missing entries contribute 0), so σ_g = sqrt(Σ_{i∈g} c_i² / (n_g - ddof)) where
    n_g counts *scorable* samples (at least one component present); ``scorable=None`` means every sample is.
    ``workspace``: tile buffers for the squares on shuffled ids (:func:`varpo.groups.segment_sum_sq`).
    """
    g = index.group_size
    if scorable is None and g is not None:  # dense: row norms, no [N] temporary (a fresh one costs page faults)
        norm = torch.linalg.vector_norm(c.view(index.num_groups, g), dim=1)  # [P] sqrt(Σ c²)
        if g <= ddof:
            return torch.zeros_like(norm)
        scale = 1.0 / math.sqrt(g - ddof)
        return norm * scale if norm.requires_grad else norm.mul_(scale)  # autograd keeps the norm for backward
    cnt = index.sizes().to(c.dtype) if scorable is None else segment_sum(scorable.to(c.dtype), index)  # [P]
    return dispersion(segment_sum_sq(c, index, workspace), cnt, ddof)


def batch_whiten(x: Tensor, include: Tensor | None, eps: float, ddof: int = 1) -> Tensor:
    """Sample-level batch normalization ``(x - mean) / (std + eps)`` over the rows in ``include`` ``[N]`` bool.

    Rows outside ``include`` (unscorable samples) get 0 and do not enter the statistics; ``include=None`` means
    every row (no masking passes). This is the GDPO batch step as in NVlabs' TRL implementation (per *sample*),
    not verl's ``masked_whiten`` (per *token*).
    """
    if include is None:
        n = max(x.shape[0], 1)
        centered = x - x.sum() / n
        std = dispersion(torch.dot(centered, centered), torch.tensor(float(x.shape[0]), dtype=x.dtype), ddof)
        scale = inverse_or_zero(std + eps)
        return centered * scale if centered.requires_grad else centered.mul_(scale)  # autograd needs `centered`
    w = include.to(x.dtype)
    n = w.sum()
    mean = (x * w).sum() / n.clamp_min(1.0)
    centered = (x - mean) * w
    std = dispersion((centered * centered).sum(), n, ddof)
    return safe_div(centered, std + eps)


def pooled_mean_std(stats: GroupStats, ddof: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Batch (all groups pooled) per-component mean, std and count ``[K]`` in reward units, from group statistics:
    μ = Σ_g n_g μ_g / Σ n_g ;  Σ(r - μ)² = Σ_g [SS_g + n_g (μ_g - μ)²] (parallel variance formula), computed in
    units of the batch's largest group scale (exact powers of two). Costs O(P·K) instead of another pass over the
    [N, K] rewards. Diagnostics only: the std saturates at the float64 maximum.
    """
    if stats.unit:
        if stats.count.dim() == 2 and stats.count.stride() == (0, 0) and stats.count.shape[0] > 0:
            # one size G for every group and component (the dense fast path): n_g = G drops out of the means
            p = stats.count.shape[0]
            n = stats.count[0] * p  # [K]
            mean = stats.mean.sum(0) / p
            spread = stats.mean - mean
            ss = stats.sum_sq.sum(0) + torch.linalg.vecdot(spread, spread, dim=0) * stats.count[0]
            return mean, dispersion(ss, n, ddof), n
        n = stats.count.sum(0)
        mean = (stats.count * stats.mean).sum(0) / n.clamp_min(1.0)
        spread = stats.mean - mean
        ss = stats.sum_sq.sum(0) + (stats.count * spread * spread).sum(0)
        return mean, dispersion(ss, n, ddof), n
    top = stats.scale.amax(0)  # [K]
    f = stats.scale / top  # [P, K], powers of two <= 1
    n = stats.count.sum(0)  # [K]
    gm = stats.mean * f
    mean = (stats.count * gm).sum(0) / n.clamp_min(1.0)
    ss = (stats.sum_sq * f * f).sum(0) + (stats.count * (gm - mean) ** 2).sum(0)
    return mean * top, (dispersion(ss, n, ddof) * top).clamp(max=F64_MAX), n
