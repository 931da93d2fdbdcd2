"""The papers' propositions and the identities between methods."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import varpo
from varpo.advantages import soft_min


def _group(seed: int, g: int = 8, k: int = 3, binary: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if binary:
        return torch.randint(0, 2, (g, k), generator=gen).double()
    return torch.rand(g, k, generator=gen, dtype=torch.float64)


def _adv(r, method, **kw):
    ids = torch.zeros(r.shape[0], dtype=torch.long)
    return varpo.compute_advantages(r, ids, method=method, **kw).advantages.double()


def _dirichlet_weights(seed: int, k: int) -> torch.Tensor:
    w = torch.rand(k, generator=torch.Generator().manual_seed(seed + 99), dtype=torch.float64) + 0.05
    return w / w.sum()


# ---- DVAO Proposition 1: (1/G)Σ A_sum² = 1 ≥ (1/G)Σ (Σ w_k A_k)², equality iff all correlations are 1 ----------
@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 4))
def test_dvao_prop1_rc_mean_square_at_least_ac(seed, k):
    r = _group(seed, k=k)
    w = _dirichlet_weights(seed, k)
    rc = _adv(r, "grpo", weights=w, ddof=0, eps=0.0)
    ac = _adv(r, "ac", weights=w, ddof=0, eps=0.0)
    assert float((rc**2).mean()) == pytest.approx(1.0, abs=1e-5)
    assert (ac**2).mean() <= (rc**2).mean() + 1e-6


def test_dvao_prop1_equality_for_perfectly_correlated_rewards():
    r1 = _group(5, k=1)
    r = torch.cat([r1, 2 * r1 + 3, 0.5 * r1 - 1], dim=1)  # correlation 1
    rc, ac = _adv(r, "grpo", ddof=0, eps=0.0), _adv(r, "ac", ddof=0, eps=0.0)
    assert float((ac**2).mean()) == pytest.approx(float((rc**2).mean()), abs=1e-5)


# ---- DVAO Proposition 2: |A_dvao| <= |A_grpo| pointwise (any eps >= 0, ddof) --------------------------------------
@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), binary=st.booleans(), ddof=st.sampled_from([0, 1]))
def test_dvao_prop2_pointwise_bounded_by_rc(seed, k, binary, ddof):
    r = _group(seed, k=k, binary=binary)
    w = _dirichlet_weights(seed, k)
    dvao = _adv(r, "dvao", weights=w, ddof=ddof)
    rc = _adv(r, "grpo", weights=w, ddof=ddof)
    assert (dvao.abs() <= rc.abs() + 1e-5).all()


def test_dvao_prop2_equality_for_perfectly_correlated_rewards():
    r1 = _group(7, k=1)
    r = torch.cat([r1, 3 * r1 - 1], dim=1)
    torch.testing.assert_close(_adv(r, "dvao", eps=0.0), _adv(r, "grpo", eps=0.0), rtol=1e-5, atol=1e-6)


def test_dvao_is_convex_combination_of_zscores():
    # A_dvao = Σ w̃_k z_k, w̃ = wσ / Σ wσ  ->  |A| <= max_k |z_k| (the "bounded magnitude" property)
    r = _group(11, g=16, k=3)
    z = (r - r.mean(0)) / r.std(0)
    assert (_adv(r, "dvao", eps=0.0).abs() <= z.abs().max(1).values + 1e-6).all()


# ---- DVAO Proposition 3: sensitivities of AC (eq. 11) and DVAO (eq. 12), autograd, ddof=0, eps=0 --------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dvao_prop3_sensitivities(seed):
    g, k = 6, 3
    r = _group(seed, g=g, k=k)
    w = _dirichlet_weights(seed, k)
    ids = torch.zeros(g, dtype=torch.long)

    def adv(method):
        return lambda x: varpo.compute_advantages(x, ids, method=method, weights=w, ddof=0, eps=0.0).advantages

    jac_ac = torch.autograd.functional.jacobian(adv("ac"), r.float())  # [G, G, K]
    jac_dv = torch.autograd.functional.jacobian(adv("dvao"), r.float())
    sigma = r.std(0, unbiased=False)  # [K]
    a_k = (r - r.mean(0)) / sigma  # [G, K]
    a_dvao = _adv(r, "dvao", weights=w, ddof=0, eps=0.0)
    w_tilde = w * sigma / (w * sigma).sum()
    for j in range(g):
        want_ac = w / sigma * (1 - 1 / g - a_k[j] ** 2 / g)  # eq. 11
        want_dv = w_tilde / sigma * (1 - 1 / g - a_dvao[j] * a_k[j] / g)  # eq. 12
        torch.testing.assert_close(jac_ac[j, j].double(), want_ac, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(jac_dv[j, j].double(), want_dv, rtol=1e-4, atol=1e-5)


# ---- identities between methods -------------------------------------------------------------------------------
def test_ac_is_weighted_sum_of_single_reward_grpo():
    r = _group(3, g=8, k=3)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    per_k = sum(w[j] * _adv(r[:, j], "grpo") for j in range(3))
    torch.testing.assert_close(_adv(r, "ac", weights=w), per_k, rtol=1e-5, atol=1e-6)


def test_single_component_methods_coincide():
    r = _group(4, g=8, k=1)
    grpo = _adv(r, "grpo")
    for m in ("ac", "dvao", "saw"):
        torch.testing.assert_close(_adv(r, m), grpo, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_adv(r, "dr_grpo"), (r[:, 0] - r[:, 0].mean()), rtol=1e-6, atol=1e-7)


def test_gdpo_batch_statistics():
    gen = torch.Generator().manual_seed(8)
    r = torch.rand(48, 2, generator=gen)
    ids = torch.arange(6).repeat_interleave(8)
    a = varpo.compute_advantages(r, ids, method="gdpo").advantages.double()
    assert float(a.mean()) == pytest.approx(0.0, abs=1e-6) and float(a.std()) == pytest.approx(1.0, abs=1e-4)


def test_scale_and_shift_invariances():
    r = _group(9, g=8, k=2)
    scaled = r * torch.tensor([10.0, 0.1], dtype=torch.float64) + torch.tensor([5.0, -2.0], dtype=torch.float64)
    for m in ("ac", "gdpo", "rvpo"):  # per-component z-scores: invariant to per-component affine maps
        torch.testing.assert_close(_adv(r, m, eps=0.0), _adv(scaled, m, eps=0.0), rtol=1e-5, atol=1e-5)
    for m in ("grpo", "dvao", "dr_grpo"):  # shift invariant
        torch.testing.assert_close(_adv(r + 7.0, m), _adv(r, m), rtol=1e-5, atol=1e-5)


# ---- SAW ----------------------------------------------------------------------------------------------------------
def test_saw_weights_sum_and_constant_component():
    gen = torch.Generator().manual_seed(10)
    r = torch.cat([torch.rand(32, 1, generator=gen), torch.ones(32, 1)], dim=1)
    out = varpo.compute_advantages(r, torch.arange(32) // 4, method="saw", weights=[0.3, 0.7], names=["a", "b"])
    assert out.stats["weight/b"] == 0.0 and out.stats["weight/a"] == pytest.approx(1.0)
    assert out.stats["saw_cv/b"] == 0.0
    # all components constant: advantage 0
    zero = varpo.compute_advantages(torch.ones(8, 2), torch.arange(8) // 4, method="saw").advantages
    assert torch.equal(zero, torch.zeros(8))


def test_saw_is_scale_invariant_but_not_shift_invariant():
    gen = torch.Generator().manual_seed(12)
    r = torch.randint(0, 2, (32, 2), generator=gen).float()
    ids = torch.arange(32) // 4

    def weights(**kw):
        s = varpo.compute_advantages(r * kw.pop("scale", 1.0), ids, method="saw", **kw).stats
        return s["weight/0"], s["weight/1"]

    assert weights(scale=5.0) == pytest.approx(weights())  # CV is scale invariant
    assert weights(saw_offsets=[3.0, 0.0]) != pytest.approx(weights())  # ... but not shift invariant


# ---- RVPO ---------------------------------------------------------------------------------------------------------
def test_rvpo_small_k_equals_gdpo():
    gen = torch.Generator().manual_seed(13)
    r = torch.rand(40, 3, generator=gen)
    ids = torch.randperm(40, generator=gen) % 5
    w = [0.2, 0.3, 0.5]
    gdpo = varpo.compute_advantages(r, ids, method="gdpo", weights=w).advantages
    rvpo = varpo.compute_advantages(r, ids, method="rvpo", weights=w, rvpo_k=1e-5).advantages
    torch.testing.assert_close(rvpo, gdpo, rtol=1e-4, atol=1e-4)


def test_soft_min_limits_and_taylor_expansion():
    gen = torch.Generator().manual_seed(14)
    z = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    wbar = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    torch.testing.assert_close(soft_min(z, wbar, 1e-7)[0], z @ wbar, rtol=1e-5, atol=1e-5)
    big = soft_min(z, wbar, 1e4)[0]
    assert (big - z.min(1).values).abs().max() < 1e-3  # k -> inf: min over components
    mu = torch.randn(50, 1, generator=gen, dtype=torch.float64)
    errors = []
    for scale in (1e-1, 1e-2):
        delta = scale * torch.randn(50, 4, generator=gen, dtype=torch.float64)
        k = 1.5
        mean = delta @ wbar
        var = ((delta - mean.unsqueeze(1)) ** 2) @ wbar
        taylor = mu.squeeze(1) + mean - k / 2 * var
        errors.append(float((soft_min(mu + delta, wbar, k)[0] - taylor).abs().max()))
    assert errors[1] < errors[0] / 100  # O(δ³): 10x smaller spread -> >= 100x smaller error


def test_rvpo_large_k_ranks_by_worst_component():
    # Balanced (z = (.8, .8)) vs unbalanced (z = (2, -.4)) have the same mean; the soft-min prefers balanced.
    r = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    a = varpo.compute_advantages(r, torch.zeros(6, dtype=torch.long), method="rvpo", rvpo_k=5.0).advantages
    g = varpo.compute_advantages(r, torch.zeros(6, dtype=torch.long), method="gdpo").advantages
    assert a[4] < g[4] and a[5] < g[5]  # the unbalanced samples are discounted relative to the mean aggregator
