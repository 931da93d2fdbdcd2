"""Policy losses: per-token (``ppo_clip``) or per-sequence (``gvpo``) loss matrices, to be reduced by
:func:`varpo.aggregate_loss`.

Shapes: B sequences, T completion tokens. ``logprobs``/``old_logprobs``/``ref_logprobs``/``mask`` are ``[B, T]``;
``advantages`` is ``[B]`` (sequence-level, broadcast over tokens) or ``[B, T]``.
Every loss returns ``(loss, metrics)`` where ``metrics`` is a ``dict[str, float]`` of detached diagnostics.

Robustness: ``mask`` must be binary (``ValueError`` otherwise); masked-out positions are selected away with
``torch.where``, so NaN/±inf log-probs there never reach the loss, its gradient or the metrics; every log-ratio is
clamped before use (per token ±20 as verl's vanilla loss, GSPO's sequence ratio at +10 as verl's GSPO, GVPO's
per-token log-ratios ±20), so an off-policy outlier (old log-prob -1e30 or -inf) gives a finite loss and gradient.
Bad options are a one-line ``ValueError`` naming the argument.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from varpo.aggregation import check_mask
from varpo.checks import check_real, is_int
from varpo.groups import as_group_ids, broadcast, group_index, segment_sum
from varpo.registry import POLICY_LOSSES, is_per_sequence, lookup, register_policy_loss

# exp() of a log-ratio beyond this overflows float32; verl clamps the same way (negative_approx_kl in [-20, 20]).
LOG_RATIO_CLAMP = 20.0
# verl 0.9.1 compute_policy_loss_gspo clamps the sequence log-ratio at max=10 (no lower clamp); so do we.
GSPO_LOG_RATIO_MAX = 10.0


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask`` (bool); NaN/inf outside the mask are ignored."""
    return torch.where(mask, x, 0.0).sum() / mask.sum().clamp_min(1).to(x.dtype)


def _check_inputs(logprobs, old_logprobs, advantages, mask) -> Tensor:
    """Shapes and dtypes of the common inputs; returns the mask as bool."""
    for name, x in (("logprobs", logprobs), ("old_logprobs", old_logprobs), ("advantages", advantages)):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(f"{name} must be a float tensor, got {type(x).__name__}")
    if logprobs.dim() != 2 or old_logprobs.shape != logprobs.shape or getattr(mask, "shape", None) != logprobs.shape:
        shapes = [tuple(getattr(x, "shape", ())) for x in (logprobs, old_logprobs, mask)]
        raise ValueError(f"logprobs, old_logprobs and mask must share one shape [B, T], got {shapes}")
    if advantages.shape not in (logprobs.shape[:1], logprobs.shape):
        raise ValueError(
            f"advantages must be [B] or [B, T] for logprobs {tuple(logprobs.shape)}, got {tuple(advantages.shape)}"
        )
    return check_mask(mask)


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
    clip_ratio_c: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate, per token: l_t = -min(ρ_t A, clip(ρ_t, 1-ε_low, 1+ε_high) A) + β·KL_t.

    * ρ_t = exp(logp_t - old_logp_t) (PPO, Schulman et al. 2017); asymmetric bounds = DAPO clip-higher
      (Yu et al. 2025, ε_high defaults to ε_low).
    * ``clip_ratio_c = c > 1``: dual-clip PPO (Ye et al. 2020, arXiv 1912.09729), as verl's vanilla loss
      (``actor.clip_ratio_c``, verl default 3.0): for A < 0 the loss is capped at -c·A, i.e.
      l_t = min(l_t, -c·A_t). ``None`` (default) = no dual clip (TRL has none).
    * ``importance_sampling_level="sequence"``: GSPO (Zheng et al. 2025) — one ratio per sequence,
      exp(min(mean_t (logp - old_logp), 10)) over unmasked tokens, shape [B, 1]; the clamp at 10 (no lower
      clamp) is verl's ``compute_policy_loss_gspo``.
    * KL to a reference with the k3 estimator exp(ref - logp) - (ref - logp) - 1 (Schulman 2020; GRPO eq. 4),
      added when ``beta > 0``.
    * Token log-ratios are clamped to ±20 before exp (as verl) so an off-policy outlier cannot produce inf; a
      loss beyond the dtype's range (|A| > ~7e29 in float32 without dual clip) saturates at its finite maximum.

    Returns ``(loss [B, T], metrics)``; metrics: ``clip_frac_low``/``clip_frac_high`` (tokens whose ratio left the
    trust region on the side where clipping zeroes the gradient), ``clip_frac``, ``ratio_mean/min/max``, ``kl``,
    and with dual clip ``clip_frac_dual`` (A < 0 tokens where the -c·A cap is active, verl's pg_clipfrac_lower).
    """
    if importance_sampling_level not in ("token", "sequence"):
        raise ValueError(f"importance_sampling_level must be 'token' or 'sequence', got {importance_sampling_level!r}")
    clip_low = check_real("clip_low", clip_low, "a number in [0, 1)", lambda v: 0 <= v < 1)
    clip_high = clip_low if clip_high is None else check_real("clip_high", clip_high, "a number >= 0", lambda v: v >= 0)
    beta = check_real("beta", beta, "a finite number >= 0", lambda v: v >= 0)
    if clip_ratio_c is not None:
        clip_ratio_c = check_real("clip_ratio_c", clip_ratio_c, "a number > 1 (dual clip) or None", lambda v: v > 1)
    valid = _check_inputs(logprobs, old_logprobs, advantages, mask)
    if beta > 0 and ref_logprobs is None:
        raise ValueError("ppo_clip with beta > 0 needs ref_logprobs")
    log_ratio = logprobs - old_logprobs  # [B, T]
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages  # [B, 1] or [B, T]
    adv = adv.to(logprobs.dtype)
    # One host sync for both range checks below: max |A|, and (token level) the log-ratio range.
    checks = [adv.detach().abs().max()] if adv.numel() else []
    token_level = importance_sampling_level == "token"
    if token_level and log_ratio.numel():
        checks.extend(torch.aminmax(log_ratio.detach()))
    checks = torch.stack(checks).tolist() if checks else []
    adv_max = checks[0] if adv.numel() else 0.0
    if not token_level:
        lengths = valid.sum(-1, keepdim=True).clamp_min(1).to(logprobs.dtype)
        log_ratio = torch.where(valid, log_ratio, 0.0).sum(-1, keepdim=True) / lengths  # [B, 1]
        ratio = torch.exp(log_ratio.clamp(max=GSPO_LOG_RATIO_MAX))
    elif len(checks) == 3 and -LOG_RATIO_CLAMP <= checks[1] and checks[2] <= LOG_RATIO_CLAMP:
        # The ±20 clamp cannot bind (NaN fails the test): skipping it changes no value and no gradient (clamp
        # passes the gradient at its bounds) and saves a pass forward and one backward.
        ratio = torch.exp(log_ratio)
    else:
        ratio = torch.exp(log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    if adv.shape[-1] == 1:
        # One advantage per row: -min(ρA, clip(ρ)A) = -A·min(ρ, 1+ε_high) for A > 0 and -A·max(ρ, 1-ε_low) for
        # A < 0 (the same products: multiplying by A is monotone), i.e. one clamp with per-row one-sided bounds and
        # one multiply instead of two multiplies, a clamp, a minimum and a negation over [B, T].
        lower = torch.where(adv < 0, 1.0 - clip_low, -math.inf).to(adv.dtype)  # [B, 1]
        upper = torch.where(adv > 0, 1.0 + clip_high, math.inf).to(adv.dtype)
        loss = ratio.clamp(lower, upper) * (-adv)  # [B, T] (broadcast)
    else:
        loss = -torch.minimum(ratio * adv, ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv)  # [B, T]
    if clip_ratio_c is not None:
        cap = -clip_ratio_c * adv
        dual = (adv < 0) & (loss > cap)
        loss = torch.where(adv < 0, torch.minimum(loss, cap), loss)
    big = torch.finfo(logprobs.dtype).max
    loss = loss.expand_as(logprobs)
    # |loss| <= |A|·max(e^20, c) (ratios are clamped); skip the saturating clamp (a pass forward and backward)
    # when that bound is finite in the loss dtype, i.e. when it cannot change anything.
    bound = max(math.exp(LOG_RATIO_CLAMP), 1.0 + clip_high, clip_ratio_c or 0.0)
    if importance_sampling_level == "sequence":
        bound = max(bound, math.exp(GSPO_LOG_RATIO_MAX))
    if adv.numel() and not adv_max * bound * 2.0 < big:  # x2: rounding headroom
        loss = loss.clamp(-big, big)
    with torch.no_grad():
        r = ratio.expand_as(logprobs)
        # Ratios are >= 0 (exps), so masked positions set to 0 can never exceed the max of the valid ones nor
        # 1 + ε_high, and set to +inf never undercut the min nor 1 - ε_low: no gather of the valid ratios.
        r0 = torch.where(valid, r, 0.0)
        rinf = torch.where(valid, r, math.inf)
        n = valid.sum()
        count = n.clamp_min(1).to(r.dtype)
        # low and high are disjoint (r < 1 - ε_low <= 1 <= 1 + ε_high < r), so clip_frac = their sum.
        if adv.shape[-1] == 1:  # one advantage per row: count per row, then pick the rows by its sign
            n_low = ((rinf < 1.0 - clip_low).sum(-1) * (adv[:, 0] < 0)).sum().to(r.dtype)
            n_high = ((r0 > 1.0 + clip_high).sum(-1) * (adv[:, 0] > 0)).sum().to(r.dtype)
        else:
            n_low = ((rinf < 1.0 - clip_low) & (adv < 0)).sum().to(r.dtype)
            n_high = ((r0 > 1.0 + clip_high) & (adv > 0)).sum().to(r.dtype)
        if r.numel():
            one = r.new_ones(())
            r_min, r_max = torch.where(n > 0, rinf.amin(), one), torch.where(n > 0, r0.amax(), one)
        else:
            r_min = r_max = r.new_tensor(1.0)
        metrics = [n_low / count, n_high / count, (n_low + n_high) / count, r0.sum() / count, r_min, r_max]
        names = ["clip_frac_low", "clip_frac_high", "clip_frac", "ratio_mean", "ratio_min", "ratio_max"]
        if clip_ratio_c is not None:
            metrics.append(_masked_mean(dual.expand_as(logprobs).to(r.dtype), valid))
            names.append("clip_frac_dual")
    if beta > 0:
        delta = (ref_logprobs - logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        kl = torch.exp(delta) - delta - 1.0  # [B, T] k3, >= 0
        loss = loss + beta * kl
        metrics.append(_masked_mean(kl.detach(), valid))
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

    **Bounded** (beyond the paper and the official code, which have no clamp): each token's log-ratio
    logp_it - old_logp_it is clamped to ±20 before summing, as ppo_clip's, so an off-policy outlier (old log-prob
    -1e30 or -inf) cannot make the loss or gradient inf/NaN; |R_θ,i| <= 20·β·L_i, and the gradient is exactly
    eq. 8 whenever every |logp - old_logp| < 20 (always on-policy). The loss is computed in float64 and returned in
    the log-prob dtype, saturating at its finite maximum.

    ppo_clip-only options (``ref_logprobs``, ``beta``, ``clip_*``, ``importance_sampling_level``) are accepted and
    ignored so an engine can pass one option set; engines reject ``beta > 0`` with gvpo at config time.

    Returns ``(loss [B, 1], metrics)`` — one "token" per sequence; reduce it with
    ``aggregate_loss(loss, torch.ones_like(loss), "token_mean")`` (mean over sequences). The official code sums
    over the micro-batch instead; with Adam this is only a constant rescaling of the learning rate.
    """
    unknown = set(ignored) - _PPO_ONLY_OPTIONS
    if unknown:
        raise TypeError(f"gvpo got unexpected option(s) {sorted(unknown)}")
    gvpo_beta = check_real("gvpo_beta", gvpo_beta, "a finite number > 0", lambda v: v > 0)
    if group_size is not None and not is_int(group_size):
        raise ValueError(f"group_size must be an int >= 2 or None, got {group_size!r}")
    valid = _check_inputs(logprobs, old_logprobs, advantages, mask)
    group_ids = as_group_ids(group_ids, logprobs.device)
    if group_ids.shape != logprobs.shape[:1]:
        raise ValueError(f"group_ids must have shape [B]={tuple(logprobs.shape[:1])}, got {tuple(group_ids.shape)}")
    index = group_index(group_ids)
    b = logprobs.shape[0]
    counts = segment_sum(torch.ones(b, dtype=logprobs.dtype, device=logprobs.device), index)  # [P]
    expected = group_size if group_size is not None else int(counts.max()) if b else 0
    if b == 0 or expected < 2 or bool((counts != expected).any()):
        raise ValueError(
            f"gvpo needs whole groups of equal size >= 2 in every loss call (got group sizes "
            f"{sorted(set(int(c) for c in counts.tolist()))}, expected {expected}); keep micro-batches group-aligned"
        )
    f64 = torch.float64
    counts = counts.to(f64)
    log_ratio = (logprobs - old_logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # [B, T]
    implicit = gvpo_beta * torch.where(valid, log_ratio, 0.0).sum(-1, dtype=f64)  # [B]
    if advantages.dim() == 1:
        adv = advantages.to(f64)
    else:
        adv = torch.where(valid, advantages, 0.0).sum(-1, dtype=f64) / valid.sum(-1).clamp_min(1).to(f64)
    adv = adv.detach()

    def centered(x: Tensor) -> Tensor:
        return x - broadcast(segment_sum(x, index) / counts, index)

    implicit_c = implicit - broadcast(segment_sum(implicit.detach(), index) / counts, index)
    loss = 0.5 * (implicit_c - centered(adv)) ** 2 / (expected - 1)  # [B] float64
    big = torch.finfo(logprobs.dtype).max
    with torch.no_grad():
        metrics = {
            "implicit_reward_mean": implicit.mean(),
            "implicit_reward_abs_mean": implicit.abs().mean(),
            "gvpo_loss_mean": loss.mean(),
        }
    return loss.clamp(max=big).to(logprobs.dtype).unsqueeze(-1), {k: float(v) for k, v in metrics.items()}


# ppo_clip options an engine may pass uniformly; GVPO has no ratio/clip and its KL regularisation is gvpo_beta.
_PPO_ONLY_OPTIONS = {"ref_logprobs", "beta", "clip_low", "clip_high", "importance_sampling_level", "clip_ratio_c"}

# the built-ins, registered into :data:`varpo.registry.POLICY_LOSSES` (name -> loss; re-read here as
# :data:`POLICY_LOSSES`), which :func:`varpo.register_policy_loss` extends.
register_policy_loss("ppo_clip", ppo_clip, per_sequence=False, replace=True)
register_policy_loss("gvpo", gvpo, per_sequence=True, replace=True)


def policy_loss(name: str, **kwargs) -> tuple[Tensor, dict[str, float]]:
    """Dispatch to a loss in :data:`POLICY_LOSSES` by name (keyword arguments only); the result is checked at the
    boundary (a registered loss returning the wrong shape is a one-line ValueError naming it, not a broadcast)."""
    out = lookup(POLICY_LOSSES, name, "policy loss")(**kwargs)
    where = f"policy loss {name!r}"
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise ValueError(f"{where} must return (loss [B, T] tensor, metrics dict), got {type(out).__name__}")
    loss, _ = out
    logprobs = kwargs.get("logprobs")
    if not isinstance(loss, Tensor) or not loss.is_floating_point():
        got = loss.dtype if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"{where} returned a loss of {got}; expected a float tensor [B, T]")
    if isinstance(logprobs, Tensor) and logprobs.dim() == 2:
        allowed = {tuple(logprobs.shape), (logprobs.shape[0], 1)} if is_per_sequence(name) else {tuple(logprobs.shape)}
        if tuple(loss.shape) not in allowed:
            want = " or ".join(str(list(a)) for a in sorted(allowed))
            raise ValueError(f"{where} returned a loss of shape {list(loss.shape)}; expected {want}")
    return out
