"""Multi-reward group advantage estimators: the public entry point.

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

The pieces live in modules with one job each, and their public names are importable from here too:
:mod:`varpo.options` (:class:`AdvantageOptions`, parsing a call's options and weights), :mod:`varpo.sigma`
(:class:`SigmaEMA`), :mod:`varpo.batch` (:class:`RewardBatch`), :mod:`varpo.estimators` (the built-ins and their
registration), :mod:`varpo.diagnostics` (the no-signal rule and the ``stats`` dict). This module checks the inputs,
runs the estimator, checks its output at the boundary and assembles :class:`AdvantageOutput`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

# The modules below hold the pieces; their public names are re-exported here, where code has always found them.
from varpo.batch import Estimate, Estimator, RewardBatch
from varpo.diagnostics import batch_diagnostics, declared_diagnostics, no_signal_rule
from varpo.estimators import (
    METHODS,
    SAW_CV_EPS,
    ac,
    dr_grpo,
    dvao,
    gdpo,
    grpo,
    rvpo,
    saw,
    saw_weights,
    soft_min,
)
from varpo.groups import as_group_ids, group_index
from varpo.numerics import F32_MAX
from varpo.options import (
    RVPO_VARIANTS,
    SAW_BASES,
    SHARED_OPTIONS,
    AdvantageOptions,
    parse_options,
    parse_weights,
)
from varpo.registry import ESTIMATORS, lookup
from varpo.sigma import SigmaEMA
from varpo.workspace import Workspace

__all__ = [
    "ESTIMATORS",
    "F32_MAX",
    "METHODS",
    "RVPO_VARIANTS",
    "SAW_BASES",
    "SAW_CV_EPS",
    "SHARED_OPTIONS",
    "AdvantageOptions",
    "AdvantageOutput",
    "Estimate",
    "Estimator",
    "RewardBatch",
    "SigmaEMA",
    "Workspace",
    "ac",
    "compute_advantages",
    "declared_diagnostics",
    "dr_grpo",
    "dvao",
    "gdpo",
    "grpo",
    "no_signal_rule",
    "rvpo",
    "saw",
    "saw_weights",
    "soft_min",
]


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


def compute_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    method: str = "dvao",
    weights: Sequence[float] | Tensor | None = None,
    *,
    stats: bool = True,
    workspace: Workspace | None = None,
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
        workspace: a :class:`varpo.Workspace` whose tile buffers the call reuses (the caller owns it: keep one per
            run and thread, as the engines keep their ``SigmaEMA``). ``None`` gives the call fresh buffers, which
            the operating system pages in again on every call (about 1-2 ms at N = 64k on one CPU core); the
            advantages are bit-identical either way.
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
    opts = parse_options(method, options, k)
    w = parse_weights(weights, k, rewards.device)
    if workspace is not None and not isinstance(workspace, Workspace):
        raise ValueError(f"workspace must be a varpo.Workspace or None, got {type(workspace).__name__}")
    if not isinstance(stats, bool):
        raise ValueError(f"stats must be True or False, got {stats!r}")
    batch = RewardBatch(rewards, group_index(group_ids), w, opts.ddof, diagnostics=stats, workspace=workspace)
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
    return AdvantageOutput(adv.to(torch.float32, copy=True), *batch_diagnostics(batch, opts, method, adv, eff, bounds))


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
