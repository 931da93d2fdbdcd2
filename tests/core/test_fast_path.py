"""The tiled fast path (:func:`varpo.stats.fast_group_stats`) against the whole-matrix path it replaces.

Same float64 formulas, different memory traffic: statistics must agree to float64 rounding and advantages to
float32 rounding, on both layouts (dense tiles of whole groups, scatter tiles), both tile layouts (component-major
for K <= 8, row-major otherwise), several tiles per call, and with constant non-dyadic groups (0.1 × G), whose
rounding-noise deviations the fast path must zero like the slow one.
"""

from __future__ import annotations

import pytest
import torch

import varpo
from varpo import stats as S
from varpo import workspace as W
from varpo.aggregation import check_mask


def _batch(n_groups: int, g: int, k: int, dtype, shuffle: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.rand(n_groups * g, k, generator=gen, dtype=torch.float64) * 4 - 2
    rewards[:g] = 0.1  # a constant non-dyadic group: its mean is not exactly 0.1
    rewards[g : 2 * g, 0] = 1e30  # a huge constant component next to O(1) ones
    rewards = rewards.to(dtype)
    ids = torch.arange(n_groups).repeat_interleave(g) * 7 + 3  # sparse ids: lookup table on the shuffled route
    if shuffle:
        perm = torch.randperm(n_groups * g, generator=gen)
        rewards, ids = rewards[perm].contiguous(), ids[perm].contiguous()
    return rewards, ids


@pytest.mark.parametrize("k", [1, 3, 12])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fast_statistics_equal_the_whole_matrix_path(monkeypatch, k, shuffle, dtype):
    monkeypatch.setattr(W, "TILE_ELEMENTS", 64)  # many tiles per call
    rewards, ids = _batch(12, 5, k, dtype, shuffle)
    index = S.group_index(ids)
    assert (index.group_size is None) == shuffle
    weights = torch.rand(k, dtype=torch.float64) + 0.1
    fast = S.fast_group_stats(rewards, index, 1, weights)
    assert fast is not None
    got, c = fast
    assert got.dense_dev is None  # nothing [N, K] materialized until asked
    want = S.group_stats(rewards, index, 1)
    assert want.unit and got.unit
    for name in ("mean", "sum_sq", "std", "count"):
        torch.testing.assert_close(
            getattr(got, name), getattr(want, name).expand_as(getattr(got, name)), rtol=1e-12, atol=0
        )
    torch.testing.assert_close(c, want.dev @ weights, rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(got.deviations(), want.dev, rtol=1e-12, atol=1e-300)
    per_group = torch.rand(index.num_groups, k, dtype=torch.float64)
    torch.testing.assert_close(
        got.lazy.project(per_group), (want.dev * per_group[index.inverse]).sum(1), rtol=1e-12, atol=1e-300
    )
    assert torch.equal(got.deviations()[ids == 3], torch.zeros(5, k, dtype=torch.float64))  # the 0.1 group


@pytest.mark.parametrize("method", varpo.METHODS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_fast_advantages_equal_the_whole_matrix_path(monkeypatch, method, shuffle):
    monkeypatch.setattr(W, "TILE_ELEMENTS", 96)
    rewards, ids = _batch(10, 6, 3, torch.float32, shuffle, seed=3)
    fast = varpo.compute_advantages(rewards, ids, method, [0.5, 0.3, 0.2], eps=0.0)
    slow = varpo.compute_advantages(rewards.clone().requires_grad_(True), ids, method, [0.5, 0.3, 0.2], eps=0.0)
    torch.testing.assert_close(fast.advantages, slow.advantages.detach(), rtol=1e-6, atol=1e-6)
    assert fast.stats.keys() == slow.stats.keys()
    for key, value in fast.stats.items():
        assert value == pytest.approx(slow.stats[key], rel=1e-9, abs=1e-12), key


def test_fast_path_declines_missing_rewards_and_huge_float64():
    rewards, ids = _batch(4, 4, 2, torch.float32, False)
    index = S.group_index(ids)
    w = torch.ones(2, dtype=torch.float64)
    assert S.fast_group_stats(rewards, index, 1, w) is not None
    rewards[5, 1] = float("nan")
    assert S.fast_group_stats(rewards, index, 1, w) is None
    huge = torch.full((16, 2), 1e300, dtype=torch.float64)
    assert S.fast_group_stats(huge, index, 1, w) is None  # needs scale-robust units


def test_fast_path_never_modifies_float64_input():
    rewards, ids = _batch(4, 4, 3, torch.float64, True)
    before = rewards.clone()
    for method in varpo.METHODS:
        varpo.compute_advantages(rewards, ids, method)
    assert torch.equal(rewards, before)


def test_group_index_lookup_table_matches_unique():
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(-50, 50, (300,), generator=gen)
    index = S.group_index(ids)
    values, inverse = torch.unique(ids, return_inverse=True)
    assert index.num_groups == values.numel() and torch.equal(index.inverse, inverse)
    assert torch.equal(index.sizes(), torch.bincount(inverse))


def test_mask_check_is_redone_after_an_in_place_change():
    mask = torch.ones(2, 3)
    assert check_mask(mask).all()
    mask[0, 1] = 0.5  # bumps the version counter: the cached result must not be reused
    with pytest.raises(ValueError, match="binary"):
        check_mask(mask)
    with pytest.raises(ValueError, match="binary"):
        check_mask(torch.tensor([[1.0, float("nan")]]))


def test_exact_column_sums_equal_fsum():
    import math

    gen = torch.Generator().manual_seed(0)
    for trial in range(40):
        n = int(torch.randint(1, 2000, (1,), generator=gen))
        x = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 4 - 2
        if trial % 2:  # magnitudes from 2^-1070 to 1, and cancelling pairs
            x = x * torch.pow(2.0, -torch.randint(0, 1070, (n, 3), generator=gen).double())
            x = torch.cat([x, -x[: n // 2]]).clamp(-1.999, 1.999)
        assert S.exact_column_sums(x) == [math.fsum(col) for col in x.T.tolist()]
    assert S.exact_column_sums(torch.zeros(5, 2, dtype=torch.float64)) == [0.0, 0.0]


@pytest.mark.parametrize("k", [3, 12])  # component-major and row-major tiles
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("diagnostics", [True, False])
def test_rvpo_tiled_soft_min_equals_the_materialized_route(monkeypatch, k, shuffle, diagnostics):
    """rvpo on the fast path streams the soft-min per tile and never materializes the [N, K] deviations; its float64
    advantages and effective weights equal the route through the materialized z-scores to float64 rounding."""
    from varpo import advantages as A

    monkeypatch.setattr(W, "TILE_ELEMENTS", 96)
    rewards, ids = _batch(10, 6, k, torch.float32, shuffle, seed=5)
    index = S.group_index(ids)
    weights = torch.rand(k, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.1
    options = A.AdvantageOptions(rvpo_k=3.0)
    tiled = A.RewardBatch(rewards, index, weights, 1, diagnostics=diagnostics)
    adv, eff = A.rvpo(tiled, options)
    assert tiled.stats.dense_dev is None  # nothing [N, K] was materialized
    dense = A.RewardBatch(rewards, index, weights, 1)
    assert dense.stats.dev.shape == rewards.shape  # materialized: rvpo then takes the whole-matrix soft-min
    want, want_eff = A.rvpo(dense, options)
    torch.testing.assert_close(adv, want, rtol=1e-12, atol=1e-12)
    if diagnostics:
        torch.testing.assert_close(eff, want_eff, rtol=1e-12, atol=1e-15)
    else:
        assert eff is None


@pytest.mark.parametrize("method", varpo.METHODS)
def test_advantages_differentiate_the_same_on_both_layouts(method):
    """Rewards that require grad (the whole-matrix path) backpropagate, on the dense layout as on shuffled ids: no
    tensor autograd holds (the dense combined σ, gdpo/rvpo's whitened centres) is modified in place. (No constant
    group: the derivative of σ = sqrt(Σ d²) at 0 is not defined.)"""
    rewards = torch.rand(24, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 4 - 2
    ids = torch.arange(6).repeat_interleave(4)
    perm = torch.randperm(ids.numel(), generator=torch.Generator().manual_seed(2))
    weights = torch.linspace(1.0, 2.0, ids.numel(), dtype=torch.float64)
    x = rewards.clone().requires_grad_(True)
    (varpo.compute_advantages(x, ids, method, stats=False).advantages.double() * weights).sum().backward()
    y = rewards[perm].clone().requires_grad_(True)
    (varpo.compute_advantages(y, ids[perm], method, stats=False).advantages.double() * weights[perm]).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad[perm], y.grad, rtol=1e-5, atol=1e-7)


def test_returned_advantages_never_share_the_callers_memory():
    """A registered estimator may return a float32 view of the rewards; the caller still gets its own tensor."""
    rewards = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
    try:
        varpo.register_estimator("_view_of_rewards", lambda b, o: (b.rewards[:, 0], b.weights))
        out = varpo.compute_advantages(rewards, [0, 0, 1, 1], "_view_of_rewards")
    finally:
        from varpo.advantages import ESTIMATORS
        from varpo.registry import ESTIMATOR_INFO

        ESTIMATORS.pop("_view_of_rewards", None)
        ESTIMATOR_INFO.pop("_view_of_rewards", None)
    assert out.advantages.data_ptr() != rewards.data_ptr()
    out.advantages.mul_(0)
    assert rewards[:, 0].tolist() == [1.0, 3.0, 5.0, 7.0]


@pytest.mark.parametrize("method", varpo.METHODS)
def test_a_reused_workspace_gives_the_same_bits_and_stays_bounded(monkeypatch, method):
    """One caller-owned workspace across calls of different sizes and layouts (tile buffers reused, many tiles per
    call): advantages and diagnostics equal those of calls with fresh buffers, and it never holds more than its
    slots of one tile each."""
    monkeypatch.setattr(W, "TILE_ELEMENTS", 96)
    ws = varpo.Workspace()
    for groups, g, k, shuffle in [(12, 5, 3, False), (10, 6, 3, True), (7, 4, 12, True), (30, 8, 2, False)]:
        rewards, ids = _batch(groups, g, k, torch.float32, shuffle, seed=groups)
        mine = varpo.compute_advantages(rewards, ids, method, workspace=ws)
        fresh = varpo.compute_advantages(rewards, ids, method)
        assert torch.equal(mine.advantages, fresh.advantages) and mine.stats == fresh.stats
    held = [b for b in ws._buffers if b is not None]
    assert len(ws._buffers) == ws.slots and held and all(b.numel() == 96 for b in held)


@pytest.mark.parametrize("bad", [{}, "ws", 3])
def test_workspace_must_be_a_workspace(bad):
    with pytest.raises(ValueError, match="workspace must be a varpo.Workspace or None"):
        varpo.compute_advantages(torch.ones(4, 2), [0, 0, 1, 1], "grpo", workspace=bad)
