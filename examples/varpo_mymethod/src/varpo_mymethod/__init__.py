"""``mad_ac``: advantage combination with a robust scale, as an example of a varpo method living outside varpo.

Formula (per group g, component k, missing rewards left out):

    A_i = Σ_k w̄_k (r_ik - μ_gk) / (MAD_gk + eps),    MAD_gk = mean_{j∈g} |r_jk - μ_gk|

i.e. varpo's ``ac`` (DVAO eq. 5-6) with the group std replaced by the mean absolute deviation, which a single
outlier reward moves less. Effective weights follow varpo's no-signal rule: w̄ renormalized over the components that
vary in at least one group (sum 1), all 0 when nothing varies.

Install with ``pip install -e examples/varpo_mymethod``; the ``varpo.methods`` entry point calls :func:`register`.
"""

from __future__ import annotations

import torch

import varpo
from varpo.stats import STAT_DTYPE, broadcast, safe_div, segment_sum

NAME = "mad_ac"


def mad_ac(batch: varpo.RewardBatch, options: varpo.AdvantageOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """A = Σ_k w̄_k dev_k / (MAD_gk + eps); returns (advantages [N], effective weights [K])."""
    stats = batch.stats  # lazily computed group statistics, shared with every other consumer
    dev = stats.dev  # [N, K], 0 where missing
    mad = safe_div(segment_sum(dev.abs(), batch.index), stats.count)  # [P, K]
    z = safe_div(dev, broadcast(mad, batch.index) + options.eps)  # [N, K]
    adv = z @ batch.wbar  # [N]
    varies = ((mad > 0).any(0)).to(STAT_DTYPE)  # [K]
    eff = safe_div(batch.wbar * varies, (batch.wbar * varies).sum())
    return adv, eff


def register() -> None:
    """Entry point of the ``varpo.methods`` group (idempotent)."""
    varpo.register_estimator(NAME, mad_ac, multi_reward=True, description="AC with a mean-absolute-deviation scale")
