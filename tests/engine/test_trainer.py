"""Few-step VarpoGRPOTrainer runs on a tiny model: every advantage method, both policy losses, every aggregation.

Each run checks that parameters moved, the loss is finite, the advantages the trainer used are exactly
``varpo.compute_advantages`` of the rewards it recorded, and the loss saw exactly those advantages.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import varpo
from tests.engine.conftest import length
from varpo.trl import read_metrics
from varpo.trl.trainer import STATE_FILE


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _check_run(trainer, method: str) -> None:
    before = _params(trainer.model)
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    after = _params(trainer.model)
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    assert len(moved) == len(before), f"parameters that did not change: {set(before) - set(moved)}"

    rollouts = trainer.trace.rollouts
    assert len(rollouts) == trainer.args.max_steps
    for r in rollouts:
        options = dict(r["options"])
        if r["sigma_ema_state"] is not None:
            options["sigma_ema"] = varpo.SigmaEMA()
            options["sigma_ema"].load_state_dict(r["sigma_ema_state"])
        expected = varpo.compute_advantages(r["rewards"], r["group_ids"], method, weights=r["weights"], **options)
        torch.testing.assert_close(r["advantages"], expected.advantages, rtol=0, atol=0)
        assert r["advantages"].abs().sum() > 0
    # The loss received exactly the rollout advantages (shuffled and split into micro-batches).
    used = torch.cat(trainer.trace.loss_advantages)
    produced = torch.cat([r["advantages"] for r in rollouts])
    torch.testing.assert_close(used.sort().values, produced.sort().values, rtol=0, atol=0)

    records = read_metrics(trainer.args.output_dir)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, trainer.args.max_steps + 1))
    for key in ("adv/adv_abs_mean", "adv/weight/length", "reward/length/mean", "reward/vowels/std", "entropy"):
        assert key in steps[0], key


@pytest.mark.parametrize("method", varpo.METHODS)
def test_every_advantage_method(make_trainer, method):
    options = {"saw": {"saw_offsets": [0.0, 1.0]}, "rvpo": {"rvpo_k": 2.0, "rvpo_k_end": 0.5}}.get(method, {})
    trainer = make_trainer(advantage_method=method, **options)
    _check_run(trainer, method)
    if method == "rvpo":
        ks = [r["rvpo_k"] for r in read_metrics(trainer.args.output_dir) if "rvpo_k" in r]
        assert ks == [2.0, 0.5]  # linear anneal over max_steps


@pytest.mark.parametrize("aggregation", varpo.AGGREGATIONS)
def test_every_aggregation(make_trainer, aggregation):
    extra = {"vl_norm_alpha": 0.75} if aggregation == "vl_norm" else {}
    trainer = make_trainer(advantage_method="dvao", loss_aggregation=aggregation, **extra)
    _check_run(trainer, "dvao")


@pytest.mark.parametrize("method", ["dr_grpo", "dvao"])
def test_gvpo_whole_groups(make_trainer, method):
    """gvpo with 2 micro-batches per generation: each holds whole groups (the loss asserts it)."""
    trainer = make_trainer(
        advantage_method=method, policy_loss="gvpo", gradient_accumulation_steps=2, per_device_train_batch_size=8
    )
    _check_run(trainer, method)
    for batch in trainer.trace.loss_advantages:
        assert batch.numel() == 8


def test_sigma_ema_state_is_kept(make_trainer):
    trainer = make_trainer(advantage_method="dvao", sigma_ema=0.9)
    _check_run(trainer, "dvao")
    assert trainer.sigma_ema.value is not None


def _sigma_ema_after(state: dict, rollout: dict) -> dict:
    """The running σ state after folding ``rollout``'s rewards into ``state`` (the trainer's own update)."""
    ema = varpo.SigmaEMA()
    ema.load_state_dict(state)
    varpo.compute_advantages(
        rollout["rewards"],
        rollout["group_ids"],
        "dvao",
        weights=rollout["weights"],
        sigma_ema=ema,
        **rollout["options"],
    )
    return ema.state_dict()


def test_sigma_ema_is_restored_on_resume(make_trainer, tmp_path):
    """dvao's running σ is training state: checkpoint-1 holds the state going into step 1, and a run resumed from it
    starts step 1 from exactly that state (a fresh one would start from nothing) and ends where the full run ends."""
    common = dict(advantage_method="dvao", sigma_ema=0.9, max_steps=2, save_strategy="steps", save_steps=1)
    full = make_trainer(**common)
    full.train()
    saved = json.loads((tmp_path / "run" / "checkpoint-1" / STATE_FILE).read_text())["sigma_ema"]
    assert saved["value"] is not None and saved == full.trace.rollouts[1]["sigma_ema_state"]

    resumed = make_trainer(**common, output_dir=str(tmp_path / "resumed"))
    assert resumed.sigma_ema.state_dict() != saved  # what a resume without the restore would start step 1 from
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-1"))
    (again,) = resumed.trace.rollouts
    assert again["step"] == 1 and again["sigma_ema_state"] == saved
    torch.testing.assert_close(again["rewards"], full.trace.rollouts[1]["rewards"], equal_nan=True)
    torch.testing.assert_close(again["advantages"], full.trace.rollouts[1]["advantages"], rtol=0, atol=0)
    assert resumed.sigma_ema.state_dict() == full.sigma_ema.state_dict()


def test_evaluation_leaves_sigma_ema_unchanged_and_logs_eval_metrics(make_trainer, train_ds):
    """Evaluation after every step generates and scores eval groups but must not move the running σ: each training
    step starts from the state the previous training step left, and the run ends in the last step's state."""
    trainer = make_trainer(
        advantage_method="dvao",
        sigma_ema=0.9,
        max_steps=2,
        eval_dataset=train_ds.select(range(4)),
        eval_strategy="steps",
        eval_steps=1,
        per_device_eval_batch_size=8,
    )
    trainer.train()
    rollouts = trainer.trace.rollouts
    assert len(rollouts) == 2 and rollouts[0]["sigma_ema_state"]["value"] is None
    after_first = _sigma_ema_after(rollouts[0]["sigma_ema_state"], rollouts[0])
    assert rollouts[1]["sigma_ema_state"] == after_first  # the evaluation after step 1 did not move it
    assert trainer.sigma_ema.state_dict() == _sigma_ema_after(after_first, rollouts[1])  # nor the one after step 2
    evals = [r for r in read_metrics(trainer.args.output_dir) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [1, 2]
    for key in ("eval_loss", "eval_reward/length/mean", "eval_reward/vowels/mean", "eval_adv/adv_abs_mean"):
        assert all(math.isfinite(r[key]) for r in evals), key


def test_gradient_accumulation_is_exact(make_trainer, train_ds):
    """One generation batch: the gradient summed over 2 micro-batches equals the full-batch gradient."""
    for aggregation in varpo.AGGREGATIONS:
        trainer = make_trainer(
            advantage_method="dvao",
            loss_aggregation=aggregation,
            gradient_accumulation_steps=2,
            per_device_train_batch_size=8,
        )
        model = trainer.model
        rows = [train_ds[i] for i in range(4) for _ in range(4)]  # 4 prompts x G=4, RepeatSampler layout
        model.train()
        batch = trainer._generate_and_score_completions(rows)

        def grads(chunks, accumulation, trainer=trainer, model=model):
            trainer.current_gradient_accumulation_steps = accumulation
            trainer.args.steps_per_generation = accumulation
            model.zero_grad()
            for chunk in chunks:
                trainer._compute_loss(model, chunk).backward()
            return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

        halves = [
            {k: (v[i * 8 : (i + 1) * 8] if torch.is_tensor(v) and v.dim() else v) for k, v in batch.items()}
            for i in range(2)
        ]
        split = grads(halves, 2)
        full = grads([batch], 1)
        torch.testing.assert_close(split, full, rtol=1e-4, atol=1e-6, msg=aggregation)


def test_builtin_tiny_model_string_works_in_python(train_ds, tmp_path):
    """The CLI's model string in Python: ``VarpoGRPOTrainer("builtin:tiny", …)`` builds the tiny model from the
    training prompts and uses its tokenizer."""
    from varpo.trl import VarpoGRPOConfig, VarpoGRPOTrainer

    args = VarpoGRPOConfig(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=4,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = VarpoGRPOTrainer("builtin:tiny", reward_funcs=[length], args=args, train_dataset=train_ds)
    assert trainer.model.config.model_type == "qwen2" and trainer.processing_class.pad_token == "<|pad|>"
    with pytest.raises(ValueError, match="builds its tokenizer from train_dataset's prompts"):
        VarpoGRPOTrainer("builtin:tiny", reward_funcs=[length], args=args)


def test_tied_lm_head_missing_from_a_checkpoint_is_not_warned_about(make_trainer, caplog):
    """Resuming builtin:tiny (tied embeddings) loads a checkpoint without lm_head.weight: re-tied, no
    "missing keys" warning; any other missing key is still reported."""
    import logging

    from torch.nn.modules.module import _IncompatibleKeys

    trainer = make_trainer()
    assert trainer.model.config.tie_word_embeddings
    with caplog.at_level(logging.WARNING):
        trainer._issue_warnings_after_load(_IncompatibleKeys(["lm_head.weight"], []))
    assert "missing keys" not in caplog.text
    with caplog.at_level(logging.WARNING):
        trainer._issue_warnings_after_load(_IncompatibleKeys(["model.norm.weight"], []))
    assert "missing keys in the checkpoint model loaded: ['model.norm.weight']" in caplog.text


def constant(completions, **kwargs):
    """An objective with no within-group variance: collapsed from the first step."""
    return [1.0 for _ in completions]


def test_frac_signal_logged_and_collapse_alarm_warns_once(make_trainer, caplog):
    import logging

    trainer = make_trainer(reward_funcs=[length, constant], max_steps=3, collapse_window=2, advantage_method="grpo")
    with caplog.at_level(logging.WARNING, logger="varpo"):
        trainer.train()
    steps = [r for r in read_metrics(trainer.args.output_dir) if "loss" in r]
    assert [r["adv/frac_signal/constant"] for r in steps] == [0.0, 0.0, 0.0]
    assert all(0.0 < r["adv/frac_signal/length"] <= 1.0 for r in steps)
    lines = [r.getMessage() for r in caplog.records if "objective collapse" in r.getMessage()]
    assert len(lines) == 1, lines  # window 2 reached at the second batch; not repeated at the third
    assert "'constant'" in lines[0] and "adv/frac_signal/constant = 0" in lines[0] and "\n" not in lines[0]
    assert trainer.collapse_alarm.collapsed() == ["constant"]
