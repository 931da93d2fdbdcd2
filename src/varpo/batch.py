"""The inputs every advantage estimator sees: :class:`RewardBatch`, with its statistics computed lazily, once.

Notation (per group g, component k): μ_gk, σ_gk are the group mean/std of r_k over the samples where r_k is present;
``dev_ik = r_ik - μ_gk`` (0 where missing); ``z_ik = dev_ik / (σ_gk + eps)``; w are the user weights (default 1/K),
w̄ = w / Σw. Missing components (NaN / ±inf) are left out of their statistics and contribute 0; a sample with every
component missing is *unscorable*.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property

import torch
from torch import Tensor

from varpo.groups import GroupIndex, broadcast
from varpo.moments import Combined, GroupStats, combine, group_stats, pooled_mean_std
from varpo.numerics import pow2_scale_float, valid_mask
from varpo.options import AdvantageOptions
from varpo.tiles import fast_group_stats
from varpo.workspace import Workspace


class RewardBatch:
    """The inputs every estimator sees. Validity masks and group statistics are computed lazily and at most once.

    Two routes, chosen in one place (:attr:`tiled`): with every reward finite and unit scales the statistics and
    the default combination ``Σ_k w_k dev_k`` come from one tiled pass (:func:`varpo.tiles.fast_group_stats`) and
    the [N, K] validity mask is never built; otherwise the reference whole-matrix statistics
    (:func:`varpo.moments.group_stats`). Everything below reads the same :class:`varpo.moments.GroupStats` either way.

    ``workspace``: the tile buffers of this batch's computations (a fresh :class:`varpo.workspace.Workspace` when
    ``None``; pass one to reuse buffers across calls).
    """

    def __init__(
        self,
        rewards: Tensor,
        index: GroupIndex,
        weights: Tensor,
        ddof: int,
        diagnostics: bool = True,
        workspace: Workspace | None = None,
    ) -> None:
        self.rewards = rewards  # [N, K] as given (any float dtype)
        # False: the caller discards the effective weights (compute_advantages(stats=False)); built-in estimators
        # then skip computing them and return None in their place. Registered estimators may ignore this.
        self.diagnostics = diagnostics
        self.index = index
        self.weights = weights  # [K] float64, user weights w (finite, >= 0, finite positive sum)
        self.weight_max = max(weights.tolist()) if weights.numel() else 1.0  # host copy (no later device sync)
        self.ddof = ddof
        self.workspace = Workspace() if workspace is None else workspace
        self.cache: dict = {}  # per-batch results an estimator computes once (e.g. SAW's weights)

    @cached_property
    def _tiled_pass(self) -> tuple[GroupStats, Tensor] | None:
        """The fast path's statistics and ``Σ_k (w_k / W) dev_k`` ``[N]`` (W: power of two of max w), or ``None``
        when it does not apply (a missing reward, scales beyond unit, rewards that require grad)."""
        if self.rewards.shape[0] == 0:
            return None
        what = self.weights / pow2_scale_float(self.weight_max)
        return fast_group_stats(self.rewards, self.index, self.ddof, what, self.workspace)

    @cached_property
    def tiled(self) -> bool:
        """The route: True = the tiled fast path (every reward finite, unit scales), False = whole-matrix."""
        return self._tiled_pass is not None

    @cached_property
    def stats(self) -> GroupStats:
        if self.tiled:
            return self._tiled_pass[0]
        return group_stats(self.rewards, self.index, self.ddof, valid=self.valid, all_valid=self.all_valid)

    @cached_property
    def valid(self) -> Tensor:
        return valid_mask(self.rewards)  # [N, K]

    @cached_property
    def all_valid(self) -> bool:
        return self.tiled or bool(self.valid.all())

    @cached_property
    def scorable(self) -> Tensor:
        n = self.rewards.shape[0]
        return torch.ones(n, dtype=torch.bool, device=self.rewards.device) if self.all_valid else self.valid.any(1)

    @cached_property
    def signal(self) -> Tensor:
        """``[P, K]`` float64 σ_gk where the component is present, else 0: ``> 0`` iff the component varies in the
        group (a float, so that any-reductions are ``amax``, much cheaper than bool ``any`` on CPU)."""
        st = self.stats
        return st.std if self.all_valid else st.std * (st.count > 0)

    @cached_property
    def pooled(self) -> tuple[Tensor, Tensor, Tensor]:
        """Batch-level (pooled over groups) per-component mean, std, count ``[K]`` (reward units)."""
        return pooled_mean_std(self.stats, self.ddof)

    @cached_property
    def wbar(self) -> Tensor:
        return self.weights / self.weights.sum()  # [K]

    def combined(self, weights: Tensor | None = None) -> Combined:
        """Σ_k w_k (r_ik - μ_gk) in scale-robust units (:func:`varpo.moments.combine`)."""
        if weights is None or weights is self.weights:
            if self.tiled:  # computed in the statistics pass
                w_scale = pow2_scale_float(self.weight_max)
                return Combined(self._tiled_pass[1], (self.weights / w_scale).unsqueeze(0), w_scale, None)
            return combine(self.stats, self.weights, self.index, self.weight_max)
        return combine(self.stats, weights, self.index)

    def inv_std(self, eps: float) -> Tensor:
        """``[P, K]`` 1 / (σ_gk + eps) in scaled units, 0 where that denominator is 0."""
        st = self.stats
        den = st.std + (eps if st.unit else eps / st.scale)  # >= 0
        return torch.where(den > 0, den, math.inf).reciprocal_()  # 1 / 0 -> 1 / inf = 0, one [P, K] select

    def zscores(self, eps: float) -> Tensor:
        """``z_ik = dev_ik / (σ_gk + eps)`` ``[N, K]``; 0 for missing entries and zero-variance groups.

        In scaled units: z = dev' / (σ' + eps / s_gk), identical to the unscaled formula (s is a power of two).
        """
        return self.stats.deviations() * broadcast(self.inv_std(eps), self.index)

    def zsum(self, eps: float, v: Tensor) -> Tensor:
        """``Σ_k v_k z_ik`` ``[N]`` (= ``zscores(eps) @ v``) without an [N, K] intermediate on the fast path."""
        if self.stats.tiled:
            return self.stats.lazy.project(self.inv_std(eps) * v)
        return self.zscores(eps) @ v


Estimate = tuple[Tensor, Tensor]  # (advantages [N] float64, effective weights [K] float64)
Estimator = Callable[[RewardBatch, AdvantageOptions], Estimate]
