"""Float64 building blocks of the statistics: power-of-two units, division by zero as "no signal", exact sums.

Nothing here knows about groups or batches: elementwise and whole-tensor formulas that the group statistics
(:mod:`varpo.moments`), the tiled fast path (:mod:`varpo.tiles`) and the estimators share.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

STAT_DTYPE = torch.float64
F64_MAX = torch.finfo(torch.float64).max
F32_MAX = torch.finfo(torch.float32).max

# Beyond [2^-256, 2^256] squares of deviations can overflow or underflow float64 (see needs_scaling).
_SAFE = 2.0**256


def pow2_scale(maxabs: Tensor) -> Tensor:
    """The largest power of two <= ``maxabs`` elementwise (1 where ``maxabs`` is 0); no gradient.

    ``x / pow2_scale(max|x|)`` lies in (-2, 2) and is computed exactly (a power-of-two division only moves the
    exponent). ``maxabs`` must be finite and >= 0 (float64).
    """
    maxabs = maxabs.detach()
    exponent = torch.frexp(maxabs).exponent  # maxabs = m·2^e with m in [0.5, 1)
    scale = torch.pow(2.0, (exponent - 1).to(maxabs.dtype))
    return torch.where(maxabs > 0, scale, torch.ones_like(maxabs))


def pow2_scale_float(x: float) -> float:
    """:func:`pow2_scale` for one Python float (no tensor op, no device sync)."""
    return math.ldexp(1.0, math.frexp(x)[1] - 1) if x > 0 else 1.0


def needs_scaling(r: Tensor) -> bool:
    """False when every nonzero |r| lies in [2^-256, 2^256]: then squares of deviations neither overflow nor
    underflow (adjacent floats there differ by >= 2^-308) and unit scales give the same bits as any scale."""
    if r.numel() == 0:
        return False
    a = r.abs()
    low = torch.where(a > 0, a, _SAFE).amin()
    return bool((a.amax() > _SAFE) | (low < 1.0 / _SAFE))


def valid_mask(rewards: Tensor) -> Tensor:
    """``[N, K]`` bool: the component is present (finite) for that sample."""
    return torch.isfinite(rewards)


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 where ``den == 0`` (0/0 means "no signal", never NaN)."""
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))


def inverse_or_zero(den: Tensor) -> Tensor:
    """``1 / den`` with 0 where ``den == 0`` (so ``x · inverse_or_zero(d)`` is :func:`safe_div` up to one rounding)."""
    return safe_div(torch.ones_like(den), den)


def dispersion(sum_sq: Tensor, count: Tensor, ddof: int) -> Tensor:
    """``sqrt(sum_sq / (count - ddof))`` with 0 where the denominator is not positive."""
    denom = count - ddof
    return torch.where(denom > 0, (sum_sq / denom.clamp_min(1e-300)).sqrt(), torch.zeros_like(sum_sq))


def soft_min_of_logits(logits: Tensor, dim: int, k: float, with_grad: bool) -> tuple[Tensor, Tensor | None]:
    """``-(1/k) log Σ exp(logits)`` over ``dim`` and its softmax, with one ``exp`` and the max-shift trick.

    The one implementation of RVPO's soft-min arithmetic: the whole-matrix form (``logits = log w̄ - k z``,
    :func:`varpo.estimators.soft_min`) and the tiled one (:func:`varpo.tiles.soft_min_tiles`) both end here, so
    their float64 results agree per element. ``logits`` is consumed: overwritten in place unless it requires grad
    (autograd keeps the exponentials for the backward pass). Returns ``(value, softmax or None)``; ``value`` has
    ``dim`` removed.
    """
    top = logits.amax(dim, keepdim=True)
    e = (logits - top).exp() if logits.requires_grad else logits.sub_(top).exp_()
    total = e.sum(dim, keepdim=True)
    value = (torch.log(total) + top).squeeze(dim) / -k
    if not with_grad:
        return value, None
    return value, (e / total if e.requires_grad else e.div_(total))


def exact_column_sums(x: Tensor) -> list[float]:
    """Correctly rounded Σ_i x_ik of a float64 ``x [N, K]`` with |x| < 2 (the value ``math.fsum`` gives), vectorized.

    Error-free splitting: each pass takes the part of x on a grid of 2^-s (``round(x·2^s)·2^-s``, exact), whose
    scaled values are integers below 2^b with b + log2(N) <= 52, so their float64 sum is exact; the remainder
    x - part is exact too and goes to the next, finer grid. Typical rewards (24-bit float32 values) need one or two
    passes; any float64 input at most ~1100 / b. ``math.fsum`` then combines the few exact partial sums.
    """
    n = x.shape[0]
    bits = 52 - max(1, math.ceil(math.log2(max(n, 2)))) - 1
    rest, shift, parts = x, 0, []
    while bool(rest.ne(0).any()):
        shift += bits
        grid = torch.round(torch.ldexp(rest, torch.tensor(shift, device=x.device)))  # integers, |.| <= 2^(bits)
        parts.append([math.ldexp(v, -shift) for v in grid.sum(0).tolist()])  # exact sums, exactly rescaled
        rest = rest - torch.ldexp(grid, torch.tensor(-shift, device=x.device))
    return [math.fsum(col) for col in zip(*parts)] if parts else [0.0] * x.shape[1]
