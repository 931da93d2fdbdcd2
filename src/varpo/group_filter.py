"""The keep rule of DAPO-style group filtering for multi-reward estimators, shared by every engine.

DAPO (Yu et al. 2025, §3.2) drops a prompt whose G completions all get the same reward: its group-relative
advantage is 0. With several reward components "same summed reward" is the wrong test (SkyRL#2104): a group whose
weighted sum is constant can still carry signal in one component for a per-objective estimator, and a group whose
components vary can still get exactly 0 from the estimator (K = 2, equal weights, a constant sum under gdpo/ac).
:func:`group_signal` decides with the configured estimator itself. Its callers choose what the estimator sees:
TRL's dynamic sampling (:mod:`varpo.trl.dynamic_sampling`) passes a whole generation round, verl's replay buffer
(:mod:`varpo.verl.group_filter`) one finished group at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

import varpo

# |A| at or below this counts as zero: a constant group's deviations are exact zeros up to float64 rounding of the
# group mean (~1e-17), divided by (σ=0 + eps>=1e-8) that stays << 1e-6.
ZERO_ATOL = 1e-6


@dataclass
class GroupSignal:
    """Per-group filter decision for one batch (``P`` groups of ``G`` samples, ``K`` components)."""

    keep: Tensor  # [P] bool: the estimator gives the group a non-zero advantage
    zero_std: Tensor  # [P, K] bool: component k is constant (or has < 2 valid values) within the group


def zero_std_components(rewards: Tensor, group_size: int) -> Tensor:
    """``[P, K]`` bool: within-group max == min over the valid (finite) values, i.e. zero within-group std.

    Vectorized over groups (rewards ``[P·G, K]`` in contiguous groups). A component with fewer than 2 valid values
    in a group has no within-group variance either.
    """
    r = rewards.reshape(-1, group_size, rewards.shape[1]).to(torch.float64)  # [P, G, K]
    valid = torch.isfinite(r)
    hi = torch.where(valid, r, -torch.inf).amax(1)
    lo = torch.where(valid, r, torch.inf).amin(1)
    return (valid.sum(1) < 2) | (hi == lo)


def group_signal(
    rewards: Tensor, group_size: int, method: str, weights: Tensor | Sequence[float] | None, options: dict
) -> GroupSignal:
    """Which groups of one batch carry signal, decided with the advantages the estimator gives them in
    the batch passed (what the trainer would train on without filtering).

    ``rewards``: ``[P·G, K]`` with the ``G`` samples of a prompt contiguous (TRL's RepeatSampler layout; verl passes one group).
    ``options``: keyword options of :func:`varpo.compute_advantages`; ``sigma_ema`` is ignored (filtering must
    not update the dvao running σ). A group is kept iff

    * some component with weight > 0 varies in it (DAPO's std > 0 test, exact: no group whose rewards are all
      constant is kept, not even for rvpo, whose batch whitening gives such a group a constant shift that says
      nothing about its completions), and
    * its weighted reward sum varies (DAPO's own rule on the summed reward: kept however small the spread, so a
      dr_grpo group whose rewards differ by 1e-7 stays), or the batch-level advantages of the group are non-zero
      (``|A| > ZERO_ATOL``): a trade-off group whose sum is constant is dropped by grpo/dr_grpo/dvao (advantage 0)
      and kept by the estimators that give it an advantage in the batch (gdpo, ac, saw's batch CV weights, rvpo's
      batch-whitened soft-min), as it is trained on.

    One estimator call per batch, on the whole batch: exact for estimators coupled across the batch (saw, rvpo),
    which an estimator run on each group alone gets wrong.
    """
    zero_std = zero_std_components(rewards, group_size)  # [P, K]
    k = rewards.shape[1]
    w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
    used = w.cpu() > 0  # [K]
    keep = (~zero_std.cpu() & used).any(1)  # [P]
    if bool(keep.any()):
        keep &= _sum_varies(rewards, group_size, w.to(rewards.device)).cpu() | _batch_signal(
            rewards, group_size, method, weights, options
        )
    return GroupSignal(keep=keep, zero_std=zero_std.cpu())


def _sum_varies(rewards: Tensor, group_size: int, weights: Tensor) -> Tensor:
    """``[P]`` bool: the weighted reward sum over the rows with every used component present varies in the group
    by more than float64 rounding (2^-40 of its magnitude)."""
    used = weights > 0
    r = rewards.to(torch.float64)[:, used].reshape(-1, group_size, int(used.sum()))  # [P, G, K_used]
    valid = torch.isfinite(r).all(2)  # [P, G]
    total = torch.where(valid, (torch.nan_to_num(r, 0.0, 0.0, 0.0) * weights[used]).sum(2), 0.0)
    hi = torch.where(valid, total, -torch.inf).amax(1)
    lo = torch.where(valid, total, torch.inf).amin(1)
    scale = torch.maximum(hi.abs(), lo.abs())
    return (valid.sum(1) >= 2) & (hi - lo > scale * 2.0**-40)


def _batch_signal(
    rewards: Tensor, group_size: int, method: str, weights: Tensor | Sequence[float] | None, options: dict
) -> Tensor:
    """``[P]`` bool: the estimator, run on the whole round, gives some sample of the group ``|A| > ZERO_ATOL``."""
    opts = {key: v for key, v in options.items() if key != "sigma_ema"}
    ids = torch.arange(rewards.shape[0] // group_size, device=rewards.device).repeat_interleave(group_size)
    adv = varpo.compute_advantages(rewards, ids, method, weights=weights, stats=False, **opts).advantages
    return (adv.abs() > ZERO_ATOL).reshape(-1, group_size).any(1).cpu()
