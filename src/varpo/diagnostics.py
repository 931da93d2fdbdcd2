"""What :func:`varpo.compute_advantages` reports besides the advantages: the no-signal rule on effective weights,
the per-batch diagnostics (one device->host sync) and the rows an estimator declares itself.

Every value is finite; a statistic that has no value in the batch (a component missing everywhere, the advantage
statistics of a batch without a scorable sample) is reported as a placeholder 0 *and* named as absent, so loggers
leave it out instead of plotting a fake 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from varpo import registry
from varpo.batch import RewardBatch
from varpo.numerics import F64_MAX, STAT_DTYPE, safe_div
from varpo.options import AdvantageOptions


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


def declared_diagnostics(b: RewardBatch, o: AdvantageOptions, method: str, keys: list[str], per_k: Tensor) -> Tensor:
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


def batch_diagnostics(
    b: RewardBatch, o: AdvantageOptions, method: str, adv: Tensor, eff: Tensor, bounds: tuple[Tensor, Tensor]
) -> tuple[dict[str, float], frozenset[str]]:
    """Diagnostics (all finite) and the keys among them that are absent in this batch (see
    :class:`varpo.advantages.AdvantageOutput`), gathered into one tensor so there is a single device->host sync.
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
    if b.all_valid:  # every component present in every group: no [P, K] masks
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
    per_k = declared_diagnostics(b, o, method, keys, per_k)
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
