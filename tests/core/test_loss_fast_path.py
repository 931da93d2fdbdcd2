"""The loss path's shortcuts (issue 17) against the plain formulas: skipped ±20 clamp, gather-free clip metrics,
float32 per-sequence sums with a float64 fallback, and a bound on the full-size passes of one training step."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import varpo
from varpo.losses import LOG_RATIO_CLAMP


def _batch(seed: int, b: int = 16, t: int = 24, spread: float = 0.5, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    logp = old + spread * torch.randn(b, t, generator=g, dtype=torch.float64)
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    lengths[0] = t
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    return logp.to(dtype), old.to(dtype), adv.to(dtype), mask


def _reference(logp, old, adv, mask, clip_low=0.2, clip_high=0.28):
    """The formula with the clamp always applied, and metrics from the gathered valid ratios."""
    a = adv.unsqueeze(-1) if adv.dim() == 1 else adv
    ratio = torch.exp((logp - old).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    loss = -torch.minimum(ratio * a, ratio.clamp(1 - clip_low, 1 + clip_high) * a)
    r, ae = ratio.detach()[mask], a.expand_as(ratio)[mask]
    n = max(int(mask.sum()), 1)
    low = int(((r < 1 - clip_low) & (ae < 0)).sum())
    high = int(((r > 1 + clip_high) & (ae > 0)).sum())
    metrics = {
        "clip_frac_low": low / n,
        "clip_frac_high": high / n,
        "clip_frac": (low + high) / n,
        "ratio_mean": float(r.double().sum()) / n,
        "ratio_min": float(r.min()) if r.numel() else 1.0,
        "ratio_max": float(r.max()) if r.numel() else 1.0,
    }
    return loss, metrics


@pytest.mark.parametrize("spread", [0.5, 19.0 / 3])
def test_ppo_clip_clamp_skip_is_bit_identical(spread):
    """Log-ratios within ±20 (bounds included): loss and gradient equal the clamped formula bit for bit."""
    logp, old, adv, mask = _batch(0, spread=spread)
    logp = torch.where((logp - old) > LOG_RATIO_CLAMP, old + LOG_RATIO_CLAMP, logp)
    logp = torch.where((logp - old) < -LOG_RATIO_CLAMP, old - LOG_RATIO_CLAMP, logp)
    logp[0, 0], logp[0, 1] = old[0, 0] + LOG_RATIO_CLAMP, old[0, 1] - LOG_RATIO_CLAMP  # exactly on the bounds
    assert float((logp - old).abs().max()) == LOG_RATIO_CLAMP
    x, y = logp.clone().requires_grad_(), logp.clone().requires_grad_()
    ours, _ = varpo.policy_loss("ppo_clip", logprobs=x, old_logprobs=old, advantages=adv, mask=mask, clip_high=0.28)
    ref, _ = _reference(y, old, adv, mask)
    assert torch.equal(ours, ref)
    g = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1))
    ours.backward(g)
    ref.backward(g)
    assert torch.equal(x.grad, y.grad)


def test_ppo_clip_clamp_still_binds_for_outliers():
    logp, old, adv, mask = _batch(1)
    logp[0, 3] = old[0, 3] + 50.0
    logp[1, 0] = old[1, 0] - 1e30
    x = logp.clone().requires_grad_()
    loss, m = varpo.policy_loss("ppo_clip", logprobs=x, old_logprobs=old, advantages=adv, mask=mask, clip_high=0.28)
    ref, _ = _reference(logp, old, adv, mask)
    assert torch.equal(loss, ref) and math.isclose(m["ratio_max"], math.exp(20.0), rel_tol=1e-6)
    loss.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0, 3] == 0.0


@pytest.mark.parametrize("per_token_adv", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_clip_metrics_equal_gathered_reference(seed, per_token_adv):
    logp, old, adv, mask = _batch(seed, spread=0.4)
    if per_token_adv:
        adv = torch.randn(mask.shape, generator=torch.Generator().manual_seed(seed))
    logp = torch.where(mask, logp, torch.tensor(float("nan")))  # padding garbage must not reach the metrics
    _, m = varpo.policy_loss("ppo_clip", logprobs=logp, old_logprobs=old, advantages=adv, mask=mask, clip_high=0.28)
    _, ref = _reference(torch.where(mask, logp, old), old, adv, mask)
    assert ref["clip_frac_low"] > 0 and ref["clip_frac_high"] > 0  # both regions occur
    for key, value in ref.items():
        assert m[key] == pytest.approx(value, rel=1e-6), key


def test_ppo_clip_metrics_of_all_masked_and_all_above_one():
    logp, old, adv, mask = _batch(3)
    _, m = varpo.policy_loss("ppo_clip", logprobs=logp, old_logprobs=old, advantages=adv, mask=torch.zeros_like(mask))
    assert (m["ratio_min"], m["ratio_max"], m["ratio_mean"], m["clip_frac"]) == (1.0, 1.0, 0.0, 0.0)
    # every valid ratio above 1: the min is a valid ratio, not a fill value
    _, m = varpo.policy_loss("ppo_clip", logprobs=old + 0.5, old_logprobs=old, advantages=adv, mask=mask)
    assert m["ratio_min"] == pytest.approx(math.exp(0.5), rel=1e-6) == m["ratio_max"]
    _, m = varpo.policy_loss("ppo_clip", logprobs=old - 0.5, old_logprobs=old, advantages=adv, mask=mask)
    assert m["ratio_max"] == pytest.approx(math.exp(-0.5), rel=1e-6) == m["ratio_min"]


@pytest.mark.parametrize("mode", varpo.AGGREGATIONS)
def test_row_sums_float32_with_float64_fallback(mode):
    """float32 losses: equal to the float64 sums to float32 rounding; a row overflowing float32 falls back to float64
    (finite result, finite gradient)."""
    logp, old, adv, mask = _batch(4, b=8, t=300)
    loss = (torch.randn(mask.shape, generator=torch.Generator().manual_seed(5)) * 10).requires_grad_()
    out = varpo.aggregate_loss(loss, mask, mode, max_length=300)
    ref = varpo.aggregate_loss(loss.detach().double(), mask, mode, max_length=300)
    assert out.dtype == torch.float32 and float(out.detach()) == pytest.approx(float(ref), rel=1e-5, abs=1e-6)
    (g,) = torch.autograd.grad(out, loss)
    (g64,) = torch.autograd.grad(varpo.aggregate_loss(loss.double(), mask, mode, max_length=300), loss)
    torch.testing.assert_close(g, g64.float(), rtol=1e-6, atol=0)
    huge = torch.full(mask.shape, 3e38).requires_grad_()  # every row's float32 sum overflows
    out = varpo.aggregate_loss(huge, mask, mode, max_length=300)
    ref = varpo.aggregate_loss(huge.detach().double(), mask, mode, max_length=300)
    assert torch.isfinite(out) and float(out.detach()) == pytest.approx(float(ref), rel=1e-6)
    (g,) = torch.autograd.grad(out, huge)
    assert torch.isfinite(g).all()


class _FullSizeOps(TorchDispatchMode):
    """Counts ops that write a [B, T]-sized float tensor (a full pass over memory; views are not counted)."""

    def __init__(self, numel: int):
        super().__init__()
        self.numel, self.ops = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else (out,):
            view = func.name().split("::")[-1].split(".")[0] in ("detach", "expand", "view", "alias", "t")
            if isinstance(o, torch.Tensor) and not view and o.numel() == self.numel and o.dtype.is_floating_point:
                self.ops.append(f"{func}:{o.dtype}")
        return out


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean"])
def test_one_step_writes_no_float64_matrix_and_few_full_passes(mode):
    """ppo_clip + aggregation, forward and backward: no float64 [B, T] tensor, and at most 12 full-size
    float writes (the formula's own passes), so a regression to extra passes fails here."""
    logp, old, adv, mask = _batch(6, b=8, t=64)
    x = logp.clone().requires_grad_()
    varpo.policy_loss("ppo_clip", logprobs=x, old_logprobs=old, advantages=adv, mask=mask)  # warm-up call
    with _FullSizeOps(mask.numel()) as counter:
        loss, _ = varpo.policy_loss("ppo_clip", logprobs=x, old_logprobs=old, advantages=adv, mask=mask)
        varpo.aggregate_loss(loss, mask, mode).backward()
    passes = [op for op in counter.ops if "float64" not in op]
    assert len(passes) == len(counter.ops), counter.ops
    assert len(passes) <= 12, passes  # 11 at the time of writing (the main code before: 24 and float64 copies)
