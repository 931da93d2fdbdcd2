"""Lab metrics: exact expectations under the tabular policy, gradient-estimate statistics, seed counts.

Everything here is a measurement of the lab's world (expected satisfaction is computed exactly from π, not sampled);
no advantage, loss or aggregation formula lives here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from varpo.experiments.summary import pearson


def expected(probs: Tensor, values: Tensor) -> Tensor:
    """E_{x uniform, y~π}[v] per seed and objective: ``probs [S, P, Y]``, ``values [P, Y, K]`` -> ``[S, K]``."""
    return torch.einsum("spy,pyk->sk", probs.to(torch.float64), values.to(torch.float64)) / probs.shape[1]


def all_objectives_rate(probs: Tensor, satisfied: Tensor) -> Tensor:
    """Probability that a response satisfies every objective, averaged over prompts ``[S]``."""
    every = satisfied.all(-1).to(torch.float64)  # [P, Y]
    return torch.einsum("spy,py->s", probs.to(torch.float64), every) / probs.shape[1]


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """½ Σ_y |p - q| per (seed, prompt), over the last dim."""
    return 0.5 * (p - q).abs().sum(-1)


def monotonicity(curve: np.ndarray) -> np.ndarray:
    """VL Norm Table 5's score: Pearson ρ between {0, 1, 2, ...} and the recorded scores, per seed.

    ``curve [R, S]`` -> ``[S]`` (NaN for a constant curve).
    """
    idx = np.arange(curve.shape[0], dtype=np.float64)
    return np.array([pearson(idx, curve[:, s]) for s in range(curve.shape[1])])


def seeds_for(pilot_sd: float, effect: float, minimum: int = 32) -> int:
    """Seeds n such that the paired 95 % half-width 1.96·sd/√n is below half the effect tested (so the interval
    excludes 0 when the effect is real), at least ``minimum``."""
    if not (effect > 0 and math.isfinite(pilot_sd)):
        return minimum
    return max(minimum, int(math.ceil((2 * 1.96 * pilot_sd / effect) ** 2)))


@dataclass(frozen=True)
class GradientStats:
    """Statistics of repeated gradient estimates on one fixed policy.

    ``variance`` = E‖g - ḡ‖² (total variance), ``cv`` = √variance / ‖ḡ‖ (VL Norm Table 1's CV), ``cosine`` =
    cos(ḡ, ∇J) with ∇J the exact gradient of the weighted expected reward, ``norm`` = ‖ḡ‖.
    """

    variance: float
    cv: float
    cosine: float
    norm: float
    draws: int

    def to_dict(self) -> dict:
        return dict(variance=self.variance, cv=self.cv, cosine=self.cosine, norm=self.norm, draws=self.draws)


def gradient_stats(grads: Tensor, true_grad: Tensor) -> GradientStats:
    """``grads [D, F]`` (D independent estimates), ``true_grad [F]``."""
    mean = grads.mean(0)
    var = float(((grads - mean) ** 2).sum(-1).mean())
    norm = float(mean.norm())
    cos = float(torch.dot(mean, true_grad) / (mean.norm() * true_grad.norm()).clamp_min(1e-300))
    return GradientStats(var, math.sqrt(var) / max(norm, 1e-300), cos, norm, grads.shape[0])
