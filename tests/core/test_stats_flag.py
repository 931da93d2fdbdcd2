"""``compute_advantages(stats=False)``: advantages bit-identical to the default, every diagnostic skipped."""

from __future__ import annotations

import pytest
import torch

import varpo
import varpo.advantages as A
import varpo.estimators as E


def _batch(kind: str, shuffled: bool):
    """Rewards [48, 3] in 12 groups of 4 through each statistics route: fast path (float32), missing rewards
    (whole-matrix path, NaN/inf), huge float64 (scale-robust units)."""
    gen = torch.Generator().manual_seed(3)
    rewards = torch.randint(0, 4, (48, 3), generator=gen).double() + torch.rand(
        48, 3, generator=gen, dtype=torch.float64
    )
    rewards[:4, 1] = 2.5  # a constant component in one group
    if kind == "fast":
        rewards = rewards.float()
    elif kind == "missing":
        rewards[5, 0] = float("nan")
        rewards[9, :] = float("inf")  # an unscorable sample
        rewards[12:16, 2] = float("nan")  # a component missing from a whole group
    else:  # huge
        rewards = rewards * 1e300
    ids = torch.arange(12).repeat_interleave(4)
    if shuffled:
        perm = torch.randperm(48, generator=gen)
        rewards, ids = rewards[perm], ids[perm]
    return rewards, ids


OPTIONS = {
    "grpo": {},
    "dr_grpo": {},
    "ac": {},
    "gdpo": {},
    "dvao": {},
    "saw": {"saw_offsets": (3.0, 0.0, 1.0)},
    "rvpo": {"rvpo_k": 2.0},
}


@pytest.mark.parametrize("kind", ["fast", "missing", "huge"])
@pytest.mark.parametrize("shuffled", [False, True], ids=["contiguous", "shuffled"])
@pytest.mark.parametrize("method", varpo.METHODS)
def test_stats_false_gives_bit_identical_advantages_and_no_stats(method, shuffled, kind):
    rewards, ids = _batch(kind, shuffled)
    weights = (0.5, 0.2, 0.3)
    full = varpo.compute_advantages(rewards, ids, method, weights, **OPTIONS.get(method, {}))
    lean = varpo.compute_advantages(rewards, ids, method, weights, stats=False, **OPTIONS.get(method, {}))
    assert lean.advantages.dtype == torch.float32
    assert torch.equal(lean.advantages, full.advantages)
    assert float(full.advantages.abs().sum()) > 0  # the batch carries signal: the comparison means something
    assert lean.stats == {} and lean.absent == frozenset() and lean.present_stats == {}
    assert "adv_std" in full.stats and f"weight/{0}" in full.stats


@pytest.mark.parametrize("variant", ["softmin", "explicit"])
@pytest.mark.parametrize("saw_base", ["grpo", "gdpo"])
def test_stats_false_other_variants(variant, saw_base):
    rewards, ids = _batch("fast", True)
    for method, opts in (("rvpo", {"rvpo_variant": variant}), ("saw", {"saw_base": saw_base})):
        full = varpo.compute_advantages(rewards, ids, method, **opts).advantages
        assert torch.equal(varpo.compute_advantages(rewards, ids, method, stats=False, **opts).advantages, full)


def test_stats_false_still_updates_sigma_ema():
    rewards, ids = _batch("fast", False)
    a, b = varpo.SigmaEMA(0.5, 0.5), varpo.SigmaEMA(0.5, 0.5)
    for step in range(3):
        r = rewards + step
        full = varpo.compute_advantages(r * (step + 1), ids, "dvao", sigma_ema=a)
        lean = varpo.compute_advantages(r * (step + 1), ids, "dvao", sigma_ema=b, stats=False)
        assert torch.equal(lean.advantages, full.advantages)
        assert torch.equal(a.value, b.value)


def test_stats_false_skips_every_diagnostic(monkeypatch):
    """The diagnostics, the no-signal rule on effective weights and rvpo's soft-min gradient are never computed."""

    def boom(*args, **kwargs):
        raise AssertionError("diagnostic computed with stats=False")

    real_soft_min = E.soft_min

    def soft_min(z, wbar, k, with_grad=True):
        assert not with_grad
        return real_soft_min(z, wbar, k, with_grad)

    monkeypatch.setattr(A, "batch_diagnostics", boom)
    monkeypatch.setattr(A, "no_signal_rule", boom)
    monkeypatch.setattr(E, "soft_min", soft_min)
    monkeypatch.setattr(A.RewardBatch, "pooled", property(boom))
    for shuffled in (False, True):
        rewards, ids = _batch("missing", shuffled)
        for method in varpo.METHODS:
            out = varpo.compute_advantages(rewards, ids, method, stats=False)
            assert torch.isfinite(out.advantages).all() and out.stats == {}
    with pytest.raises(AssertionError, match="diagnostic"):
        varpo.compute_advantages(rewards, ids, "grpo")


def test_registered_estimator_works_with_stats_false(monkeypatch):
    """A third-party estimator keeps its (batch, options) contract; with stats=False its weights are ignored."""
    seen = []

    def mine(batch, options):
        seen.append(batch.diagnostics)
        return batch.zscores(options.eps) @ batch.wbar, batch.wbar

    monkeypatch.setitem(A.ESTIMATORS, "mine_stats_flag", mine)
    rewards, ids = _batch("missing", True)
    full = varpo.compute_advantages(rewards, ids, "mine_stats_flag")
    lean = varpo.compute_advantages(rewards, ids, "mine_stats_flag", stats=False)
    assert torch.equal(lean.advantages, full.advantages) and lean.stats == {} and "weight/0" in full.stats
    assert seen == [True, False]


@pytest.mark.parametrize("bad", ["no", 0, None, 1.0])
def test_stats_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="stats must be True or False") as err:
        varpo.compute_advantages(torch.ones(4, 2), torch.zeros(4, dtype=torch.long), "grpo", stats=bad)
    assert "\n" not in str(err.value)
