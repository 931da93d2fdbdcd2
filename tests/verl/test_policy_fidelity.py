"""varpo's ppo_clip against verl 0.9.1's own policy losses: dual-clip vanilla PPO and GSPO, value and gradient.

verl runs its own ``vanilla``/``gspo`` losses when varpo is used as a plug-in (varpo only registers ``varpo_gvpo``),
so these tests pin what ``varpo.policy_loss("ppo_clip", clip_ratio_c=3.0)`` means: the same loss as a verl run.
"""

from __future__ import annotations

import pytest
import torch
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.workers.config import ActorConfig, PolicyLossConfig

import varpo

CLIP_LOW, CLIP_HIGH = 0.2, 0.28
# verl's seq-mean-token-mean divides each sequence by L_i + 1e-8 (varpo: L_i), a relative difference <= 1e-8.
EXACT = {"rtol": 1e-12, "atol": 1e-12}
SEQ_MEAN = {"rtol": 1e-7, "atol": 1e-12}


def _config(loss_mode: str, **overrides) -> ActorConfig:
    kwargs = dict(
        strategy="fsdp",
        rollout_n=4,
        ppo_micro_batch_size_per_gpu=1,
        clip_ratio=CLIP_LOW,
        clip_ratio_low=CLIP_LOW,
        clip_ratio_high=CLIP_HIGH,
    )
    kwargs.update(overrides)
    return ActorConfig(policy_loss=PolicyLossConfig(loss_mode=loss_mode), **kwargs)


def _batch(seed: int, b: int = 12, t: int = 9, spread: float = 1.5):
    """float64 log-probs whose ratios reach far outside [1 - ε, 1 + ε] and beyond the dual-clip cap 3,
    advantages of both signs per token, ragged masks (one row fully masked)."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    logp = (old + spread * torch.randn(b, t, generator=g, dtype=torch.float64)).requires_grad_()
    adv = torch.randn(b, t, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).to(torch.float64)
    mask[-1] = 0.0
    return logp, old, adv, mask


def _ppo_clip(logp, old, adv, mask, **options):
    """varpo's ppo_clip at the clip range these tests share with verl's config."""
    return varpo.policy_loss(
        "ppo_clip",
        logprobs=logp,
        old_logprobs=old,
        advantages=adv,
        mask=mask,
        clip_low=CLIP_LOW,
        clip_high=CLIP_HIGH,
        **options,
    )


def _grad(loss, x):
    (g,) = torch.autograd.grad(loss, x)
    return g


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("verl_mode", "mode"), [("token-mean", "token_mean"), ("seq-mean-token-mean", "seq_mean_token_mean")]
)
def test_ppo_clip_with_dual_clip_equals_verl_vanilla(seed, verl_mode, mode):
    logp, old, adv, mask = _batch(seed)
    ratio = torch.exp(logp.detach() - old)
    assert bool(((ratio > 3.0) & (adv < 0) & (mask > 0)).any())  # the dual clip is active on this batch
    theirs, verl_metrics = get_policy_loss_fn("vanilla")(
        old_log_prob=old,
        log_prob=logp,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode=verl_mode,
        config=_config("vanilla", clip_ratio_c=3.0),
    )
    per_token, metrics = _ppo_clip(logp, old, adv, mask, clip_ratio_c=3.0)
    ours = varpo.aggregate_loss(per_token, mask, mode)
    tol = EXACT if mode == "token_mean" else SEQ_MEAN
    torch.testing.assert_close(ours, theirs, **tol)
    torch.testing.assert_close(_grad(ours, logp), _grad(theirs, logp), **tol)
    assert metrics["clip_frac_dual"] == pytest.approx(
        verl_metrics["actor/pg_clipfrac_lower"], rel=1e-6
    )  # verl: float32


def test_without_dual_clip_varpo_differs_from_verl_exactly_where_the_cap_binds():
    logp, old, adv, mask = _batch(3)
    verl_fn = get_policy_loss_fn("vanilla")
    config = _config("vanilla", clip_ratio_c=3.0)
    plain, _ = _ppo_clip(logp, old, adv, mask)
    dual, _ = _ppo_clip(logp, old, adv, mask, clip_ratio_c=3.0)
    cap = (adv < 0) & (plain.detach() > -3.0 * adv)
    assert bool(cap.any())
    torch.testing.assert_close(dual.detach()[cap], (-3.0 * adv)[cap])  # capped at -c·A
    assert torch.equal(dual.detach()[~cap], plain.detach()[~cap])  # untouched elsewhere
    theirs, _ = verl_fn(old_log_prob=old, log_prob=logp, advantages=adv, response_mask=mask, config=config)
    assert not torch.isclose(varpo.aggregate_loss(plain, mask, "token_mean"), theirs)


@pytest.mark.parametrize("seed", [0, 1])
def test_gspo_equals_verl_gspo_including_the_clamp_at_10(seed):
    logp, old, adv, mask = _batch(seed, spread=0.3)
    with torch.no_grad():
        logp[0, :] += 40.0  # sequence log-ratio of row 0 far above verl's clamp (10)
    seq_adv = adv[:, 0].contiguous()
    theirs, _ = get_policy_loss_fn("gspo")(
        old_log_prob=old,
        log_prob=logp,
        advantages=seq_adv.unsqueeze(1).expand_as(logp),
        response_mask=mask,
        loss_agg_mode="seq-mean-token-mean",
        config=_config("gspo"),
    )
    per_token, metrics = _ppo_clip(logp, old, seq_adv, mask, importance_sampling_level="sequence")
    ours = varpo.aggregate_loss(per_token, mask, "seq_mean_token_mean")
    torch.testing.assert_close(ours, theirs, **SEQ_MEAN)
    torch.testing.assert_close(_grad(ours, logp), _grad(theirs, logp), **SEQ_MEAN)
    assert metrics["ratio_max"] == pytest.approx(float(torch.exp(torch.tensor(10.0))))  # clamped at e^10, as verl
