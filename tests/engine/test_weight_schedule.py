"""Reward-weight schedules (varpo.schedules): values at given steps, config errors, the TRL trainer using them as
the base weights of every estimator (incl. dvao/saw, which adapt them), and the same weights after a resume."""

from __future__ import annotations

import math

import pytest
import torch

import varpo
from tests.engine.conftest import vowels
from tests.engine.test_dynamic_sampling import half_flat
from varpo.run.spec import parse_overrides
from varpo.schedules import parse_schedule
from varpo.trl import read_metrics

LINEAR = {"type": "linear", "points": [[0, [0.9, 0.1]], [2, [0.5, 0.5]]]}
COSINE = {"type": "cosine", "points": [[1, [1.0, 0.0]], [5, [0.0, 1.0]], [9, [0.5, 0.5]]]}


def test_values_at_given_steps():
    lin = parse_schedule(LINEAR, 2)
    assert lin.at(0) == pytest.approx([0.9, 0.1])
    assert lin.at(1) == pytest.approx([0.7, 0.3])
    assert lin.at(2) == lin.at(50) == pytest.approx([0.5, 0.5])
    cos = parse_schedule(COSINE)
    assert cos.at(0) == cos.at(1) == [1.0, 0.0]
    c = (1 - math.cos(math.pi / 4)) / 2  # a quarter of the way from step 1 to 5
    assert cos.at(2) == pytest.approx([1 - c, c])
    assert cos.at(3) == pytest.approx([0.5, 0.5])
    assert cos.at(7) == pytest.approx([0.25, 0.75])
    assert cos.at(9) == cos.at(1000) == [0.5, 0.5]
    assert parse_schedule(cos.as_dict()) == cos


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "exp", "points": [[0, [1, 1]]]}, "type"),
        ({"points": []}, "points"),
        ({"points": [[0, [1, -1]]]}, "weights"),
        ({"points": [[0, [0, 0]]]}, "not all 0"),
        ({"points": [[0, [1, 1]], [0, [1, 2]]]}, "strictly increasing"),
        ({"points": [[0, [1, 1]], [3, [1, 2, 3]]]}, "has 3 weights"),
        ({"points": [[1.5, [1, 1]]]}, "integer"),
        ({"points": [[math.inf, [1, 1]]]}, r"points\[0\] step=inf is invalid"),
        ({"points": [[0, [1, 1]], [math.nan, [1, 1]]]}, r"points\[1\] step=nan is invalid"),
        ({"points": [[0, [1e308, 1e308]]]}, "with a finite sum"),
        ({"points": [[0, [1, 1]]], "warmup": 3}, "unknown key"),
        ([1, 2], "mapping"),
    ],
)
def test_bad_schedules_fail_in_one_line(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_schedule(spec)
    assert "\n" not in str(err.value) and "reward_weight_schedule" in str(err.value)


def test_cli_and_config():
    from varpo.trl import VarpoGRPOConfig

    values = parse_overrides(["reward_weight_schedule={type: cosine, points: [[0, [1, 0]], [10, [0, 1]]]}"])
    assert values["reward_weight_schedule"] == {"type": "cosine", "points": [[0, [1, 0]], [10, [0, 1]]]}
    base = dict(output_dir="/tmp/x", use_cpu=True, report_to="none")
    VarpoGRPOConfig(**base, **values)
    with pytest.raises(ValueError, match="reward_weights"):
        VarpoGRPOConfig(**base, **values, reward_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="reward_weight_schedule.type"):
        VarpoGRPOConfig(**base, reward_weight_schedule={"type": "step", "points": [[0, [1]]]})
    with pytest.raises(ValueError, match=r"reward_weights=\[1e\+308, 1e\+308\] is invalid; .*finite sum"):
        VarpoGRPOConfig(**base, reward_weights=[1e308, 1e308])  # passed config and dry-run, failed at step 1


@pytest.mark.parametrize("method", ["dvao", "saw"])
def test_trainer_uses_scheduled_base_weights(make_trainer, method):
    trainer = make_trainer(advantage_method=method, reward_weight_schedule=LINEAR, max_steps=3)
    trainer.train()
    schedule = parse_schedule(LINEAR)
    assert [r["step"] for r in trainer.trace.rollouts] == [0, 1, 2]
    for r in trainer.trace.rollouts:
        torch.testing.assert_close(r["weights"], torch.tensor(schedule.at(r["step"])))
        expected = varpo.compute_advantages(r["rewards"], r["group_ids"], method, weights=r["weights"], **r["options"])
        torch.testing.assert_close(r["advantages"], expected.advantages, rtol=0, atol=0)
    records = [r for r in read_metrics(trainer.args.output_dir) if "loss" in r]
    logged = [r[f"reward_weight/{name}"] for r in records for name in ("length", "vowels")]
    assert logged == pytest.approx([w for s in (0, 1, 2) for w in schedule.at(s)])


def test_schedule_and_dynamic_sampling_after_resume(make_trainer, tmp_path):
    """Resuming at checkpoint-1 gives the same weights and the same filtered (refilled) generation batch at step 1."""
    common = dict(
        reward_funcs=[half_flat, vowels],
        advantage_method="gdpo",
        reward_weight_schedule=COSINE,
        dynamic_sampling=True,
        dynamic_sampling_max_rounds=1,
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
    )
    full = make_trainer(**common)
    full.train()
    resumed = make_trainer(**common, output_dir=str(tmp_path / "resumed"))
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-1"))
    schedule = parse_schedule(COSINE)
    (again,) = resumed.trace.rollouts
    first = full.trace.rollouts[1]
    assert again["step"] == first["step"] == 1
    torch.testing.assert_close(again["weights"], torch.tensor(schedule.at(1)))
    torch.testing.assert_close(again["weights"], first["weights"])
    torch.testing.assert_close(again["rewards"], first["rewards"], equal_nan=True)
    extra = [r["dynamic_sampling/extra_rounds"] for r in read_metrics(full.args.output_dir) if "loss" in r]
    assert extra[1] == 1  # step 1's batch needed a refill round, and the resumed run drew the same prompts
