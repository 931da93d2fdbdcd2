"""Policy losses: hand values, gradients against the papers' formulas, GVPO Theorems 3.1 and 3.2."""

from __future__ import annotations

import math

import pytest
import torch

import varpo


def _ones(b, t):
    return torch.ones(b, t)


def test_ppo_clip_hand_values():
    # one token each: ratio e (log-ratio 1) or 1 (on-policy); A = +1 / -1; clip ε = .2, ε_high = .28
    logp = torch.tensor([[1.0], [1.0], [0.0], [-1.0]])
    old = torch.zeros(4, 1)
    adv = torch.tensor([1.0, -1.0, 2.0, 1.0])
    loss, m = varpo.policy_loss(
        "ppo_clip", logprobs=logp, old_logprobs=old, advantages=adv, mask=_ones(4, 1), clip_low=0.2, clip_high=0.28
    )
    # row 0: min(e·1, 1.28·1) = 1.28 -> -1.28   (clipped above, A > 0)
    # row 1: min(-e, -1.28) = -e    -> e       (A < 0: unclipped side is the pessimistic one)
    # row 2: on-policy: -2
    # row 3: ratio 1/e < .8, A > 0: min(e^-1, .8) = e^-1 -> -e^-1
    torch.testing.assert_close(loss.squeeze(1), torch.tensor([-1.28, math.e, -2.0, -math.exp(-1)]))
    assert m["clip_frac_high"] == pytest.approx(0.25) and m["clip_frac_low"] == 0.0
    assert m["ratio_max"] == pytest.approx(math.e) and m["ratio_min"] == pytest.approx(math.exp(-1))


@pytest.mark.parametrize("per_token", [False, True], ids=["per-row-A", "per-token-A"])
def test_ppo_clip_dual_clip_metric_at_zero_advantage_and_at_the_cap(per_token):
    """``clip_frac_dual`` counts A < 0 tokens whose loss is strictly above the cap -c·A: never an A = 0 token (its
    loss 0 equals its cap 0 — common in GRPO, every row of a solved or failed group) and never a token exactly at
    the cap (the cap does not change it)."""

    def run(logp, adv, c):
        logp = torch.tensor(logp).unsqueeze(1)
        adv = torch.tensor(adv)
        if per_token:
            adv = adv.unsqueeze(1)
        return varpo.policy_loss(
            "ppo_clip",
            logprobs=logp,
            old_logprobs=torch.zeros_like(logp),
            advantages=adv,
            mask=torch.ones_like(logp),
            clip_ratio_c=c,
        )

    # On-policy batch, three zero-advantage rows and one A > 0 row: nothing is capped.
    loss, m = run([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], 3.0)
    assert m["clip_frac_dual"] == 0.0
    torch.testing.assert_close(loss.squeeze(1), torch.tensor([0.0, 0.0, 0.0, -1.0]))
    # A = -1 and ratio e: loss e·1; c = e as the float32 exp gives it, so the loss sits exactly at the cap c·1.
    c = float(torch.exp(torch.tensor(1.0)))
    # rows: at the cap; above it (ratio e^2 > c: capped to c); below it (on-policy, loss 1 < c); A = 0 off-policy.
    loss, m = run([1.0, 2.0, 0.0, 1.0], [-1.0, -1.0, -1.0, 0.0], c)
    torch.testing.assert_close(loss.squeeze(1), torch.tensor([c, c, 1.0, 0.0]), rtol=0, atol=0)
    assert m["clip_frac_dual"] == 0.25  # only the row above the cap


def test_ppo_clip_sequence_level_ratio_gspo():
    logp = torch.tensor([[0.3, 0.1, 9.0]])  # third token is padding
    old = torch.zeros(1, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, m = varpo.policy_loss(
        "ppo_clip",
        logprobs=logp,
        old_logprobs=old,
        advantages=torch.tensor([1.0]),
        mask=mask,
        importance_sampling_level="sequence",
        clip_low=0.5,
    )
    ratio = math.exp(0.2)  # exp(mean of the unmasked log-ratios)
    torch.testing.assert_close(loss, torch.full((1, 3), -ratio))
    assert m["ratio_mean"] == pytest.approx(ratio)


def test_ppo_clip_k3_kl():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    loss, m = varpo.policy_loss(
        "ppo_clip",
        logprobs=logp,
        old_logprobs=logp.detach(),
        advantages=torch.zeros(1),
        mask=_ones(1, 2),
        ref_logprobs=ref,
        beta=0.1,
    )
    d = ref - logp
    kl = torch.exp(d) - d - 1
    torch.testing.assert_close(loss, 0.1 * kl)
    assert m["kl"] == pytest.approx(float(kl.mean()))
    with pytest.raises(ValueError, match="ref_logprobs"):
        varpo.policy_loss(
            "ppo_clip", logprobs=logp, old_logprobs=logp, advantages=torch.zeros(1), mask=_ones(1, 2), beta=0.1
        )


def test_ppo_clip_on_policy_gradient_is_reinforce():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, generator=gen, requires_grad=True)
    logp = torch.log_softmax(logits, -1)
    adv = torch.tensor([1.0, -0.5, 2.0])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float32)
    loss, _ = varpo.policy_loss("ppo_clip", logprobs=logp, old_logprobs=logp.detach(), advantages=adv, mask=mask)
    (g1,) = torch.autograd.grad(varpo.aggregate_loss(loss, mask, "token_mean"), logits, retain_graph=True)
    reinforce = -(adv.unsqueeze(1) * logp * mask).sum() / mask.sum()
    (g2,) = torch.autograd.grad(reinforce, logits)
    torch.testing.assert_close(g1, g2)


def test_policy_loss_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown policy loss"):
        varpo.policy_loss("ppo", logprobs=None)


# ---- GVPO -------------------------------------------------------------------------------------------------------
def _gvpo_inputs(seed: int, groups: int = 3, g: int = 4, t: int = 6):
    gen = torch.Generator().manual_seed(seed)
    b = groups * g
    logits = torch.randn(b, t, generator=gen, dtype=torch.float64, requires_grad=True)
    old = torch.randn(b, t, generator=gen, dtype=torch.float64) - 1.0
    mask = (torch.rand(b, t, generator=gen) > 0.3).double()
    mask[:, 0] = 1.0
    ids = torch.arange(groups).repeat_interleave(g)[torch.randperm(b, generator=gen)] * 10 + 3  # shuffled
    rewards = torch.rand(b, 2, generator=gen, dtype=torch.float64)
    return logits, old, mask, ids, rewards


@pytest.mark.parametrize("seed", [0, 1])
def test_gvpo_gradient_equals_paper_eq8(seed):
    logits, old, mask, ids, rewards = _gvpo_inputs(seed)
    beta, g = 0.1, 4
    logp = torch.nn.functional.logsigmoid(logits)  # any differentiable per-token log-prob
    a = varpo.compute_advantages(rewards, ids, method="dr_grpo").advantages.double()
    loss, _ = varpo.policy_loss(
        "gvpo", logprobs=logp, old_logprobs=old, advantages=a, mask=mask, group_ids=ids, gvpo_beta=beta
    )
    (got,) = torch.autograd.grad(loss.sum(), logits, retain_graph=True)
    # eq. 8 (+ Listing 1's 1/(k-1)): ∇L = -β Σ_i [(a_i - ā) - β(s_i - s_old,i - mean_g(s - s_old))] ∇ s_i / (k-1)
    with torch.no_grad():
        s = (logp * mask).sum(-1)
        implicit = s - (old * mask).sum(-1)
        weight = torch.empty_like(s)
        for gid in ids.unique():
            sel = ids == gid
            weight[sel] = (a[sel] - a[sel].mean()) - beta * (implicit[sel] - implicit[sel].mean())
    (want,) = torch.autograd.grad((-beta * weight.detach() * (logp * mask).sum(-1)).sum() / (g - 1), logits)
    torch.testing.assert_close(got, want)


def test_gvpo_value_and_whole_group_check():
    logits, old, mask, ids, rewards = _gvpo_inputs(2)
    logp = torch.nn.functional.logsigmoid(logits)
    a = varpo.compute_advantages(rewards, ids, method="dr_grpo").advantages.double()
    loss, m = varpo.policy_loss(
        "gvpo", logprobs=logp, old_logprobs=logp.detach(), advantages=a, mask=mask, group_ids=ids
    )
    assert loss.shape == (12, 1)
    # on-policy R_θ = 0 in value: loss_i = ½ (a_i - ā)² / (k - 1)
    torch.testing.assert_close(loss.squeeze(1), 0.5 * a.detach() ** 2 / 3)
    assert m["implicit_reward_abs_mean"] == 0.0
    with pytest.raises(ValueError, match="whole groups"):
        varpo.policy_loss(
            "gvpo", logprobs=logp[:-1], old_logprobs=old[:-1], advantages=a[:-1], mask=mask[:-1], group_ids=ids[:-1]
        )
    with pytest.raises(ValueError, match="whole groups"):
        varpo.policy_loss("gvpo", logprobs=logp, old_logprobs=old, advantages=a, mask=mask, group_ids=ids, group_size=6)


def test_gvpo_theorem_3_1_tabular_policy_converges_to_tilted_reference():
    """Minimising the GVPO loss over a tabular softmax policy reaches π* = π_ref·exp(R/β)/Z (Theorem 3.1/3.2).

    Six responses of one prompt, all in one group (uniform sampling distribution, which satisfies Theorem 3.2's
    support condition); the reference (= sampling policy π_θ') is fixed.
    """
    gen = torch.Generator().manual_seed(0)
    beta = 0.5
    ref_logp = torch.log_softmax(torch.randn(6, generator=gen, dtype=torch.float64), 0)
    reward = torch.rand(6, generator=gen, dtype=torch.float64) * 2
    theta = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    ids = torch.zeros(6, dtype=torch.long)
    adv = varpo.compute_advantages(reward, ids, method="dr_grpo").advantages.double()
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(3000):
        logp = torch.log_softmax(theta, 0).unsqueeze(1)  # [6, 1]: one "token" per response
        loss, _ = varpo.policy_loss(
            "gvpo",
            logprobs=logp,
            old_logprobs=ref_logp.unsqueeze(1),
            advantages=adv,
            mask=torch.ones(6, 1, dtype=torch.float64),
            group_ids=ids,
            gvpo_beta=beta,
        )
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    target = torch.softmax(ref_logp + reward / beta, 0)
    torch.testing.assert_close(torch.softmax(theta.detach(), 0), target, rtol=1e-4, atol=1e-5)


def _gvpo_expected_loss(theta, ref_logp, reward, pi_s, beta, k=2):
    """E_{y_1..y_k ~ π_s iid}[Σ_i loss_i] of varpo's own gvpo loss, exactly: every ordered k-tuple of the n
    responses is one group, weighted by its probability Π_j π_s(y_j) (π_s detached: it is a sampling distribution)."""
    n = theta.shape[0]
    tuples = torch.cartesian_prod(*[torch.arange(n)] * k)  # [n^k, k]
    y = tuples.flatten()  # [n^k · k]: group g = rows g·k .. g·k + k - 1
    ids = torch.arange(tuples.shape[0]).repeat_interleave(k)
    logp = torch.log_softmax(theta, 0)
    loss, _ = varpo.policy_loss(
        "gvpo",
        logprobs=logp[y].unsqueeze(1),
        old_logprobs=ref_logp[y].unsqueeze(1),
        advantages=reward[y],
        mask=torch.ones(y.shape[0], 1, dtype=theta.dtype),
        group_ids=ids,
        gvpo_beta=beta,
    )
    weight = pi_s.detach()[tuples].prod(1)  # [n^k]
    return (weight.repeat_interleave(k) * loss.squeeze(1)).sum()


def _tv(p, q):
    return float(0.5 * (p - q).abs().sum())


def test_gvpo_theorem_3_2_off_policy_sampling_distribution():
    """Theorem 3.2: with samples from π_s ≠ π_θ' (here a 50/50 mixture of the current policy and a fixed behaviour
    policy, full support) the GVPO optimum is still π* = π_θ'·exp(R/β)/Z; with a π_s that gives zero mass to part of
    the support of π_θ', the loss is minimised (its optimum condition R_θ - R = const holds on supp π_s) but π* is
    not recovered. The expectation over groups is exact (all k-tuples, weighted), so convergence is deterministic.
    """
    gen = torch.Generator().manual_seed(1)
    beta, n = 0.5, 6
    ref_logp = torch.log_softmax(torch.randn(n, generator=gen, dtype=torch.float64), 0)  # π_θ', fixed
    reward = torch.rand(n, generator=gen, dtype=torch.float64) * 2
    reward[4:] += 1.0  # π* puts most of its mass on responses 4, 5
    behaviour = torch.softmax(torch.randn(n, generator=gen, dtype=torch.float64), 0)
    target = torch.softmax(ref_logp + reward / beta, 0)

    # The weighted group loss is ½ Var_{π_s}(R_θ - R), i.e. ½ × eq. 9 (the group variance is unbiased, 1/(k-1)).
    theta = torch.randn(n, generator=gen, dtype=torch.float64)
    d = beta * (torch.log_softmax(theta, 0) - ref_logp) - reward
    var = (behaviour * (d - (behaviour * d).sum()) ** 2).sum()
    torch.testing.assert_close(_gvpo_expected_loss(theta, ref_logp, reward, behaviour, beta), 0.5 * var)

    def train(sampling):
        theta = torch.zeros(n, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([theta], lr=0.1)
        for _ in range(500):  # reaches TV ~ 1e-12 (the expectation is exact)
            loss = _gvpo_expected_loss(theta, ref_logp, reward, sampling(theta), beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.softmax(theta.detach(), 0)

    mixed = train(lambda theta: 0.5 * torch.softmax(theta.detach(), 0) + 0.5 * behaviour)
    assert _tv(mixed, target) <= 1e-3

    partial = behaviour.clone()
    partial[4:] = 0.0  # supp π_s misses responses 4, 5 ⊂ supp π_θ'
    got = train(lambda theta: partial / partial.sum())
    assert _tv(got, target) > 0.1  # the optimum is not recovered (TV 0.17 here) ...
    inside = slice(0, 4)  # ... although the loss is minimised: on supp π_s, π_θ ∝ π* (Thm 3.1's condition)
    assert _tv(got[inside] / got[inside].sum(), target[inside] / target[inside].sum()) <= 1e-3
