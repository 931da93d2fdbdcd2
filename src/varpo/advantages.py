"""Multi-reward group advantage estimators.

One entry point, :func:`compute_advantages`, dispatches to one small function per method. Every estimator receives
the same :class:`RewardBatch` (rewards ``[N, K]``, group index, weights, lazily computed group statistics) and the
same :class:`AdvantageOptions`, and returns ``(advantages [N], effective_weights [K])``. A new method is one function
plus :func:`varpo.register_estimator` (``docs/extending.md``).

Notation (per group g, component k): μ_gk, σ_gk are the group mean/std of r_k over the samples where r_k is present;
``dev_ik = r_ik - μ_gk`` (0 where missing); ``z_ik = dev_ik / (σ_gk + eps)``; w are the user weights (default 1/K),
w̄ = w / Σw. Missing components (NaN / ±inf) are left out of their statistics and contribute 0; a sample with every
component missing is *unscorable*: advantage 0, excluded from batch statistics.

All statistics are float64 and scale-robust (per-group power-of-two units, see :mod:`varpo.stats`); the returned
advantages are float32, never NaN/inf: a non-finite estimate is 0, finite values beyond float32's range (only possible
for ``dr_grpo`` or ``ac``/``dvao`` with weights or rewards beyond ~1e38) saturate at ±3.4e38. See ``docs/methods.md`` for each method's paper,
equation, our eps/ddof choices and where we depart from the official code.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from varpo import registry
from varpo.registry import ESTIMATORS, Anneal, lookup, register_estimator
from varpo.schedules import linear_anneal
from varpo.stats import (
    F64_MAX,
    STAT_DTYPE,
    Combined,
    GroupIndex,
    GroupStats,
    as_group_ids,
    batch_whiten,
    broadcast,
    combine,
    combined_std,
    dispersion,
    exact_column_sums,
    fast_group_stats,
    group_index,
    group_stats,
    inverse_or_zero,
    pooled_mean_std,
    pow2_scale,
    pow2_scale_float,
    safe_div,
    scale_by_group,
    valid_mask,
)

SAW_BASES = ("grpo", "gdpo")
RVPO_VARIANTS = ("softmin", "explicit")
# SAW's CV denominator |μ| + 1e-8, as the official code (Zhaolutuan/SAW ray_trainer.py); its group z-scores use
# 1e-6 (= our default ``eps``), its token whitening 1e-8.
SAW_CV_EPS = 1e-8
F32_MAX = torch.finfo(torch.float32).max


@dataclass(frozen=True)
class AdvantageOptions:
    """Options shared by all estimators (validated once; unknown/invalid values raise a one-line ``ValueError``).

    Attributes:
        eps: added to every std denominator (default 1e-6 as verl; TRL uses 1e-4).
        ddof: std delta degrees of freedom; 1 = unbiased (verl/TRL), 0 = population (the papers' identities).
        names: K component names used in stats keys (default "0", "1", ...).
        sigma_ema: optional :class:`SigmaEMA` (dvao only): shrink per-group σ toward a running mean.
        saw_base: SAW route, "grpo" (weight rewards, group z-score) or "gdpo" (weight z-scores, batch whiten).
        saw_offsets: per-component shift applied before SAW's coefficient of variation (official code: +3 on a
            [-3, 3] correctness reward). CV is not shift-invariant, so this changes the weights.
        rvpo_k: RVPO soft-min temperature k > 0 (k -> 0: mean, i.e. GDPO; k -> inf: min over components).
        rvpo_variant: "softmin" (paper's main form) or "explicit" (mean - β·variance).
        rvpo_beta: β of the explicit variant.
        extra: the options a registered estimator declares itself (``register_estimator(..., options={...})``):
            name -> value, defaults filled in; also readable as attributes (``options.my_opt``).
    """

    eps: float = 1e-6
    ddof: int = 1
    names: tuple[str, ...] | None = None
    sigma_ema: SigmaEMA | None = None
    saw_base: str = "grpo"
    saw_offsets: tuple[float, ...] | None = None
    rvpo_k: float = 1.0
    rvpo_variant: str = "softmin"
    rvpo_beta: float = 0.5
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str):
        # only reached when normal lookup fails: an estimator's own option
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no option {name!r}")

    def __post_init__(self) -> None:
        _check_number("eps", self.eps, "a finite number >= 0", lambda v: v >= 0)
        if isinstance(self.ddof, bool) or not isinstance(self.ddof, numbers.Integral) or self.ddof not in (0, 1):
            raise ValueError(f"ddof must be the int 0 or 1, got {self.ddof!r}")
        if not isinstance(self.saw_base, str) or self.saw_base not in SAW_BASES:
            raise ValueError(f"saw_base must be one of {SAW_BASES}, got {self.saw_base!r}")
        if not isinstance(self.rvpo_variant, str) or self.rvpo_variant not in RVPO_VARIANTS:
            raise ValueError(f"rvpo_variant must be one of {RVPO_VARIANTS}, got {self.rvpo_variant!r}")
        _check_number("rvpo_k", self.rvpo_k, "a finite number > 0", lambda v: v > 0)
        _check_number("rvpo_beta", self.rvpo_beta, "a finite number >= 0", lambda v: v >= 0)
        if self.sigma_ema is not None and not isinstance(self.sigma_ema, SigmaEMA):
            raise ValueError(f"sigma_ema must be a varpo.SigmaEMA or None, got {type(self.sigma_ema).__name__}")
        if self.names is not None and not all(isinstance(n, str) for n in _sequence("names", self.names)):
            raise ValueError(f"names must be a sequence of K strings, got {self.names!r}")
        if self.saw_offsets is not None:
            for v in _sequence("saw_offsets", self.saw_offsets):
                _check_number("saw_offsets", v, "a sequence of K finite numbers", lambda _: True, self.saw_offsets)


def _check_number(name: str, value, allowed: str, ok, shown=None) -> None:
    """One-line ValueError naming ``name`` unless ``value`` is a finite real number (not a bool) with ``ok``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be {allowed}, got {(value if shown is None else shown)!r}")


def _sequence(name: str, value) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, Tensor)):
        raise ValueError(f"{name} must be a sequence with one entry per reward component, got {value!r}")
    return tuple(value.tolist() if isinstance(value, Tensor) else value)


@dataclass
class AdvantageOutput:
    """Result of :func:`compute_advantages`: ``advantages [N]`` float32 and scalar diagnostics.

    ``stats`` values are always finite (the estimator's contract). ``absent`` names the keys of ``stats`` that
    have no value in this batch — statistics of a component missing from the whole batch, and the ``adv_*``
    statistics of a batch without any scorable sample; their ``stats`` entry is a finite placeholder (0) that a
    logger must not show as a measurement. :attr:`present_stats` is ``stats`` without them (what the trainers log).
    """

    advantages: Tensor
    stats: dict[str, float] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()

    @property
    def present_stats(self) -> dict[str, float]:
        """``stats`` without the :attr:`absent` keys: absent is not logged, never logged as 0."""
        return {k: v for k, v in self.stats.items() if k not in self.absent}


class SigmaEMA:
    """Running mean of per-component group std across calls, used by ``dvao`` to stabilise small groups.

    Beyond the papers: DVAO names noisy σ estimates at small G as future work. With ``shrink = s`` the dvao
    denominator uses σ̃_gk = (1 - s)·σ_gk + s·σ̄_k, where σ̄_k is an exponential moving average (``decay``) of the
    batch mean of σ_gk over groups where component k has >= 2 samples. ``shrink=0`` recovers eq. 9 exactly.
    A component absent from a whole group stays out of that group's denominator. The engine keeps one instance per
    run and saves :meth:`state_dict` with its checkpoints.
    """

    def __init__(self, decay: float = 0.9, shrink: float = 0.5) -> None:
        _check_number("SigmaEMA decay", decay, "a number in [0, 1)", lambda v: 0.0 <= v < 1.0)
        _check_number("SigmaEMA shrink", shrink, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0)
        self.decay, self.shrink = float(decay), float(shrink)
        self.value: Tensor | None = None  # [K] float64

    def update(self, std: Tensor, count: Tensor) -> Tensor:
        """Fold this batch's per-group std ``[P, K]`` into the running mean; returns σ̄ ``[K]``."""
        informative = (count >= 2).to(STAT_DTYPE)  # [P, K]
        n = informative.sum(0)
        batch = safe_div((std * informative).sum(0), n)  # [K]
        if self.value is None or self.value.shape != batch.shape:
            self.value = batch.clone()
        else:
            # Components without any informative group this batch keep their previous value.
            self.value = torch.where(n > 0, self.decay * self.value + (1 - self.decay) * batch, self.value)
        return self.value

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "shrink": self.shrink,
            "value": None if self.value is None else self.value.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; a one-line ``ValueError`` names a missing or invalid key."""
        if not isinstance(state, dict):
            raise ValueError(
                f"SigmaEMA state must be a dict with keys decay, shrink, value; got {type(state).__name__}"
            )
        missing = [key for key in ("decay", "shrink", "value") if key not in state]
        if missing:
            raise ValueError(f"SigmaEMA state is missing key(s) {missing} (expected decay, shrink, value)")
        fresh = SigmaEMA(state["decay"], state["shrink"])  # validates both
        value = state["value"]
        if value is not None:
            try:
                value = torch.tensor(value, dtype=STAT_DTYPE)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"SigmaEMA state value must be a list of numbers or None, got {value!r}") from None
            if value.dim() != 1 or not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
                raise ValueError(f"SigmaEMA state value must be a 1-D list of finite stds >= 0, got {state['value']!r}")
        self.decay, self.shrink, self.value = fresh.decay, fresh.shrink, value


class RewardBatch:
    """The inputs every estimator sees. Validity masks and group statistics are computed lazily and at most once.

    With every reward finite and unit scales (:func:`varpo.stats.fast_group_stats`), statistics and the default
    combination ``Σ_k w_k dev_k`` come from one tiled pass and the [N, K] validity mask is never built.
    """

    def __init__(
        self, rewards: Tensor, index: GroupIndex, weights: Tensor, ddof: int, diagnostics: bool = True
    ) -> None:
        self.rewards = rewards  # [N, K] as given (any float dtype)
        # False: the caller discards the effective weights (compute_advantages(stats=False)); built-in estimators
        # then skip computing them and return None in their place. Registered estimators may ignore this.
        self.diagnostics = diagnostics
        self.index = index
        self.weights = weights  # [K] float64, user weights w (finite, >= 0, finite positive sum)
        self.weight_max = max(weights.tolist()) if weights.numel() else 1.0  # host copy (no later device sync)
        self.ddof = ddof
        self.cache: dict = {}

    @cached_property
    def fast(self) -> tuple[GroupStats, Tensor] | None:
        """Fast-path statistics and ``Σ_k (w_k / W) dev_k`` ``[N]``, or ``None`` (a missing reward, huge scales)."""
        if self.rewards.shape[0] == 0:
            return None
        what = self.weights / pow2_scale_float(self.weight_max)
        return fast_group_stats(self.rewards, self.index, self.ddof, what)

    @cached_property
    def valid(self) -> Tensor:
        return valid_mask(self.rewards)  # [N, K]

    @cached_property
    def all_valid(self) -> bool:
        return self.fast is not None or bool(self.valid.all())

    @cached_property
    def scorable(self) -> Tensor:
        n = self.rewards.shape[0]
        return torch.ones(n, dtype=torch.bool, device=self.rewards.device) if self.all_valid else self.valid.any(1)

    @cached_property
    def stats(self) -> GroupStats:
        if self.fast is not None:
            return self.fast[0]
        return group_stats(self.rewards, self.index, self.ddof, valid=self.valid, all_valid=self.all_valid)

    @cached_property
    def signal(self) -> Tensor:
        """``[P, K]`` float64 σ_gk where the component is present, else 0: ``> 0`` iff the component varies in the
        group (a float, so that any-reductions are ``amax``, much cheaper than bool ``any`` on CPU)."""
        st = self.stats
        return st.std if self.fast is not None else st.std * (st.count > 0)

    @cached_property
    def pooled(self) -> tuple[Tensor, Tensor, Tensor]:
        """Batch-level (pooled over groups) per-component mean, std, count ``[K]`` (reward units)."""
        return pooled_mean_std(self.stats, self.ddof)

    @cached_property
    def wbar(self) -> Tensor:
        return self.weights / self.weights.sum()  # [K]

    def combined(self, weights: Tensor | None = None) -> Combined:
        """Σ_k w_k (r_ik - μ_gk) in scale-robust units (:func:`varpo.stats.combine`)."""
        if weights is None or weights is self.weights:
            if self.fast is not None:  # computed in the statistics pass
                w_scale = pow2_scale_float(self.weight_max)
                return Combined(self.fast[1], (self.weights / w_scale).unsqueeze(0), w_scale, None)
            return combine(self.stats, self.weights, self.index, self.weight_max)
        return combine(self.stats, weights, self.index)

    def _inv_std(self, eps: float) -> Tensor:
        """``[P, K]`` 1 / (σ_gk + eps) in scaled units, 0 where that denominator is 0."""
        st = self.stats
        den = st.std + (eps if st.unit else eps / st.scale)  # >= 0
        return torch.where(den > 0, den, math.inf).reciprocal_()  # 1 / 0 -> 1 / inf = 0, one [P, K] select

    def zscores(self, eps: float) -> Tensor:
        """``z_ik = dev_ik / (σ_gk + eps)`` ``[N, K]``; 0 for missing entries and zero-variance groups.

        In scaled units: z = dev' / (σ' + eps / s_gk), identical to the unscaled formula (s is a power of two).
        """
        return self.stats.deviations() * broadcast(self._inv_std(eps), self.index)

    def zsum(self, eps: float, v: Tensor) -> Tensor:
        """``Σ_k v_k z_ik`` ``[N]`` (= ``zscores(eps) @ v``) without an [N, K] intermediate on the fast path."""
        st = self.stats
        if st.dense_dev is not None:
            return self.zscores(eps) @ v
        return st.lazy.project(self._inv_std(eps) * v)


def _first_line(fn: Callable) -> str:
    return (fn.__doc__ or "").strip().split("\n")[0]


Estimate = tuple[Tensor, Tensor]  # (advantages [N] float64, effective weights [K] float64)
Estimator = Callable[[RewardBatch, AdvantageOptions], Estimate]


# --------------------------------------------------------------------------------------------------------------
# Estimators. Each docstring: formula, source, numeric choices.
# --------------------------------------------------------------------------------------------------------------


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
    sigma = combined_std(c.value, b.index, None if b.all_valid else b.scorable, b.ddof)  # [P]
    return scale_by_group(c.value, inverse_or_zero(sigma + c.eps(o.eps)), b.index), _normalized(w)


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
    adv = scale_by_group(c.value, inverse_or_zero(denom + c.eps(o.eps)), b.index)
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
    moments = _saw_moments_pooled(b, o) if b.fast is not None else None
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

    σ: the parallel variance formula Σ_g [SS_g + n_g (μ_g - μ)²] (:func:`varpo.stats.pooled_mean_std`), float64-
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
    logits = torch.log(wbar) - k * z  # [..., K]
    top = logits.max(dim=-1, keepdim=True).values
    e = torch.exp(logits - top)
    total = e.sum(-1, keepdim=True)
    value = -(torch.log(total) + top).squeeze(-1) / k
    return value, (e / total if with_grad else None)


def _soft_min_tiled(b: RewardBatch, o: AdvantageOptions) -> tuple[Tensor, Tensor | None]:
    """:func:`soft_min` of the z-scores on the fast path, tile by tile from the streamed deviations: the same
    elementwise float64 formula (z = dev·1/(σ + eps), logits = log w̄ - k z, max-shifted exp), without
    materializing the [N, K] deviations, z-scores, logits and exps. Returns ``(value [N], Σ_i grad_i [K] or None)``.
    Component-major tiles (K <= 8) reduce over K as elementwise operations between K slabs.
    """
    lazy = b.stats.lazy
    n, k = b.rewards.shape
    inv = b._inv_std(o.eps)  # [P, K]
    kd = 0 if lazy.kmajor else -1
    out = torch.empty(n, dtype=STAT_DTYPE, device=b.rewards.device)
    grad_sum = torch.zeros(k, dtype=STAT_DTYPE, device=b.rewards.device) if b.diagnostics else None
    log_w = torch.log(b.wbar)
    for rows, dev in lazy.tiles():
        lw = log_w.view(k, *([1] * (dev.dim() - 1))) if lazy.kmajor else log_w
        logits = dev.mul_(lazy.per_group(inv, rows)).mul_(-o.rvpo_k).add_(lw)  # log w̄ - k z, in place
        top = logits.amax(kd, keepdim=True)
        e = logits.sub_(top).exp_()
        total = e.sum(kd, keepdim=True)
        out[rows] = (torch.log(total).add_(top).squeeze(kd) / -o.rvpo_k).reshape(-1)
        if grad_sum is not None:
            part = e.div_(total)
            grad_sum += part.reshape(k, -1).sum(1) if lazy.kmajor else part.reshape(-1, k).sum(0)
    return out, grad_sum


def rvpo(b: RewardBatch, o: AdvantageOptions) -> Estimate:
    """RVPO (Montero et al. 2026): A = batch_whiten(-(1/k) log Σ_k w̄_k exp(-k z_k)) (soft-min of z-scores).

    Computed with logsumexp. k -> 0 gives Σ w̄ z (GDPO), k -> inf gives min_k z_k, and for small spread
    A ≈ μ_z - (k/2) Var_w̄(z). ``rvpo_variant="explicit"``: Σ w̄ z - β Σ w̄ (z - Σ w̄ z)². Missing components have
    z = 0. Effective weights: mean over samples of the soft-min's gradient ∂A/∂z_k = softmax(log w̄ - k z)_k.
    Differs from the paper: no official code; batch whitening after aggregation and eps/ddof follow GDPO.
    """
    if o.rvpo_variant == "softmin" and b.stats.dense_dev is None and b.stats.lazy is not None:  # fast path
        x, grad_sum = _soft_min_tiled(b, o)  # every row scorable here
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


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def compute_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    method: str = "dvao",
    weights: Sequence[float] | Tensor | None = None,
    *,
    stats: bool = True,
    **options,
) -> AdvantageOutput:
    """Sequence-level advantages from a multi-component reward matrix.

    Args:
        rewards: ``[N, K]`` (or ``[N]`` for K=1) float; NaN/±inf marks a missing component.
        group_ids: ``[N]`` int; samples of one prompt share an id; any order and group sizes.
        method: one of :data:`METHODS` or a name registered with :func:`varpo.register_estimator`.
        weights: ``[K]`` non-negative component weights, default uniform 1/K.
        stats: compute the diagnostics below (default). ``False`` skips every diagnostic-only computation (the
            ``stats`` dict, the effective weights and what only they need) and returns ``stats == {}``; the
            advantages are bit-identical either way, and dvao's ``sigma_ema`` is updated either way.
        **options: fields of :class:`AdvantageOptions` (eps, ddof, names, sigma_ema, saw_base, saw_offsets,
            rvpo_k, rvpo_variant, rvpo_beta), plus the options ``method`` declares itself
            (``register_estimator(..., options={...})``), which reach that estimator only as ``options.extra``.

    Returns:
        :class:`AdvantageOutput` with ``advantages [N]`` float32 (0 for unscorable samples, groups of size 1 and
        zero-variance groups; never NaN/inf) and ``stats`` (floats): ``weight/<name>`` effective weight per
        component (:func:`no_signal_rule`: sums to 1 over the components with signal, all 0 without any),
        ``frac_zero_std_groups``, ``adv_abs_mean``, ``adv_sq_mean``,
        ``adv_max_abs``, ``adv_mean``, ``adv_std``, ``reward_mean/<name>``, ``reward_std/<name>``,
        ``group_std_mean/<name>``, ``frac_missing/<name>``, ``frac_signal/<name>`` (among groups with >= 2
        scorable samples of the component, the fraction in which it varies; absent when no group has 2) (+ the
        rows of the method's declared ``diagnostics``, e.g. ``saw_cv/<name>`` for saw), all finite.
        Statistics of a component missing from the whole batch, and the ``adv_*`` statistics of a batch without
        any scorable sample, have no value: they are named in ``absent`` (and left out of ``present_stats``,
        what loggers show), never reported as a measured 0.
    """
    estimator = lookup(ESTIMATORS, method, "advantage method")
    try:
        rewards = torch.as_tensor(rewards)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"rewards must be a float tensor [N, K], got {type(rewards).__name__}") from None
    if rewards.dim() == 1:
        rewards = rewards.unsqueeze(1)
    if rewards.dim() != 2 or not rewards.is_floating_point():
        raise ValueError(f"rewards must be a float tensor [N, K], got {rewards.dtype} {tuple(rewards.shape)}")
    n, k = rewards.shape
    if k == 0:
        raise ValueError("rewards must have at least one component (K >= 1), got shape [N, 0]")
    group_ids = as_group_ids(group_ids, rewards.device)
    if group_ids.shape != (n,):
        raise ValueError(f"group_ids must have shape [N]=({n},), got {tuple(group_ids.shape)}")
    opts = _options(method, options, k)
    w = _weights(weights, k, rewards.device)
    if not isinstance(stats, bool):
        raise ValueError(f"stats must be True or False, got {stats!r}")
    batch = RewardBatch(rewards, group_index(group_ids), w, opts.ddof, diagnostics=stats)
    if n == 0:
        return AdvantageOutput(torch.zeros(0, dtype=torch.float32, device=rewards.device), {})
    adv, eff = _checked_output(method, estimator(batch, opts), n, k, stats, rewards.requires_grad)
    # The documented contract (docs/extending.md): NaN and ±inf become 0 — an infinite advantage is no measurement,
    # and saturating it at ±3.4e38 turned a registered method's inf into NaN weights in training. Finite values
    # beyond float32 (reward-unit methods with huge rewards or weights) saturate at the float32 range. One min/max
    # pass decides whether the guard has anything to do (NaN fails the range test); the diagnostics reuse it.
    bounds = torch.aminmax(adv.detach())
    lo, hi = (float(v) for v in bounds)
    if not (-F32_MAX <= lo and hi <= F32_MAX):
        adv = torch.where(torch.isfinite(adv), adv, 0.0).clamp_(-F32_MAX, F32_MAX)
        bounds = torch.aminmax(adv.detach())
    if not batch.all_valid:
        adv = torch.where(batch.scorable, adv, 0.0)
    # copy=True: a float32 estimate (a registered estimator may return a view of the rewards) is never handed back
    # as the caller's own memory
    if not stats:
        return AdvantageOutput(adv.to(torch.float32, copy=True))
    eff = no_signal_rule(batch, eff)
    return AdvantageOutput(adv.to(torch.float32, copy=True), *_stats(batch, opts, method, adv, eff, bounds))


def _checked_output(
    method: str, out: object, n: int, k: int, stats: bool, rewards_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """An estimator's ``(advantages, effective_weights)`` checked at the boundary (a registered method's mistake is
    a one-line ValueError naming it, not an obscure error later or a silently misaligned batch): advantages a float
    tensor of shape ``[N]`` that requires grad only when the rewards do (advantages are constants of the policy
    loss; a graph the estimator attached itself would be differentiated through); effective weights ``[K]`` (or
    None, which only ``stats=False`` may return)."""
    where = f"advantage method {method!r}"
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(f"{where} must return (advantages [N], effective_weights [K]), got {type(out).__name__}")
    adv, eff = out
    if not isinstance(adv, Tensor):
        raise ValueError(f"{where} returned advantages as {type(adv).__name__}; expected a float tensor [N]")
    if not adv.is_floating_point():
        raise ValueError(f"{where} returned {adv.dtype} advantages; expected a float tensor [N]")
    if adv.shape != (n,):
        raise ValueError(f"{where} returned advantages of shape {tuple(adv.shape)}; expected [N]=({n},)")
    if adv.requires_grad and not rewards_grad:
        raise ValueError(f"{where} returned advantages that require grad; return them detached (constants of the loss)")
    if eff is None:
        if stats:
            raise ValueError(f"{where} returned no effective weights (None); expected a tensor [K]=({k},)")
        return adv, None
    if not isinstance(eff, Tensor) or eff.shape != (k,):
        got = f"shape {tuple(eff.shape)}" if isinstance(eff, Tensor) else type(eff).__name__
        raise ValueError(f"{where} returned effective weights of {got}; expected a tensor [K]=({k},)")
    return adv, eff.detach()


def _std_from_sums(x: Tensor, total: Tensor, sq: Tensor, n: int) -> Tensor:
    """Population std of ``x [N]`` from Σx and Σx² when that is accurate, else two-pass.

    var = Σx²/n - (Σx/n)² loses log2(Σx²/(n·var)) bits to cancellation: at most 1 bit when mean² <= Σx²/(2n).
    Every built-in estimator centres its advantages (per group or over the batch), so the mean is rounding noise
    and the one-pass value is float64-accurate; an uncentred output (a registered estimator) takes two passes.
    """
    mean, mean_sq = total / n, sq / n
    if bool(mean * mean <= mean_sq * 0.5):
        return (mean_sq - mean * mean).clamp_min(0.0).sqrt()
    return torch.linalg.vector_norm(x - mean).div(math.sqrt(n))


def no_signal_rule(b: RewardBatch, eff: Tensor) -> Tensor:
    """The one rule every method's effective weights follow (applied after the estimator, built-in or registered).

    A component *has signal* when it varies within at least one group (σ_gk > 0). Components without signal —
    constant everywhere, missing from the whole batch, or only in singleton groups — contribute nothing to any
    advantage, so their effective weight is 0 and the others are renormalized to sum to 1. With no signal at all
    every weight is 0 (and every advantage is 0). ``[K]`` float64.
    """
    signal = b.signal.amax(0) > 0  # [K]
    w = torch.nan_to_num(eff.to(STAT_DTYPE).clamp_min(0.0)) * signal.to(STAT_DTYPE)
    return safe_div(w, w.sum())


#: the options every estimator shares (the fields of AdvantageOptions but ``extra``).
SHARED_OPTIONS: tuple[str, ...] = tuple(f for f in AdvantageOptions.__dataclass_fields__ if f != "extra")


def _options(method: str, options: dict, k: int) -> AdvantageOptions:
    """Shared options -> fields; ``method``'s own declared options (defaults filled in) -> ``extra``; any other key
    is a one-line ValueError naming the method and what it accepts."""
    own = registry.estimator_info(method).options
    clash = sorted(set(own) & set(SHARED_OPTIONS))
    if clash:
        raise ValueError(f"advantage method {method!r} declares option(s) {clash} that shadow shared options")
    unknown = sorted(set(options) - set(SHARED_OPTIONS) - set(own))
    if unknown:
        mine = f"its own options: {sorted(own)}" if own else "no options of its own"
        raise ValueError(
            f"unknown advantage option(s) {unknown} for advantage method {method!r} ({mine}); "
            f"shared options: {sorted(SHARED_OPTIONS)}"
        )
    extra = {key: options.pop(key, default) for key, default in own.items()}
    for key in ("names", "saw_offsets"):
        if options.get(key) is not None:
            options[key] = _sequence(key, options[key])
            if len(options[key]) != k:
                raise ValueError(f"{key} must have K={k} entries, got {len(options[key])}")
    return AdvantageOptions(**options, extra=MappingProxyType(extra))


def _weights(weights, k: int, device) -> Tensor:
    if weights is None:
        return torch.full((k,), 1.0 / k, dtype=STAT_DTYPE, device=device)
    try:
        w = torch.as_tensor(weights, dtype=STAT_DTYPE, device=device).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"weights must be K={k} numbers, got {weights!r}") from None
    if w.numel() != k:
        raise ValueError(f"weights must have K={k} entries, got {w.numel()}")
    values = w.tolist()  # one device->host transfer; checks on the host
    total = sum(values) if all(math.isfinite(v) for v in values) else math.nan  # inf if the sum overflows
    if not math.isfinite(total) or min(values) < 0 or total <= 0:
        raise ValueError(f"weights must be finite, non-negative, not all zero, with a finite sum; got {values}")
    return w


def _declared_diagnostics(b: RewardBatch, o: AdvantageOptions, method: str, keys: list[str], per_k: Tensor) -> Tensor:
    """Append the rows of the estimator's declared ``diagnostics`` hook (``{key: [K]}``) to ``per_k`` and ``keys``."""
    hook = registry.estimator_info(method).diagnostics
    if hook is None:
        return per_k
    k = b.rewards.shape[1]
    rows = hook(b, o)
    if not isinstance(rows, Mapping):
        raise ValueError(f"diagnostics of advantage method {method!r} must return {{key: tensor [K]}}, got {rows!r}")
    for key, row in rows.items():
        if not isinstance(key, str) or key in keys or "/" in key:
            raise ValueError(f"diagnostics of advantage method {method!r}: key {key!r} is taken or not a plain name")
        if not isinstance(row, Tensor) or row.shape != (k,):
            got = tuple(row.shape) if isinstance(row, Tensor) else type(row).__name__
            raise ValueError(
                f"diagnostics of advantage method {method!r}: {key!r} must be a tensor [K]=({k},), got {got}"
            )
        per_k = torch.cat([per_k, row.detach().to(per_k.device, STAT_DTYPE).unsqueeze(0)])
        keys.append(key)
    return per_k


def _stats(
    b: RewardBatch, o: AdvantageOptions, method: str, adv: Tensor, eff: Tensor, bounds: tuple[Tensor, Tensor]
) -> tuple[dict[str, float], frozenset[str]]:
    """Diagnostics (all finite) and the keys among them that are absent in this batch (see
    :class:`AdvantageOutput`), gathered into one tensor so there is a single device->host sync.
    ``bounds``: ``torch.aminmax(adv)``, already computed by the caller."""
    k = b.rewards.shape[1]
    names = o.names or tuple(str(i) for i in range(k))
    if b.all_valid:  # every row scorable: no masking passes; sums without [N] temporaries where torch allows
        n = max(adv.shape[0], 1)
        total = adv.sum()
        lo, hi = bounds
        sq = torch.dot(adv, adv)
        adv_scalars = [
            torch.linalg.vector_norm(adv, 1) / n,
            sq / n,
            torch.maximum(hi, -lo),
            total / n,
            _std_from_sums(adv, total, sq, n),
            adv.new_zeros(()),
        ]
        any_row = adv.new_ones(1)  # N >= 1 here (empty batches return before the estimator)
    else:
        rows = b.scorable.to(STAT_DTYPE)
        n = rows.sum().clamp_min(1.0)
        a = adv * rows
        adv_scalars = [
            a.abs().sum() / n,
            (a * a).sum() / n,
            a.abs().max(),
            a.sum() / n,
            (((a - a.sum() / n) * rows) ** 2).sum().div(n).sqrt(),
            1.0 - rows.sum() / max(rows.numel(), 1),
        ]
        any_row = rows.sum().clamp_max(1.0)[None]
    std, count = b.stats.real_std, b.stats.count  # [P, K]
    signal = b.signal.amax(1) > 0  # [P] some component varies in the group
    groups = max(b.index.num_groups, 1)
    if b.fast is not None:  # every component present in every group: no [P, K] masks
        group_std_mean = std.sum(0) / groups
    else:
        present = count > 0
        group_std_mean = safe_div((std * present).sum(0), present.sum(0).to(STAT_DTYPE))
    # frac_signal/<name>: among groups with >= 2 scorable samples of the component, the fraction where it varies
    # (a group where it varies has >= 2 of them). No such group: absent, not 0 (the collapse alarm reads it).
    scorable_groups = (count >= 2).sum(0).to(STAT_DTYPE)  # [K]
    frac_signal = safe_div((b.signal > 0).sum(0).to(STAT_DTYPE), scorable_groups)
    r_mean, r_std, r_count = b.pooled
    scalars = torch.stack(
        [
            1.0 - signal.to(STAT_DTYPE).sum() / groups,
            *adv_scalars,
        ]
    )
    per_k = torch.stack(
        [
            eff.to(STAT_DTYPE),
            r_mean,
            r_std,
            group_std_mean,
            1.0 - r_count / max(b.rewards.shape[0], 1),
            frac_signal,
        ]
    )
    keys = ["weight", "reward_mean", "reward_std", "group_std_mean", "frac_missing", "frac_signal"]
    per_k = _declared_diagnostics(b, o, method, keys, per_k)
    # Absent is not zero: statistics of a component missing from the whole batch (and advantage statistics of a
    # batch with no scorable sample) stay finite here (placeholder 0) but are named in `absent`, so a logger leaves
    # them out instead of plotting a fake 0. One extra row in the same sync: the per-component presence.
    presence = torch.cat([(r_count > 0).to(STAT_DTYPE), (scorable_groups > 0).to(STAT_DTYPE)])
    values = torch.cat([scalars, per_k.flatten(), presence, any_row])
    values = torch.nan_to_num(values, nan=0.0, posinf=F64_MAX, neginf=-F64_MAX).tolist()
    no_rows = values.pop() == 0.0
    present_k = [bool(v) for v in values[-2 * k : -k]]
    signal_k = [bool(v) for v in values[-k:]]
    del values[-2 * k :]
    out = dict(
        zip(
            [
                "frac_zero_std_groups",
                "adv_abs_mean",
                "adv_sq_mean",
                "adv_max_abs",
                "adv_mean",
                "adv_std",
                "frac_unscorable",
            ],
            values[:7],
        )
    )
    absent = {"adv_abs_mean", "adv_sq_mean", "adv_max_abs", "adv_mean", "adv_std"} if no_rows else set()
    rest = values[7:]
    for i, key in enumerate(keys):
        for j, name in enumerate(names):
            out[f"{key}/{name}"] = rest[i * k + j]
            if key not in ("weight", "frac_missing") and not present_k[j]:
                absent.add(f"{key}/{name}")
            elif key == "frac_signal" and not signal_k[j]:
                absent.add(f"{key}/{name}")
    return out, frozenset(absent)
