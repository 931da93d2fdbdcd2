"""Loss aggregation: reduce a per-token loss matrix ``[B, T]`` to the scalar that is back-propagated.

Names follow verl's ``loss_agg_mode`` with underscores. With L_i = Σ_t m_it (unmasked length of sequence i),
M = ``max_length`` (maximum response length) and B' = number of sequences with L_i > 0:

=========================  =============================================================  ==========================
mode                       loss                                                           source
=========================  =============================================================  ==========================
``token_mean``             Σ_it l_it m_it / Σ_it m_it                                     DAPO (Yu et al. 2025)
``seq_mean_token_mean``    (1/B') Σ_i (Σ_t l_it m_it / L_i)                               GRPO (Shao et al. 2024)
``seq_mean_token_sum_norm`` Σ_it l_it m_it / (B'·M)                                       Dr. GRPO (Liu et al. 2025)
``vl_norm``                (1/M) Σ_i [L_i^-α / Σ_j L_j^-α] Σ_t l_it m_it                   VL Norm / ΔL Norm (He et al.
                                                                                          2025, eq. for x_i, §3)
=========================  =============================================================  ==========================

``vl_norm`` with α = 0 is exactly ``seq_mean_token_sum_norm``. Σ_j runs over the whole rollout batch, as in the
official ΔL-Normalization code (not per group).

**Micro-batch invariance.** Every mode is a sum over rows divided by *global* normalizers (token count, sequence
count, Σ_j L_j^-α). Compute them once per optimizer step from the full batch mask with :func:`loss_scale` and pass
``scale=`` for every micro-batch: the micro-batch losses then *sum* to the full-batch loss, so gradient accumulation
gives exactly the full-batch gradient (do not divide by the number of accumulation steps again).
Sequences with L_i = 0 (fully masked rows) contribute nothing and are not counted in B'.

**Robustness.** ``mask`` must be binary (bool or 0/1; anything else is a ``ValueError``). Masked-out positions are
*selected away* (``torch.where``), not multiplied by 0, so NaN/inf there (padding, -inf log-probs) cannot leak into the
loss or its gradient. Sums run in float64 and the result is cast back to the loss dtype. An all-masked or empty batch
gives loss 0 with a zero gradient in every mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from varpo.checks import check_real, is_real
from varpo.registry import AGGREGATORS, lookup, needs_max_length, register_aggregation

#: the built-in modes; :func:`varpo.registry.aggregations` lists these plus every registered one.
AGGREGATIONS: tuple[str, ...] = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm", "vl_norm")
_NEEDS_MAX_LENGTH = ("seq_mean_token_sum_norm", "vl_norm")


@dataclass(frozen=True)
class LossScale:
    """Global normalizers of one optimizer step (computed from the full rollout batch mask).

    Attributes:
        num_tokens: Σ_it m_it.
        num_seqs: B', number of sequences with at least one unmasked token.
        len_pow_sum: Σ_j L_j^-α over those sequences (for ``vl_norm``).
        alpha: the α used for ``len_pow_sum``.
    """

    num_tokens: float
    num_seqs: float
    len_pow_sum: float
    alpha: float = 1.0


def _lengths(mask: Tensor) -> Tensor:
    return mask.sum(-1, dtype=torch.float64)  # [B], exact (no float64 copy of the mask)


def _len_pow(lengths: Tensor, alpha: float) -> Tensor:
    """L_i^-α, 0 for empty sequences."""
    return torch.where(lengths > 0, lengths.clamp_min(1.0).pow(-alpha), torch.zeros_like(lengths))


def check_mask(mask: Tensor, name: str = "mask") -> Tensor:
    """``mask`` as a bool tensor; a one-line ``ValueError`` unless every entry is 0/1 (or it is bool).

    Stateless: a non-bool mask is checked on every call, with no float copy: its bool conversion (nonzero, NaN
    included) must equal ``mask == 1``, which fails for NaN and any value other than 0 and 1. A caller that hands
    one mask to several functions (``policy_loss``, ``loss_scale``, ``aggregate_loss``) can convert it once with
    this function and pass the bool tensor, which is accepted without a pass.
    """
    if not isinstance(mask, Tensor):
        raise ValueError(f"{name} must be a tensor of 0/1 or bool, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return mask
    out = mask.bool()  # a cast, much cheaper than `mask != 0` on CPU (same values: NaN -> True)
    if not torch.equal(out, mask == 1):  # a nonzero entry that is not 1 (NaN included)
        binary = (mask == 0) | (mask == 1)
        bad = mask[~binary].flatten()[0].item()
        raise ValueError(f"{name} must be binary (0/1 or bool), got a value {bad!r}; use advantages for weighting")
    return out


def loss_scale(mask: Tensor, *, alpha: float = 1.0) -> LossScale:
    """Global normalizers from the full-batch ``mask [B, T]`` (see module docstring)."""
    _check_alpha(alpha)
    mask = check_mask(mask)
    lengths = _lengths(mask)
    return LossScale(
        num_tokens=float(lengths.sum()),
        num_seqs=float((lengths > 0).sum()),
        len_pow_sum=float(_len_pow(lengths, alpha).sum()),
        alpha=float(alpha),
    )


def vl_norm_weights(lengths: Tensor, alpha: float = 1.0) -> Tensor:
    """Per-sequence VL Norm weights ``[B]``: L_i^-α / mean_j L_j^-α (mean over sequences with L_j > 0).

    Multiplying sequence-level advantages by these weights and aggregating with ``seq_mean_token_sum_norm`` gives
    exactly ``vl_norm``: Σ_it w_i l_it / (B'·M) = (1/M) Σ_i [L_i^-α / Σ_j L_j^-α] Σ_t l_it. This is how the official
    ΔL-Normalization code implements it, and how the verl plug-in does (verl has no aggregation registry).
    """
    _check_alpha(alpha)
    lengths = lengths.to(torch.float64)
    pw = _len_pow(lengths, alpha)
    n = (lengths > 0).sum().clamp_min(1)
    mean = pw.sum() / n
    return torch.where(mean > 0, pw / mean.clamp_min(1e-300), torch.zeros_like(pw))


def aggregate_loss(
    per_token_loss: Tensor,
    mask: Tensor,
    mode: str = "token_mean",
    *,
    max_length: int | None = None,
    alpha: float = 1.0,
    scale: LossScale | None = None,
) -> Tensor:
    """Reduce ``per_token_loss [B, T]`` under ``mask [B, T]`` to a scalar (see module docstring for each mode).

    Args:
        mode: one of :data:`AGGREGATIONS` or a name registered with :func:`varpo.register_aggregation`.
        max_length: M, the maximum response length (required by ``seq_mean_token_sum_norm`` and ``vl_norm``).
        alpha: VL Norm exponent α >= 0 (α = 1 minimum variance, α = 0 Dr. GRPO).
        scale: global normalizers from :func:`loss_scale` on the full batch; ``None`` = this call is the full batch.
    """
    aggregator = lookup(AGGREGATORS, mode, "loss aggregation")
    if not isinstance(per_token_loss, Tensor) or not per_token_loss.is_floating_point():
        raise ValueError(f"per_token_loss must be a float tensor [B, T], got {type(per_token_loss).__name__}")
    if per_token_loss.shape != getattr(mask, "shape", None):
        shape = tuple(getattr(mask, "shape", ()))
        raise ValueError(f"per_token_loss {tuple(per_token_loss.shape)} and mask {shape} must match")
    if needs_max_length(mode) and not (is_real(max_length) and max_length > 0):
        raise ValueError(
            f"loss aggregation {mode!r} needs max_length (the maximum response length M) > 0, got {max_length!r}"
        )
    _check_alpha(alpha)
    mask = check_mask(mask)
    if scale is None:
        scale = loss_scale(mask, alpha=alpha)
    elif mode == "vl_norm" and not math.isclose(scale.alpha, alpha):
        raise ValueError(f"scale was computed with alpha={scale.alpha} but aggregate_loss got alpha={alpha}")
    # where, not multiply: 0 * NaN = NaN would leak padding garbage into the loss and the gradient. Every
    # aggregator (built-in or registered) gets the loss with masked positions already set to 0.
    picked = torch.where(mask, per_token_loss, torch.zeros((), dtype=per_token_loss.dtype, device=mask.device))
    loss = aggregator(picked, mask, scale, max_length, alpha)
    try:
        loss = torch.as_tensor(loss)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"loss aggregation {mode!r} returned {type(loss).__name__}; expected a scalar tensor"
        ) from None
    if loss.dim() != 0:  # a [B] or [B, T] "loss" would be summed silently by backward()/the trainer
        raise ValueError(f"loss aggregation {mode!r} returned shape {list(loss.shape)}; expected a scalar (0-d)")
    return loss.to(per_token_loss.dtype)


# Each aggregator: (per_token_loss [B, T] with masked positions 0, mask [B, T] bool, scale, max_length, alpha) ->
# scalar, dividing only by the global normalizers in ``scale`` (micro-batch invariance). Sums across sequences
# run in float64.
def _seq_sums(per_token_loss: Tensor, mask: Tensor) -> Tensor:
    """``[B]`` float64 Σ_t l_it (masked positions are already 0).

    Within a row in float32 for float32/bf16/fp16 losses (torch's pairwise sum: relative error ~1e-7 of Σ_t |l_it|,
    the size of the float32 rounding each l_it already carries), then float64: a float64 copy of the whole [B, T]
    matrix (and its float64 gradient) costs a pass forward and backward. If a row's float32 sum is not finite (an
    overflow: |l| near 3.4e38), every row is summed in float64 instead, as before; float64 losses stay float64.
    """
    if per_token_loss.dtype == torch.float64:
        return per_token_loss.sum(-1)
    rows = per_token_loss.sum(-1, dtype=torch.float32)  # [B]
    if not bool(torch.isfinite(rows.detach()).all()):
        return per_token_loss.sum(-1, dtype=torch.float64)
    return rows.double()


def token_mean(per_token_loss: Tensor, mask: Tensor, scale: LossScale, max_length, alpha: float) -> Tensor:
    """Σ_it l_it m_it / Σ_it m_it (DAPO)."""
    return _seq_sums(per_token_loss, mask).sum() / max(scale.num_tokens, 1.0)


def seq_mean_token_mean(per_token_loss: Tensor, mask: Tensor, scale: LossScale, max_length, alpha: float) -> Tensor:
    """(1/B') Σ_i (Σ_t l_it m_it / L_i) (GRPO)."""
    return (_seq_sums(per_token_loss, mask) / _lengths(mask).clamp_min(1.0)).sum() / max(scale.num_seqs, 1.0)


def seq_mean_token_sum_norm(per_token_loss: Tensor, mask: Tensor, scale: LossScale, max_length, alpha) -> Tensor:
    """Σ_it l_it m_it / (B'·M) (Dr. GRPO)."""
    return _seq_sums(per_token_loss, mask).sum() / (max(scale.num_seqs, 1.0) * max_length)


def vl_norm(per_token_loss: Tensor, mask: Tensor, scale: LossScale, max_length, alpha: float) -> Tensor:
    """(1/M) Σ_i [L_i^-α / Σ_j L_j^-α] Σ_t l_it m_it (VL Norm, He et al. 2025 §3)."""
    # L_i^-α / Σ_j L_j^-α in float64 (both can underflow in float32 for large α); 0 when the batch is empty.
    pw = _len_pow(_lengths(mask), alpha)  # [B]
    share = pw / scale.len_pow_sum if scale.len_pow_sum > 0 else torch.zeros_like(pw)
    return (share * _seq_sums(per_token_loss, mask)).sum() / max_length


# the built-ins, registered into :data:`varpo.registry.AGGREGATORS` (name -> aggregator; re-read here as
# :data:`AGGREGATORS`), which :func:`varpo.register_aggregation` extends.
for _name, _fn in zip(AGGREGATIONS, (token_mean, seq_mean_token_mean, seq_mean_token_sum_norm, vl_norm), strict=True):
    register_aggregation(_name, _fn, needs_max_length=_name in _NEEDS_MAX_LENGTH, replace=True)


def _check_alpha(alpha: float) -> None:
    check_real("alpha", alpha, "a finite number >= 0", lambda v: v >= 0)
