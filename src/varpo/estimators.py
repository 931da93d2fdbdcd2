"""The built-in advantage estimators, each a short composition of the batch's statistics, and their registration.

Every estimator receives the same :class:`varpo.batch.RewardBatch` and :class:`varpo.options.AdvantageOptions`
and returns ``(advantages [N], effective_weights [K])`` (float64; the effective weights may be ``None`` when
``batch.diagnostics`` is False). Each docstring gives the formula, its paper and equation, and our numeric choices;
``docs/methods.md`` lists where we depart from the official code. Importing this module registers the built-ins
into :data:`varpo.registry.ESTIMATORS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from varpo.batch import Estimate, Estimator, RewardBatch
from varpo.groups import scale_by_group
from varpo.moments import batch_whiten, combined_std
from varpo.numerics import (
    F64_MAX,
    STAT_DTYPE,
    dispersion,
    exact_column_sums,
    inverse_or_zero,
    pow2_scale,
    pow2_scale_float,
    safe_div,
    soft_min_of_logits,
)
from varpo.options import AdvantageOptions
from varpo.registry import Anneal, register_estimator
from varpo.schedules import linear_anneal
from varpo.tiles import soft_min_tiles

# SAW's CV denominator |μ| + 1e-8, as the official code (Zhaolutuan/SAW ray_trainer.py); its group z-scores use
# 1e-6 (= our default ``eps``), its token whitening 1e-8.
SAW_CV_EPS = 1e-8


def _first_line(fn: Callable) -> str:
    return (fn.__doc__ or "").strip().split("\n")[0]


def _normalized(w: Tensor) -> Tensor:
    return w / w.sum().clamp_min(1e-300)


def grpo(b: RewardBatch, o: AdvantageOptions, weights: Tensor | None = None) -> Estimate:
    """Reward combination (RC) + GRPO: r = Σ_k w_k r_k ; A = (r - μ_g(r)) / (σ_g(r) + eps).

    DVAO eq. 1-2 (GRPO: Shao et al. 2024). Missing components are mean-imputed (they add 0 to r - μ). Computed on
    c = Σ_k w_k (r_k - μ_gk) in per-group power-of-two units (exact), so rewards up to float64's range do not
    overflow: A = c' / (σ_g(c') + eps / unit_g).
    """
    w = b.weights if weights is None else weights
    c = b.combined(w)
    sigma = combined_std(c.value, b.index, None if b.all_valid else b.scorable, b.ddof, b.workspace)  # [P]
    return scale_by_group(c.value, inverse_or_zero(sigma + c.eps(o.eps)), b.index, b.workspace), _normalized(w)


def dr_grpo(b: RewardBatch, o: AdvantageOptions) -> Estimate:
    """Dr. GRPO (Liu et al. 2025): A = r - μ_g(r), no std division. Also GVPO's centered reward.

    In reward units, so the only unbounded estimator: beyond float32's range the output saturates at ±3.4e38.
    """
    return b.combined().real(b.index), b.wbar


def _ac_scaled(b: RewardBatch, o: AdvantageOptions, weights: Tensor | None) -> tuple[Tensor, float, Tensor]:
    """Σ_k (w_k / W) z_k with W the power of two of max w (exact), W, and the effective weights."""
    w = b.weights if weights is None else weights
    w_scale = pow2_scale_float(b.weight_max) if weights is None else float(pow2_scale(w.max()))
    return b.zsum(o.eps, w / w_scale), w_scale, _normalized(w)


def ac(b: RewardBatch, o: AdvantageOptions, weights: Tensor | None = None) -> Estimate:
    """Advantage combination (AC): A = Σ_k w_k z_k with per-component group z-scores. DVAO eq. 5-6."""
    x, w_scale, eff = _ac_scaled(b, o, weights)
    return x * w_scale, eff


def gdpo(b: RewardBatch, o: AdvantageOptions, weights: Tensor | None = None) -> Estimate:
    """GDPO (Liu et al. 2026): A = batch_whiten(Σ_k w_k z_k), whitening over *samples*.

    Matches NVlabs' TRL implementation (per-sample batch normalization). verl's ``gdpo`` whitens over tokens
    (``masked_whiten``), which gives zero-signal samples a nonzero advantage -μ_tok/σ_tok; we do not. Whitening
    x = W·x' equals whitening x' with eps / W (W a power of two), so huge weights cannot overflow.
    """
    x, w_scale, eff = _ac_scaled(b, o, weights)
    return batch_whiten(x, None if b.all_valid else b.scorable, o.eps / w_scale, b.ddof), eff


def dvao(b: RewardBatch, o: AdvantageOptions) -> Estimate:
    """DVAO (Jiang et al. 2026, eq. 9): A = Σ_k w̃_k z_k = Σ_k w_k (r_k - μ_k) / (Σ_l w_l σ_l + eps).

    w̃_gk = w_k σ_gk / Σ_l w_l σ_gl (variance-adaptive weights). A component with σ_gk = 0 drops out of numerator
    and denominator; a group with all σ = 0 gets 0. With ``sigma_ema`` the denominator uses shrunk σ̃ (see SigmaEMA).
    Numerator and denominator are computed in the same per-group power-of-two units (exact, cannot overflow).
    """
    st = b.stats
    std = st.std  # [P, K] in units of s_gk
    if o.sigma_ema is not None:
        ema = o.sigma_ema.update(st.real_std, st.count)  # [K] reward units
        present = (st.count > 0).to(STAT_DTYPE)
        std = ((1 - o.sigma_ema.shrink) * std + o.sigma_ema.shrink * (ema / st.scale).clamp(max=F64_MAX)) * present
    c = b.combined()
    wsig = c.coef * std  # [P, K] w_k σ_gk / unit_g
    denom = wsig.sum(1)  # [P]
    adv = scale_by_group(c.value, inverse_or_zero(denom + c.eps(o.eps)), b.index, b.workspace)
    if not b.diagnostics:
        return adv, None
    # [P, K] w̃; rows of zero-signal groups are 0 (there every w σ is 0, and 0 / inf = 0): no [P, K] masks
    tilde = wsig / torch.where(denom > 0, denom, math.inf).unsqueeze(1)
    has_signal = (denom > 0).to(STAT_DTYPE).sum()
    eff = safe_div(tilde.sum(0), has_signal)  # zero rows add nothing
    return adv, eff


def saw_weights(b: RewardBatch, o: AdvantageOptions) -> tuple[Tensor, Tensor]:
    """SAW weights w'_k = (Σ_l w_l) · w_k CV_k / Σ_l w_l CV_l, CV_k = σ_batch(r_k + off_k) / (|μ_batch| + 1e-8).

    Statistics over the whole batch (not per group), recomputed every call, no smoothing (official code:
    Zhaolutuan/SAW ray_trainer.py, branches grpo-h / gdpo-h, which hard-code K=2 and +3 offset on correctness).
    The CV's eps is the official 1e-8 (:data:`SAW_CV_EPS`), not ``eps``. μ_batch is an *exact* sum (``math.fsum``'s value
    on power-of-two-scaled values): CV = σ/|μ| amplifies rounding in μ without bound when large rewards cancel, and
    an exact sum makes the weights independent of sample order. A CV that is infinite (μ = 0 beyond eps's reach)
    takes all the weight. Returns (w' [K], CV [K]); all CV = 0 gives w' = 0.

    On the fast path μ and σ come from the group statistics (:func:`_saw_moments_pooled`, no pass over [N, K]),
    equal to this exact-sum route to ~1e-10 relative (a proven bound; otherwise this route is taken).
    """
    if "saw" in b.cache:
        return b.cache["saw"]
    moments = _saw_moments_pooled(b, o) if b.tiled else None
    if moments is not None:
        mean, std = moments  # [K] reward units: μ_batch(r + off), σ_batch(r)
        den = mean.abs() + SAW_CV_EPS
        cv = torch.where(den > 0, std / den.clamp_min(1e-300), torch.where(std > 0, math.inf, 0.0))
        b.cache["saw"] = _saw_from_cv(b, cv)
        return b.cache["saw"]
    valid = None if b.all_valid else b.valid  # None: every entry present, no masking passes
    x = b.rewards.to(STAT_DTYPE, copy=True)  # [N, K], ours to modify in place
    if o.saw_offsets is not None:
        x.add_(torch.tensor(o.saw_offsets, dtype=STAT_DTYPE, device=x.device))
    if valid is not None:
        x = torch.where(valid, x, 0.0)
    lo, hi = torch.aminmax(x, dim=0)
    top = pow2_scale(torch.maximum(hi, -lo))  # [K], power of two of max |x|
    x.div_(top)
    n = torch.full_like(top, float(x.shape[0])) if valid is None else valid.sum(0).to(STAT_DTYPE)  # [K]
    total = x.sum(0)  # [K]
    # Rounding of this sum is <= N·2^-53·Σ|x|. Where that could exceed 1e-10·|Σ x| (large rewards cancelling),
    # redo it exactly; otherwise the float sum is already order-independent to 1e-10 relative.
    if bool((x.shape[0] * 2.0**-53 * torch.linalg.vector_norm(x, 1, dim=0) > 1e-10 * total.abs()).any()):
        total = torch.tensor(exact_column_sums(x), dtype=STAT_DTYPE, device=x.device)  # = math.fsum per column
    mean = total / n.clamp_min(1.0)  # [K] in units of top
    dev = x.sub_(mean) if valid is None else torch.where(valid, x - mean, 0.0)
    std = dispersion((dev * dev).sum(0), n, b.ddof)
    den = mean.abs() + SAW_CV_EPS / top
    cv = torch.where(den > 0, std / den.clamp_min(1e-300), torch.where(std > 0, math.inf, 0.0))
    b.cache["saw"] = _saw_from_cv(b, cv)
    return b.cache["saw"]


def _saw_from_cv(b: RewardBatch, cv: Tensor) -> tuple[Tensor, Tensor]:
    """(w' [K], CV [K]) from the CVs: w' ∝ w_k CV_k, rescaled to sum to Σ w; an infinite CV takes all the weight."""
    what = b.weights / b.weights.max()
    infinite = torch.isinf(cv) & (what > 0)
    u = what * infinite if bool(infinite.any()) else what * torch.where(torch.isinf(cv), 0.0, cv)
    u = safe_div(u, u.max())  # in [0, 1]: no overflow in the sum below
    return b.weights.sum() * safe_div(u, u.sum()), cv


def _saw_moments_pooled(b: RewardBatch, o: AdvantageOptions) -> tuple[Tensor, Tensor] | None:
    """SAW's batch μ(r + off) and σ(r) ``[K]`` from the fast path's group statistics (O(P·K), no pass over [N, K]),
    or ``None`` when the pooled mean cannot be shown accurate to 1e-10 relative (then :func:`saw_weights` takes the
    exact-sum route over the rewards).

    σ: the parallel variance formula Σ_g [SS_g + n_g (μ_g - μ)²] (:func:`varpo.moments.pooled_mean_std`), float64-
    grade; a shift by off does not change it. μ: Σ_g n_g μ_g / N from μ_g = (Σ_{i∈g} r_i) / n_g. Summing m terms
    in any order errs by at most γ_{m-1}·Σ|terms| (Higham, Accuracy and Stability, §4.2; γ_k = k·u / (1 - k·u),
    u = 2^-53), so the group sums add at most (n_max - 1)·u·Σ|r| / N to μ, the sum over P groups (P - 1)·u·Σ|r| / N,
    and the divisions, the products n_g·μ_g and the offset one u each: |error of μ| <= 1.01·(n_max + P + 3)·u·Σ|r|
    / N, the 1.01 covering γ_k / (k·u) and cross terms for k <= 2^40 (this replaced a looser 4·N bound, which no
    batch of 1M samples could pass). Σ|r| is bounded without reading the rewards:
    Σ_{i∈g} |r_i| <= n_g |μ_g| + sqrt(n_g · SS_g) (Cauchy-Schwarz on the deviations). When that error bound is at
    most 1e-10·|μ + off| — the same test the float-sum route uses before it falls back to an exact sum — the CV is
    accurate to ~1e-10 relative and, like the exact-sum route, independent of sample order to that precision.
    Large rewards that cancel (|μ| << Σ|r| / N) fail the test and get the exact sum.
    """
    st = b.stats
    mean, std, n = b.pooled  # [K]
    bound = (st.count * st.mean.abs() + (st.count * st.sum_sq).sqrt()).sum(0)  # [K] >= Σ_i |r_ik|
    if o.saw_offsets is not None:
        off = torch.tensor(o.saw_offsets, dtype=STAT_DTYPE, device=mean.device)
        mean = mean + off
        bound = bound + n * off.abs()
    levels = st.count.amax(0) + st.count.shape[0] + 3.0  # [K] n_max + P + 3 (rounding steps in any chain)
    err = 1.01 * levels * 2.0**-53 * bound / n.clamp_min(1.0)  # bound on |error of mean|
    if not bool(torch.isfinite(bound).all()) or bool((err > 1e-10 * mean.abs()).any()):
        return None
    return mean, std


def saw(b: RewardBatch, o: AdvantageOptions) -> Estimate:
    """SAW (He, Bi et al. 2026): :func:`saw_weights`, then ``saw_base`` = grpo (combine rewards) or gdpo."""
    w, _ = saw_weights(b, o)
    if float(w.detach().sum()) == 0.0:  # constant batch: no informative component
        return torch.zeros(b.rewards.shape[0], dtype=STAT_DTYPE, device=b.rewards.device), w
    return (grpo if o.saw_base == "grpo" else gdpo)(b, o, weights=w)


def soft_min(z: Tensor, wbar: Tensor, k: float, with_grad: bool = True) -> tuple[Tensor, Tensor | None]:
    """Weighted soft-min ``-(1/k) log Σ_j w̄_j exp(-k z_j)`` over the last dim (RVPO's aggregator).

    Returns ``(value [...], grad [..., K])`` where ``grad = ∂value/∂z = softmax(log w̄ - k z)``; one ``exp`` with the
    max-shift (logsumexp) trick; ``with_grad=False`` skips the gradient (returned as None). Properties (tested): k -> 0 gives Σ w̄ z; k -> inf gives min_j z_j; for
    z = μ + δ with small δ it is μ + Σ w̄ δ - (k/2) Var_w̄(δ) + O(δ³).
    """
    return soft_min_of_logits(torch.log(wbar) - k * z, -1, k, with_grad)


def rvpo(b: RewardBatch, o: AdvantageOptions) -> Estimate:
    """RVPO (Montero et al. 2026): A = batch_whiten(-(1/k) log Σ_k w̄_k exp(-k z_k)) (soft-min of z-scores).

    Computed with logsumexp. k -> 0 gives Σ w̄ z (GDPO), k -> inf gives min_k z_k, and for small spread
    A ≈ μ_z - (k/2) Var_w̄(z). ``rvpo_variant="explicit"``: Σ w̄ z - β Σ w̄ (z - Σ w̄ z)². Missing components have
    z = 0. Effective weights: mean over samples of the soft-min's gradient ∂A/∂z_k = softmax(log w̄ - k z)_k.
    Differs from the paper: no official code; batch whitening after aggregation and eps/ddof follow GDPO.
    """
    if o.rvpo_variant == "softmin" and b.stats.tiled:  # fast path: every row scorable
        x, grad_sum = soft_min_tiles(b.stats.lazy, b.inv_std(o.eps), b.wbar, o.rvpo_k, b.diagnostics)
        eff = None if grad_sum is None else grad_sum / x.shape[0]
        return batch_whiten(x, None, o.eps, b.ddof), eff
    z = b.zscores(o.eps)  # [N, K]
    if o.rvpo_variant == "softmin":
        x, grad = soft_min(z, b.wbar, o.rvpo_k, with_grad=b.diagnostics)  # [N], [N, K] = ∂x/∂z_k
        if grad is None:  # stats=False: the effective weights are not wanted
            eff = None
        elif b.all_valid:
            eff = grad.sum(0) / grad.shape[0]
        else:
            eff = safe_div(grad[b.scorable].sum(0), b.scorable.sum().to(STAT_DTYPE))
    else:
        mu = z @ b.wbar
        x = mu - o.rvpo_beta * ((z - mu.unsqueeze(1)) ** 2 @ b.wbar)
        eff = b.wbar
    if b.all_valid:
        return batch_whiten(x, None, o.eps, b.ddof), eff
    return batch_whiten(torch.where(b.scorable, x, 0.0), b.scorable, o.eps, b.ddof), eff


_BUILT_IN: dict[str, Estimator] = {
    "grpo": grpo,
    "dr_grpo": dr_grpo,
    "ac": ac,
    "gdpo": gdpo,
    "dvao": dvao,
    "saw": saw,
    "rvpo": rvpo,
}


def _saw_diagnostics(b: RewardBatch, o: AdvantageOptions) -> dict[str, Tensor]:
    """SAW's coefficient of variation per component (``saw_cv/<name>``), the quantity its weights come from."""
    return {"saw_cv": saw_weights(b, o)[1]}


# What each built-in declares besides its function (registry.EstimatorInfo): no name checks elsewhere.
_DECLARATIONS: dict[str, dict] = {
    # zero-advantage groups = constant weighted-sum reward (dvao: eq. 9's numerator is the deviation of Σ w_k r_k)
    "grpo": dict(multi_reward=False, sum_filter=True),
    "dr_grpo": dict(multi_reward=False, sum_filter=True),
    "dvao": dict(sum_filter=True, reads=("sigma_ema",)),
    "saw": dict(diagnostics=_saw_diagnostics, reads=("saw_base", "saw_offsets")),
    # RVPO Fig. 4 anneals the soft-min temperature over training (rvpo_k -> rvpo_k_end)
    "rvpo": dict(
        anneals=(Anneal("rvpo_k", "rvpo_k_end", linear_anneal, default=AdvantageOptions.rvpo_k),),
        reads=("rvpo_k", "rvpo_variant", "rvpo_beta"),
    ),
}
for _name, _fn in _BUILT_IN.items():
    register_estimator(_name, _fn, description=_first_line(_fn), replace=True, **_DECLARATIONS.get(_name, {}))
#: the built-in methods; :func:`varpo.registry.estimators` lists these plus every registered one (the table,
#: :data:`ESTIMATORS`, is :data:`varpo.registry.ESTIMATORS`).
METHODS: tuple[str, ...] = tuple(_BUILT_IN)
