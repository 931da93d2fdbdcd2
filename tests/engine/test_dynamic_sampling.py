"""Dynamic sampling (varpo.trl.dynamic_sampling): the estimator-driven filter, the refill loop and its cap, and
exactness of the loss / gradient on the filtered batch against a batch built by hand from the kept groups."""

from __future__ import annotations

import math

import pytest
import torch

import varpo
from varpo.trl import dynamic_sampling as ds
from varpo.trl import read_metrics

G = 4
# Three components whose (equal-weight) sum is 1 for every sample, while each component varies within the group.
TRADE_OFF = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
ONE_VARIES = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 0.0], [1.0, 0.5, 0.0], [1.0, 0.5, 0.0]])
CONSTANT = torch.tensor([[1.0, 0.5, 0.0]] * G)


def _signal(method: str, rewards: torch.Tensor, weights=None) -> list[bool]:
    return ds.group_signal(rewards, G, method, weights, {}).keep.tolist()


def test_summed_reward_constant_kept_by_per_objective_methods_dropped_by_grpo():
    rewards = torch.cat([TRADE_OFF, ONE_VARIES, CONSTANT])
    assert (rewards[:G].sum(1) == 1).all()  # the summed reward carries no signal in group 0
    assert _signal("grpo", rewards) == [False, True, False]
    assert _signal("dr_grpo", rewards) == [False, True, False]
    # dvao's numerator is the deviation of the weighted sum (eq. 9), so it sees no signal either
    assert _signal("dvao", rewards) == [False, True, False]
    for method in ("gdpo", "ac", "rvpo", "saw"):
        assert _signal(method, rewards) == [True, True, False], method
    # A component with weight 0 cannot keep a group for a weighted method.
    only_first = torch.cat([ONE_VARIES[:, [1, 0]], ONE_VARIES[:, [0, 1]]])  # component 1 varies in group 0 only
    assert _signal("gdpo", only_first, weights=[1.0, 0.0]) == [False, True]
    zero_std = ds.group_signal(torch.cat([TRADE_OFF, ONE_VARIES, CONSTANT]), G, "gdpo", None, {}).zero_std
    assert zero_std.tolist() == [[False, False, False], [False, True, True], [True, True, True]]


def test_missing_values_and_numerics():
    rewards = torch.tensor([[1.0, float("nan")], [1.0, 2.0], [1.0, float("nan")], [1.0, float("nan")]])
    assert ds.zero_std_components(rewards, G).tolist() == [[True, True]]  # one valid value: no variance
    assert _signal("gdpo", rewards) == [False]
    tiny = torch.full((G, 1), 0.1) * 3  # rounding in the group mean must not create signal
    assert _signal("grpo", tiny) == [False]


def _alone_and_in_batch(method, rewards, g):
    """Advantages of group ``g`` computed on the group alone and inside the whole round."""
    ids = torch.arange(rewards.shape[0] // G).repeat_interleave(G)
    alone = varpo.compute_advantages(rewards[g * G : (g + 1) * G], torch.zeros(G, dtype=torch.long), method)
    batch = varpo.compute_advantages(rewards, ids, method).advantages[g * G : (g + 1) * G]
    return alone.advantages, batch


@pytest.mark.parametrize("method", ["saw", "rvpo"])
def test_coupled_estimators_decide_with_the_batch_level_advantages(method):
    """A K=2 trade-off group gets advantage 0 alone but not in its batch (saw's CV weights, rvpo's whitening are
    batch-level): it is trained on, so it is kept. The per-group run used to drop it."""
    trade = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    other = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.5]])
    rewards = torch.cat([trade, other])
    alone, batch = _alone_and_in_batch(method, rewards, 0)
    assert alone.abs().max() == 0 and batch.abs().max() > 0.1
    assert _signal(method, rewards) == [True, True]


def test_keep_any_group_dapo_keeps_and_drop_constant_groups_for_every_estimator():
    """DAPO keeps any group with std > 0: a dr_grpo spread of 1e-7 (|A| = 5e-8) is kept. A group whose every
    component is constant is dropped even under rvpo, where batch whitening gives it a constant shift."""
    spread = torch.tensor([[0.0], [1e-7], [0.0], [1e-7]])
    assert _signal("dr_grpo", torch.cat([spread, spread + torch.tensor([[0.0], [1.0], [0.0], [1.0]])])) == [True] * 2
    rewards = torch.cat([TRADE_OFF, ONE_VARIES, CONSTANT])
    _, shifted = _alone_and_in_batch("rvpo", rewards, 2)
    assert shifted.abs().min() > 0.1  # trained with a shift, but no information about the group's completions
    assert _signal("rvpo", rewards) == [True, True, False]


def test_per_round_metrics_keep_only_the_trained_rounds():
    metrics = {"reward": [0.1, 0.5, 0.6, 0.7], "completions/mean_length": [3.0, 4.0, 5.0], "num_tokens": [99]}
    metrics = {k: list(v) for k, v in metrics.items()}
    before = {"reward": 1, "completions/mean_length": 0, "num_tokens": 1}
    ds.keep_round_metrics(metrics, before, n_rounds=3, used_rounds=[0, 2])
    assert metrics == {"reward": [0.1, 0.5, 0.7], "completions/mean_length": [3.0, 5.0], "num_tokens": [99]}
    ds.keep_round_metrics(metrics, {"reward": 3}, n_rounds=0, used_rounds=[])
    fresh = {"completions/mean_length": [1.0, 2.0]}
    ds.keep_round_metrics(fresh, {}, n_rounds=2, used_rounds=[])  # nothing trained: no value, no key (not null)
    assert fresh == {}


def test_a_step_that_trains_on_nothing_warns_and_logs_no_nulls(make_trainer, caplog):
    trainer = make_trainer(
        reward_funcs=[flat, flat],
        advantage_method="gdpo",
        max_steps=1,
        dynamic_sampling=True,
        dynamic_sampling_max_rounds=1,
        dynamic_sampling_on_cap="train_on_kept",
    )
    with caplog.at_level("WARNING", logger="varpo.trl.dynamic_sampling"):
        trainer.train()
    warned = [r.getMessage() for r in caplog.records if "trains on nothing" in r.getMessage()]
    assert len(warned) == 1 and "step 0" in warned[0] and "2 round(s)" in warned[0]
    (record,) = [r for r in read_metrics(trainer.args.output_dir) if "loss" in r]
    assert record["dynamic_sampling/groups_kept"] == 0
    assert "dynamic_sampling/generated_tokens_per_kept_sample" not in record
    assert not [k for k, v in record.items() if v is None]
    assert not [k for k in record if k.startswith("completions/") or k in ("reward", "frac_reward_zero_std")]


def _fake_generate(flags_per_round: list[list[bool]], calls: list):
    """generate(rows) whose rounds have the given per-group signal (component 0 varies iff flag)."""

    def generate(rows):
        flags = flags_per_round[len(calls)]
        calls.append(rows)
        r = torch.zeros(len(flags) * G, 2)
        for g, f in enumerate(flags):
            if f:
                r[g * G, 0] = 1.0
        batch = {"advantages": torch.zeros(len(r)), "completion_mask": torch.ones(len(r), 3)}
        return batch, r

    return generate


def _fill(flags, max_rounds, on_cap):
    calls = []
    out = ds.fill_batch(
        _fake_generate(flags, calls),
        list(range(len(flags[0]) * G)),
        lambda r: [f"refill{r}"] * (len(flags[0]) * G),
        lambda rewards: ds.group_signal(rewards, G, "grpo", None, {}),
        group_size=G,
        max_rounds=max_rounds,
        on_cap=on_cap,
    )
    return (*out, calls)


def test_refill_stops_when_full_and_at_cap():
    # Full after one extra round: stop there, keep the first P kept groups in order.
    rounds, kept, padded, extra, calls = _fill(
        [[True, False, False], [False, True, True], [True] * 3], 5, "train_on_kept"
    )
    assert extra == 1 and len(calls) == 2 and kept == [(0, 0), (1, 1), (1, 2)] and padded == []
    # Never enough signal: exactly max_rounds extra rounds, then stop.
    for cap in (0, 2):
        rounds, kept, padded, extra, calls = _fill([[False, True, False]] * 10, cap, "train_on_kept")
        assert extra == cap and len(calls) == cap + 1 and len(kept) == cap + 1 and padded == []
    # pad_with_filtered fills to P with filtered groups, most recent first.
    rounds, kept, padded, extra, calls = _fill([[False, True, False]] * 10, 1, "pad_with_filtered")
    assert kept == [(0, 1), (1, 1)] and padded == [(1, 2)]
    batch, rewards = ds.assemble(rounds, kept + padded, G, pad_token_id=0)
    assert rewards.shape == (3 * G, 2) and batch["completion_mask"].shape == (3 * G, 3)


def test_refill_indices_are_a_function_of_step_and_round():
    a = ds.refill_indices(100, 8, seed=0, step=5, round_=1)
    assert a == ds.refill_indices(100, 8, seed=0, step=5, round_=1)  # a resumed run redraws the same prompts
    assert a != ds.refill_indices(100, 8, seed=0, step=6, round_=1)
    assert len(set(a)) == 8 and all(0 <= i < 100 for i in a)
    assert len(ds.refill_indices(3, 8, seed=0, step=0, round_=1)) == 8  # small dataset: with replacement


def test_concat_batches_repads_left_and_right():
    a = {"prompt_ids": torch.tensor([[7, 8]]), "completion_ids": torch.tensor([[1, 2, 3]]), "x": torch.tensor(5.0)}
    b = {"prompt_ids": torch.tensor([[9, 9, 9]]), "completion_ids": torch.tensor([[4]]), "x": torch.tensor(1.0)}
    out = ds.concat_batches([a, b], pad_token_id=0)
    assert out["prompt_ids"].tolist() == [[0, 7, 8], [9, 9, 9]]
    assert out["completion_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert "x" not in out


def half_flat(prompts, completions, **kwargs):
    """Constant (no signal) for about half of the prompts, the completion length for the others."""
    return [0.5 if len(p) % 2 else min(len(c), 40) / 40 for p, c in zip(prompts, completions, strict=True)]


def flat(completions, **kwargs):
    return [1.0] * len(completions)


@pytest.mark.parametrize(
    "method,loss,on_cap",
    [
        ("gdpo", "ppo_clip", "train_on_kept"),
        ("dvao", "gvpo", "pad_with_filtered"),
        ("rvpo", "ppo_clip", "pad_with_filtered"),
    ],
)
def test_training_with_dynamic_sampling(make_trainer, method, loss, on_cap):
    trainer = make_trainer(
        reward_funcs=[half_flat, flat],
        advantage_method=method,
        policy_loss=loss,
        dynamic_sampling=True,
        dynamic_sampling_max_rounds=2,
        dynamic_sampling_on_cap=on_cap,
        gradient_accumulation_steps=2,
        per_device_train_batch_size=8,
        **({"sigma_ema": 0.9} if method == "dvao" else {}),
    )
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    records = [r for r in read_metrics(trainer.args.output_dir) if "loss" in r]

    assert len(records) == 2
    for r in records:
        generated = r["dynamic_sampling/groups_generated"]
        assert r["dynamic_sampling/groups_filtered"] + r["dynamic_sampling/groups_kept"] <= generated
        assert r["dynamic_sampling/extra_rounds"] <= 2
        assert r["dynamic_sampling/frac_zero_std/flat"] == 1.0  # the flat component never varies
        assert r["dynamic_sampling/generated_tokens"] > 0
    for rollout in trainer.trace.rollouts:  # every trained group carries signal (or pads the batch)
        varies = ~ds.zero_std_components(rollout["rewards"], G)[:, 0]  # half_flat is the only varying component
        if on_cap == "train_on_kept":
            assert varies.all()
        assert rollout["rewards"].shape[0] == 16 or on_cap == "train_on_kept"


def _hand_loss(trainer, model, batch, rewards, method):
    """One micro-batch holding exactly the kept groups: fresh advantages, no global normalizer."""
    adv = varpo.compute_advantages(rewards, torch.arange(len(rewards)) // G, method, weights=trainer.reward_weights)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, attn, batch["completion_ids"].size(1))
    mask = batch["completion_mask"]
    matrix, _ = varpo.policy_loss(
        "ppo_clip", logprobs=logps, old_logprobs=logps.detach(), advantages=adv.advantages, mask=mask
    )
    return varpo.aggregate_loss(
        matrix, mask, trainer.args.loss_aggregation, max_length=trainer.args.max_response_length
    )


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean"])
def test_filtered_step_equals_hand_built_batch(make_trainer, train_ds, aggregation):
    """Sum of the micro-batch losses / gradients the trainer runs on the filtered batch (including zero-weight
    padding micro-batches when fewer groups than micro-batches are kept) == one loss on the kept groups alone."""
    trainer = make_trainer(
        reward_funcs=[half_flat, flat],
        advantage_method="gdpo",
        loss_aggregation=aggregation,
        dynamic_sampling=True,
        dynamic_sampling_max_rounds=1,
        gradient_accumulation_steps=4,
        per_device_train_batch_size=4,
    )
    model = trainer.model
    model.train()
    rows = [train_ds[i] for i in range(4) for _ in range(G)]
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(rows)  # training + dynamic_sampling: the filter loop
    weight = batch[ds.WEIGHT_KEY]
    real = weight > 0
    kept = int(real.sum()) // G

    assert 0 < kept <= 4
    chunks = trainer._split_dynamic(batch)
    assert len(chunks) == 4
    if kept < 4:  # a zero-weight padding micro-batch exists
        assert any(not bool(c[ds.WEIGHT_KEY].any()) for c in chunks)
    rewards = trainer.trace.rollouts[-1]["rewards"]
    assert ds.group_signal(rewards, G, "gdpo", trainer.reward_weights, {}).keep.all()

    trainer.current_gradient_accumulation_steps = 4
    model.zero_grad()
    total = sum(trainer._compute_loss(model, c) for c in chunks)
    total.backward()
    split_grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    model.zero_grad()
    hand = _hand_loss(trainer, model, ds.select_rows(batch, real.nonzero().flatten()), rewards, "gdpo")
    hand.backward()
    hand_grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    torch.testing.assert_close(total.detach(), hand.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(split_grad, hand_grad, rtol=1e-4, atol=1e-7)
    assert hand_grad.abs().sum() > 0


def test_config_rejects_bad_values():
    from varpo.trl import VarpoGRPOConfig

    base = dict(output_dir="/tmp/x", use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="dynamic_sampling_on_cap"):
        VarpoGRPOConfig(**base, dynamic_sampling=True, dynamic_sampling_on_cap="drop")
    with pytest.raises(ValueError, match="dynamic_sampling_max_rounds"):
        VarpoGRPOConfig(**base, dynamic_sampling=True, dynamic_sampling_max_rounds=-1)


def test_k32_objectives_end_to_end_in_the_engine(make_trainer):
    """K = 32 reward components (constraints task, 32 word rules): one step with a weight schedule and dynamic
    sampling; every per-component metric is logged and the advantages equal the core's."""
    import varpo.tasks

    task = varpo.tasks.get_task("constraints", k=32, length_budget=None)
    assert len(task.reward_names) == 32
    dataset = task.generate(16, seed=1).remove_columns(["completion"])
    weights = [[0, [1.0] * 32], [4, [float(i + 1) for i in range(32)]]]
    trainer = make_trainer(
        reward_funcs=task.reward_funcs,
        dataset=dataset,
        advantage_method="gdpo",
        max_steps=1,
        dynamic_sampling=True,
        dynamic_sampling_max_rounds=1,
        dynamic_sampling_on_cap="pad_with_filtered",
        reward_weight_schedule={"type": "linear", "points": weights},
    )
    trainer.train()
    (record,) = [r for r in read_metrics(trainer.args.output_dir) if "loss" in r]
    for name in task.reward_names:
        for key in ("reward_weight/", "adv/weight/", "dynamic_sampling/frac_zero_std/", "reward/"):
            assert any(k.startswith(key + name) for k in record), key + name
    (rollout,) = trainer.trace.rollouts
    assert rollout["rewards"].shape == (trainer.args.generation_batch_size, 32)  # pad_with_filtered: full batch
    expected = varpo.compute_advantages(
        rollout["rewards"], rollout["group_ids"], "gdpo", weights=rollout["weights"], **rollout["options"]
    )
    torch.testing.assert_close(rollout["advantages"], expected.advantages, rtol=0, atol=0)


def test_dynamic_sampling_is_trainer_side():
    """The loop runs from the trainer's own _generate_and_score_completions; the module never calls TRL's method
    unbound nor touches a trainer's private members."""
    import inspect

    source = inspect.getsource(ds).replace("trl.trainer.utils", "")
    assert (
        " GRPOTrainer._" not in source
        and "import GRPOTrainer" not in source
        and "trainer." not in source
        and "(trainer" not in source
    )
    from varpo.trl.trainer import VarpoGRPOTrainer

    assert inspect.getsource(VarpoGRPOTrainer).count("self.sync_reward_weights()") == 1
