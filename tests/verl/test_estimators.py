"""varpo_* estimators run through verl's own ``compute_advantage`` equal the core library on the same data."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from verl.trainer.ppo import (
    core_algos,
    ray_trainer,
)

import varpo
import varpo.verl.plugin  # noqa: F401  (normally loaded by `import verl` through the entry point)
from tests.verl.helpers import KEYS, algo_config, group_ids, make_batch
from varpo.verl import state as verl_state

ESTIMATORS = [f"varpo_{m}" for m in varpo.METHODS]
# verl's advantages are float32: two routes to the same value may differ by a few float32 ulps (2^-23 ≈ 1.2e-7
# relative each), so comparisons use rtol 1e-5 (~80 ulps) and an atol for values near 0, never float64-tight ones.
F32 = {"rtol": 1e-5, "atol": 1e-6}
OPTIONS = {  # a non-default option per method so option plumbing is exercised too
    "varpo_saw": {"saw_base": "gdpo", "saw_offsets": [0.5, 0.0, 0.0]},
    "varpo_rvpo": {"rvpo_k": 2.0},
}


def run_verl(data, name, **varpo_options):
    """verl's legacy-trainer call, exactly as RayPPOTrainer.fit makes it (module global, keyword arguments)."""
    return ray_trainer.compute_advantage(
        data,
        adv_estimator=name,
        gamma=1.0,
        lam=1.0,
        num_repeat=1,
        norm_adv_by_std_in_grpo=True,
        config=algo_config(**varpo_options),
    ).batch["advantages"]


def core(rewards, uids, method, mask, weights=None, **options):
    out = varpo.compute_advantages(torch.as_tensor(rewards), group_ids(uids), method, weights, **options)
    return out.advantages.unsqueeze(-1) * mask


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_through_verl_equals_core_with_components(name):
    data, uids, rewards, _ = make_batch(seed=3)
    mask = data.batch["response_mask"].clone()
    options = OPTIONS.get(name, {})
    weights = [1.0, 2.0, 0.5]
    got = run_verl(data, name, reward_keys=list(KEYS), reward_weights=weights, **options)
    want = core(rewards, uids, name.removeprefix("varpo_"), mask, weights, names=KEYS, **options)
    assert got.shape == mask.shape
    torch.testing.assert_close(got, want.to(got.dtype), **F32)
    assert torch.all(got[mask == 0] == 0)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_single_reward_uses_token_level_rewards(name):
    data, uids, rewards, _ = make_batch(seed=4)
    got = run_verl(data, name)
    want = core(rewards.sum(1), uids, name.removeprefix("varpo_"), data.batch["response_mask"])
    torch.testing.assert_close(got, want.to(got.dtype), **F32)


# verl's grpo_vectorized ignores norm_adv_by_std_in_grpo=False (always normalizes), so it only pairs with varpo_grpo.
@pytest.mark.parametrize(
    ("verl_name", "norm", "name"),
    [("grpo", True, "varpo_grpo"), ("grpo", False, "varpo_dr_grpo"), ("grpo_vectorized", True, "varpo_grpo")],
)
def test_grpo_and_dr_grpo_equal_verl_grpo(verl_name, norm, name):
    """Same eps (1e-6 added to std) and ddof (1, torch.std) as verl; all groups have >= 2 samples."""
    data, *_ = make_batch(seed=5)
    theirs = (
        ray_trainer.compute_advantage(data, adv_estimator=verl_name, norm_adv_by_std_in_grpo=norm, config=algo_config())
        .batch["advantages"]
        .clone()
    )
    ours = run_verl(make_batch(seed=5)[0], name)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_combined_reward_grpo_equals_verl_grpo_on_the_summed_reward():
    """Components with unit weights through varpo_grpo = verl grpo on token_level_rewards (= their sum)."""
    data, *_ = make_batch(seed=6)
    theirs = ray_trainer.compute_advantage(data, adv_estimator="grpo").batch["advantages"].clone()
    ours = run_verl(make_batch(seed=6)[0], "varpo_grpo", reward_keys=list(KEYS), reward_weights=[1, 1, 1])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_singleton_groups_differ_from_verl_by_design():
    """verl: a group of one gets mean 0 / std 1 (advantage = raw score); varpo: 0 (no signal)."""
    data, *_ = make_batch(seed=7)
    keep = [i for i, u in enumerate(data.non_tensor_batch["uid"]) if u != "c"][:-1]  # drop group c, ...
    one = data.select_idxs(keep + [list(data.non_tensor_batch["uid"]).index("c")])  # ... then re-add one row of it
    theirs = ray_trainer.compute_advantage(one, adv_estimator="grpo").batch["advantages"].clone()
    ours = run_verl(one, "varpo_grpo")
    single = torch.as_tensor(np.asarray(one.non_tensor_batch["uid"]) == "c")
    assert torch.all(ours[single] == 0)
    assert torch.allclose(theirs[single].max(-1).values, one.batch["token_level_rewards"][single].sum(-1))
    torch.testing.assert_close(ours[~single], theirs[~single], rtol=1e-5, atol=1e-6)


def _gdpo_pair(equal_lengths):
    data, *_ = make_batch(seed=8, equal_lengths=equal_lengths)
    cfg = algo_config(reward_keys=list(KEYS), reward_weights=[1.0, 1.0, 1.0])
    cfg.gdpo_reward_keys = list(KEYS)
    theirs = ray_trainer.compute_advantage(data, adv_estimator="gdpo", config=cfg).batch["advantages"].clone()
    ours = ray_trainer.compute_advantage(
        make_batch(seed=8, equal_lengths=equal_lengths)[0], adv_estimator="varpo_gdpo", config=cfg
    ).batch["advantages"]
    return ours, theirs, data


def test_gdpo_differs_from_verl_by_the_exact_bessel_factor_when_lengths_are_equal():
    """Same per-component z-scores and sum; verl whitens over tokens (Bessel over N·L), varpo over samples (N), so
    even at equal lengths verl = varpo × √((NL−1)/(L(N−1))) — a constant factor ≠ 1, they do not coincide."""
    ours, theirs, data = _gdpo_pair(equal_lengths=True)
    n, length = data.batch["response_mask"].shape
    factor = math.sqrt((n * length - 1) / (length * (n - 1)))
    assert factor > 1.03  # N = 14, L = 8: 1.033
    informative = ours.abs() > 1e-3  # the zero-signal group is ~0 in both
    ratio = theirs[informative] / ours[informative]
    # rtol: verl adds 1e-8 inside its rsqrt, varpo 1e-6 to the std (relative effect ~1e-6), float32 outputs
    torch.testing.assert_close(ratio, torch.full_like(ratio, factor), rtol=1e-5, atol=0.0)


def test_gdpo_token_vs_sample_whitening_differs_when_lengths_differ():
    """verl's masked_whiten weighs long responses more and gives zero-signal rows -μ_tok/σ_tok; varpo gives 0."""
    ours, theirs, data = _gdpo_pair(equal_lengths=False)
    zero_signal = torch.as_tensor(np.asarray(data.non_tensor_batch["uid"]) == "d")
    mask = data.batch["response_mask"].bool()
    assert ours[zero_signal].abs().max() < 1e-6  # exactly 0 up to float rounding of the batch mean
    assert theirs[zero_signal][mask[zero_signal]].abs().min() > 1e-3
    ratio = theirs[mask] / ours[mask].where(ours[mask] != 0, torch.ones_like(ours[mask]))
    assert ratio[ours[mask] != 0].std() > 1e-3  # not a constant rescaling


def test_vl_norm_scales_advantages_and_equals_core_vl_norm_aggregation():
    """Official ΔL Norm: A·L^-α/mean L^-α with seq-mean-token-sum-norm == varpo.aggregate_loss(mode="vl_norm")."""
    alpha, m = 0.75, 8
    data, uids, rewards, lengths = make_batch(seed=9)
    mask = data.batch["response_mask"]
    got = run_verl(data, "varpo_grpo", vl_norm_alpha=alpha)
    want = core(rewards.sum(1), uids, "grpo", mask) * varpo.vl_norm_weights(lengths, alpha).unsqueeze(-1)
    torch.testing.assert_close(got, want.to(got.dtype), **F32)

    logp = torch.randn(mask.shape, dtype=torch.float64)
    plain = core(rewards.sum(1), uids, "grpo", mask).to(torch.float64)
    verl_loss = core_algos.agg_loss(
        loss_mat=-got.to(torch.float64) * logp,
        loss_mask=mask,
        loss_agg_mode="seq-mean-token-sum-norm",
        loss_scale_factor=m,
    )
    core_loss = varpo.aggregate_loss(-plain * logp, mask, "vl_norm", max_length=m, alpha=alpha)
    # `got` is float32 (relative rounding <= 2^-24 per element); the sum can cancel, so the bound is absolute:
    # 2^-24 x the sum of the magnitudes of its terms, with a factor 4 of headroom.
    magnitude = core_algos.agg_loss(
        loss_mat=(got.to(torch.float64) * logp).abs(),
        loss_mask=mask,
        loss_agg_mode="seq-mean-token-sum-norm",
        loss_scale_factor=m,
    )
    torch.testing.assert_close(verl_loss, core_loss, rtol=0.0, atol=4 * 2**-24 * float(magnitude))


@pytest.mark.parametrize("name", ["varpo_gdpo", "varpo_saw", "varpo_rvpo"])
def test_padding_rows_are_out_of_every_statistic(name):
    """V1 synthetic padding rows (empty response_mask) get 0 and leave batch statistics unchanged."""
    padded, *_ = make_batch(seed=10, pad_rows=3)
    plain, *_ = make_batch(seed=10)
    options = {"reward_keys": list(KEYS), "vl_norm_alpha": 1.0}
    got = run_verl(padded, name, **options)
    want = run_verl(plain, name, **options)
    assert torch.all(got[-3:] == 0)
    torch.testing.assert_close(got[:-3], want, **F32)


def test_dvao_sigma_ema_state_is_the_trainers_and_persists_across_its_calls():
    """The running σ̄ lives on the trainer (varpo.verl.state): it persists across that trainer's steps, and a call
    with no trainer gets a fresh EMA (plain per-batch σ), never state hidden in a module."""
    trainer = SimpleNamespace(global_steps=1, total_training_steps=10)
    ema = varpo.SigmaEMA(decay=0.8, shrink=0.3)
    for seed in (11, 12):
        data, uids, rewards, _ = make_batch(seed=seed)
        with verl_state.advantage_context(trainer, data.non_tensor_batch):
            got = run_verl(data, "varpo_dvao", reward_keys=list(KEYS), sigma_ema=0.8, sigma_ema_shrink=0.3)
        want = core(rewards, uids, "dvao", data.batch["response_mask"], names=KEYS, sigma_ema=ema)
        torch.testing.assert_close(got, want.to(got.dtype), **F32)
    assert verl_state.of(trainer).sigma_ema[(0.8, 0.3)].state_dict() == ema.state_dict()
    for seed in (11, 12):  # outside any trainer: each call starts a fresh EMA
        data, uids, rewards, _ = make_batch(seed=seed)
        got = run_verl(data, "varpo_dvao", reward_keys=list(KEYS), sigma_ema_decay=0.8, sigma_ema_shrink=0.3)
        fresh = varpo.SigmaEMA(decay=0.8, shrink=0.3)
        want = core(rewards, uids, "dvao", data.batch["response_mask"], names=KEYS, sigma_ema=fresh)
        torch.testing.assert_close(got, want.to(got.dtype), **F32)


def test_missing_component_values_are_missing_not_zero():
    data, uids, rewards, _ = make_batch(seed=13)
    fmt = data.non_tensor_batch["fmt"].astype(object)
    fmt[:3] = None
    data.non_tensor_batch["fmt"] = fmt
    got = run_verl(data, "varpo_dvao", reward_keys=list(KEYS))
    rewards = rewards.copy()
    rewards[:3, 1] = np.nan
    want = core(rewards, uids, "dvao", data.batch["response_mask"], names=KEYS)
    torch.testing.assert_close(got, want.to(got.dtype), **F32)


def test_errors_name_the_fix():
    data, *_ = make_batch(seed=14)
    with pytest.raises(KeyError, match="available keys"):
        run_verl(data, "varpo_dvao", reward_keys=["acc", "nope"])
    fn = core_algos.get_adv_estimator_fn("varpo_dvao")  # called directly: no trainer hook, no components
    with pytest.raises(RuntimeError, match="trainer_mode=varpo"):
        fn(
            token_level_rewards=data.batch["token_level_rewards"],
            response_mask=data.batch["response_mask"],
            index=data.non_tensor_batch["uid"],
            config=algo_config(reward_keys=list(KEYS)),
        )
    with pytest.raises(ValueError, match="uid"):
        fn(token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"])


def test_component_absent_from_the_whole_batch_is_not_logged():
    """verl metrics: statistics of a component missing from every row are left out (never a fake 0); its
    effective weight (0, the no-signal rule) and missing fraction (1) are logged."""
    from varpo.verl.context import advantage_inputs

    data, *_ = make_batch(seed=15)
    data.non_tensor_batch["fmt"] = np.array([None] * len(data), dtype=object)
    with advantage_inputs(data.non_tensor_batch, step=1) as inputs:  # as the V1 trainer mode opens it
        run_verl(data, "varpo_dvao", reward_keys=list(KEYS))
    fmt = KEYS[1]
    assert inputs.stats[f"weight/{fmt}"] == 0.0 and inputs.stats[f"frac_missing/{fmt}"] == 1.0
    assert not {f"reward_mean/{fmt}", f"reward_std/{fmt}", f"group_std_mean/{fmt}"} & set(inputs.stats)
    assert f"reward_mean/{KEYS[0]}" in inputs.stats
    assert all(math.isfinite(v) for v in inputs.stats.values())
