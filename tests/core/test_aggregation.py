"""Loss aggregation: hand values, VL Norm's unbiasedness / minimum variance, micro-batch invariance."""

from __future__ import annotations

import pytest
import torch

import varpo

LOSS = torch.tensor([[1.0, 2.0, 3.0, 7.0], [4.0, 9.0, 9.0, 9.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])  # L = (3, 1); masked entries must not count


def test_hand_values():
    agg = varpo.aggregate_loss
    assert float(agg(LOSS, MASK, "token_mean")) == pytest.approx(10 / 4)  # (1+2+3+4) / 4 tokens
    assert float(agg(LOSS, MASK, "seq_mean_token_mean")) == pytest.approx((2 + 4) / 2)  # mean of per-seq means
    assert float(agg(LOSS, MASK, "seq_mean_token_sum_norm", max_length=4)) == pytest.approx(10 / (2 * 4))
    # VL Norm α=1, M=4: L^-1 = (1/3, 1), Σ = 4/3 -> (1/4)·[(1/3)/(4/3)·6 + 1/(4/3)·4] = (1/4)(1.5 + 3)
    assert float(agg(LOSS, MASK, "vl_norm", max_length=4, alpha=1.0)) == pytest.approx(1.125)
    # α = .5: L^-.5 = (.57735, 1) -> (1/4)·(.57735·6 + 4) / 1.57735
    assert float(agg(LOSS, MASK, "vl_norm", max_length=4, alpha=0.5)) == pytest.approx(
        (3**-0.5 * 6 + 4) / (4 * (3**-0.5 + 1))
    )


def test_vl_norm_alpha_zero_is_dr_grpo_and_weights_route_is_identical():
    gen = torch.Generator().manual_seed(0)
    loss = torch.randn(16, 12, generator=gen, dtype=torch.float64)
    mask = (torch.rand(16, 12, generator=gen) > 0.4).double()
    mask[3] = 0.0  # an empty sequence
    m = 12
    torch.testing.assert_close(
        varpo.aggregate_loss(loss, mask, "vl_norm", max_length=m, alpha=0.0),
        varpo.aggregate_loss(loss, mask, "seq_mean_token_sum_norm", max_length=m),
    )
    for alpha in (0.5, 0.75, 1.0):
        w = varpo.vl_norm_weights(mask.sum(-1), alpha)  # official ΔL-Norm route: scale advantages, Dr.GRPO norm
        torch.testing.assert_close(
            varpo.aggregate_loss(loss * w.unsqueeze(1), mask, "seq_mean_token_sum_norm", max_length=m),
            varpo.aggregate_loss(loss, mask, "vl_norm", max_length=m, alpha=alpha),
        )
        assert w[3] == 0.0


@pytest.mark.parametrize("mode", varpo.AGGREGATIONS)
@pytest.mark.parametrize("split", [[8], [4, 4], [1, 2, 5], [3, 3, 2]])
def test_micro_batch_invariance(mode, split):
    """Σ over micro-batches with the global LossScale == full batch, in value and in gradient."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 10, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(8, 10, generator=gen) > 0.35).double()
    mask[5] = 0.0
    kw = dict(max_length=10, alpha=0.75)
    full = varpo.aggregate_loss(x * x, mask, mode, **kw)
    (g_full,) = torch.autograd.grad(full, x)
    scale = varpo.loss_scale(mask, alpha=0.75)
    total, start = 0.0, 0
    for size in split:
        rows = slice(start, start + size)
        total = total + varpo.aggregate_loss((x * x)[rows], mask[rows], mode, scale=scale, **kw)
        start += size
    (g_micro,) = torch.autograd.grad(total, x)
    torch.testing.assert_close(total, full)
    torch.testing.assert_close(g_micro, g_full)


def test_validation():
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        varpo.aggregate_loss(LOSS, MASK, "mean")
    with pytest.raises(ValueError, match="max_length"):
        varpo.aggregate_loss(LOSS, MASK, "vl_norm")
    with pytest.raises(ValueError, match="alpha"):
        varpo.aggregate_loss(LOSS, MASK, "vl_norm", max_length=4, alpha=-1.0)
    with pytest.raises(ValueError, match="computed with alpha"):
        varpo.aggregate_loss(LOSS, MASK, "vl_norm", max_length=4, alpha=1.0, scale=varpo.loss_scale(MASK, alpha=0.5))


def _sample_weights(mode: str, lengths: torch.Tensor, max_length: int, alpha: float = 1.0) -> torch.Tensor:
    """x_i = ∂loss/∂(Σ_t l_it), read off aggregate_loss by autograd (so the test exercises the library)."""
    t = int(lengths.max())
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).double()
    loss = torch.ones(len(lengths), t, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(varpo.aggregate_loss(loss, mask, mode, max_length=max_length, alpha=alpha), loss)
    return g[:, 0]


def test_vl_norm_unbiased_and_minimum_variance_monte_carlo():
    """VL Norm §3: with independent sample gradients g_i, E g_i = μ, Var g_i = V·L_i, the estimator Σ x_i g_i is
    unbiased for μ/M for every α and has minimum variance at α = 1 (GRPO norm is biased, DAPO/Dr.GRPO noisier)."""
    lengths = torch.tensor([3, 8, 20, 50, 120, 400])
    m, mu, v, trials = 512, 2.0, 1.0, 200_000
    gen = torch.Generator().manual_seed(0)
    g = mu + (v * lengths.double()).sqrt() * torch.randn(trials, len(lengths), generator=gen, dtype=torch.float64)
    variances = {}
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5):
        x = _sample_weights("vl_norm", lengths, m, alpha)
        est = g @ x  # [trials]
        se = float(est.std()) / trials**0.5
        assert abs(float(est.mean()) - mu / m) < 5 * se  # unbiased for μ/M
        assert float(x.sum()) == pytest.approx(1 / m)
        variances[alpha] = float(est.var())
        assert variances[alpha] == pytest.approx(v * float((x * x * lengths).sum()), rel=0.03)  # V Σ x_i² L_i
    assert min(variances, key=variances.get) == 1.0
    # α=1 attains the bound V / (M² Σ 1/L_i) (Table 1)
    assert variances[1.0] == pytest.approx(v / (m * m * float((1.0 / lengths.double()).sum())), rel=0.03)
    # GRPO norm (seq_mean_token_mean) is biased: Σ x_i = (1/B) Σ 1/L_i depends on the lengths
    x_grpo = _sample_weights("seq_mean_token_mean", lengths, m)
    assert float(x_grpo.sum()) == pytest.approx(float((1.0 / lengths.double()).mean()))
