"""Policy losses: per-token (``ppo_clip``) or per-sequence (``gvpo``) loss matrices, to be reduced by
:func:`varpo.aggregate_loss`.

Shapes: B sequences, T completion tokens. ``logprobs``/``old_logprobs``/``ref_logprobs``/``mask`` are ``[B, T]``;
``advantages`` is ``[B]`` (sequence-level, broadcast over tokens) or ``[B, T]``.
Every loss returns ``(loss, metrics)`` where ``metrics`` is a ``dict[str, float]`` of detached diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from varpo.registry import LOSS_INFO, LossInfo, load_plugins
from varpo.stats import broadcast, group_index, segment_sum

# exp() of a log-ratio beyond this overflows float32; verl clamps the same way (negative_approx_kl in [-20, 20]).
LOG_RATIO_CLAMP = 20.0


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def ppo_clip(
    *,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    ref_logprobs: Tensor | None = None,
    beta: float = 0.0,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    importance_sampling_level: str = "token",
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate, per token: l_t = -min(ρ_t A, clip(ρ_t, 1-ε_low, 1+ε_high) A) + β·KL_t.

    * ρ_t = exp(logp_t - old_logp_t) (PPO, Schulman et al. 2017); asymmetric bounds = DAPO clip-higher
      (Yu et al. 2025, ε_high defaults to ε_low).
    * ``importance_sampling_level="sequence"``: GSPO (Zheng et al. 2025) — one ratio per sequence,
      exp(mean_t (logp - old_logp)) over unmasked tokens, shape [B, 1].
    * KL to a reference with the k3 estimator exp(ref - logp) - (ref - logp) - 1 (Schulman 2020; GRPO eq. 4),
      added when ``beta > 0``.
    * Log-ratios are clamped to ±20 before exp (as verl) so an off-policy outlier cannot produce inf.

    Returns ``(loss [B, T], metrics)``; metrics: ``clip_frac_low``/``clip_frac_high`` (tokens whose ratio left the
    trust region on the side where clipping zeroes the gradient), ``clip_frac``, ``ratio_mean/min/max``, ``kl``.
    """
    if importance_sampling_level not in ("token", "sequence"):
        raise ValueError(f"importance_sampling_level must be 'token' or 'sequence', got {importance_sampling_level!r}")
    if beta > 0 and ref_logprobs is None:
        raise ValueError("ppo_clip with beta > 0 needs ref_logprobs")
    clip_high = clip_low if clip_high is None else clip_high
    m = mask.to(logprobs.dtype)
    log_ratio = logprobs - old_logprobs  # [B, T]
    if importance_sampling_level == "sequence":
        log_ratio = (log_ratio * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp_min(1.0)  # [B, 1]
    ratio = torch.exp(log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages  # [B, 1] or [B, T]
    adv = adv.to(logprobs.dtype)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)  # [B, T] (broadcast)
    loss = loss.expand_as(logprobs)
    with torch.no_grad():
        r = ratio.expand_as(logprobs)
        a = adv.expand_as(logprobs)
        low = (r < 1.0 - clip_low) & (a < 0)
        high = (r > 1.0 + clip_high) & (a > 0)
        valid = mask.bool()
        big = torch.finfo(r.dtype).max
        metrics = [
            _masked_mean(low.to(r.dtype), mask),
            _masked_mean(high.to(r.dtype), mask),
            _masked_mean((low | high).to(r.dtype), mask),
            _masked_mean(r, mask),
            torch.where(valid, r, big).min() if valid.any() else r.new_tensor(1.0),
            torch.where(valid, r, -big).max() if valid.any() else r.new_tensor(1.0),
        ]
    names = ["clip_frac_low", "clip_frac_high", "clip_frac", "ratio_mean", "ratio_min", "ratio_max"]
    if beta > 0:
        delta = (ref_logprobs - logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        kl = torch.exp(delta) - delta - 1.0  # [B, T] k3, >= 0
        loss = loss + beta * kl
        metrics.append(_masked_mean(kl.detach(), mask))
        names.append("kl")
    return loss, dict(zip(names, torch.stack(metrics).tolist()))


def gvpo(
    *,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    group_ids: Tensor,
    gvpo_beta: float = 0.1,
    group_size: int | None = None,
    **ignored,
) -> tuple[Tensor, dict[str, float]]:
    """GVPO (Zhang et al. 2025, eq. 8 / Listing 1): per-sequence squared error between centered implicit and actual
    rewards.

    s_i = Σ_t logp_it·m_it, R_θ,i = β (s_i - s_old,i) (implicit reward w.r.t. the sampling policy π_θ', as the
    official verl code), a_i = the given advantage (pass centered rewards, i.e. ``dr_grpo``; it is re-centered per
    group here so any estimator's output is valid), and per sample in group g

        loss_i = ½ [(R_θ,i - mean_g R_θ) - (a_i - mean_g a)]² / (|g| - 1).

    The group mean of R_θ is detached, as in the official code; this is exact because both centered terms sum to
    0 in a group, so ∇loss = -β Σ_i [(a_i - ā) - (R_θ,i - R̄_θ)] ∇s_i / (|g| - 1) (eq. 8 with Listing 1's 1/(k-1)).
    There is no ratio and no clipping. Needs whole groups: every group in ``group_ids`` must have ``group_size``
    members (default: all groups equal-sized, >= 2) or a ``ValueError`` is raised.

    ppo_clip-only options (``ref_logprobs``, ``beta``, ``clip_*``, ``importance_sampling_level``) are accepted and
    ignored so an engine can pass one option set; engines reject ``beta > 0`` with gvpo at config time.

    Returns ``(loss [B, 1], metrics)`` — one "token" per sequence; reduce it with
    ``aggregate_loss(loss, torch.ones_like(loss), "token_mean")`` (mean over sequences). The official code sums
    over the micro-batch instead; with Adam this is only a constant rescaling of the learning rate.
    """
    unknown = set(ignored) - _PPO_ONLY_OPTIONS
    if unknown:
        raise TypeError(f"gvpo got unexpected option(s) {sorted(unknown)}")
    index = group_index(torch.as_tensor(group_ids, device=logprobs.device))
    b = logprobs.shape[0]
    counts = segment_sum(torch.ones(b, dtype=logprobs.dtype, device=logprobs.device), index)  # [P]
    expected = group_size if group_size is not None else int(counts.max()) if b else 0
    if b == 0 or expected < 2 or bool((counts != expected).any()):
        raise ValueError(
            f"gvpo needs whole groups of equal size >= 2 in every loss call (got group sizes "
            f"{sorted(set(int(c) for c in counts.tolist()))}, expected {expected}); keep micro-batches group-aligned"
        )
    m = mask.to(logprobs.dtype)
    implicit = gvpo_beta * ((logprobs * m).sum(-1) - (old_logprobs * m).sum(-1))  # [B]
    adv = advantages if advantages.dim() == 1 else (advantages * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    adv = adv.to(logprobs.dtype).detach()

    def centered(x: Tensor) -> Tensor:
        return x - broadcast(segment_sum(x, index) / counts, index)

    implicit_c = implicit - broadcast(segment_sum(implicit.detach(), index) / counts, index)
    loss = 0.5 * (implicit_c - centered(adv)) ** 2 / (expected - 1)  # [B]
    with torch.no_grad():
        metrics = {
            "implicit_reward_mean": implicit.mean(),
            "implicit_reward_abs_mean": implicit.abs().mean(),
            "gvpo_loss_mean": loss.mean(),
        }
    return loss.unsqueeze(-1), {k: float(v) for k, v in metrics.items()}


# ppo_clip options an engine may pass uniformly; GVPO has no ratio/clip and its KL regularisation is gvpo_beta.
_PPO_ONLY_OPTIONS = {"ref_logprobs", "beta", "clip_low", "clip_high", "importance_sampling_level"}

#: name -> loss; built-ins plus whatever :func:`varpo.register_policy_loss` adds.
POLICY_LOSSES: dict[str, Callable[..., tuple[Tensor, dict[str, float]]]] = {"ppo_clip": ppo_clip, "gvpo": gvpo}
LOSS_INFO.update({"ppo_clip": LossInfo(per_sequence=False), "gvpo": LossInfo(per_sequence=True)})


def policy_loss(name: str, **kwargs) -> tuple[Tensor, dict[str, float]]:
    """Dispatch to a loss in :data:`POLICY_LOSSES` by name (keyword arguments only)."""
    if name not in POLICY_LOSSES:
        load_plugins()
    if name not in POLICY_LOSSES:
        raise ValueError(f"unknown policy loss {name!r}; choose one of {tuple(POLICY_LOSSES)}")
    return POLICY_LOSSES[name](**kwargs)
