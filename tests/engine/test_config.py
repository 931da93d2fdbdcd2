"""Configuration errors fail at construction with one line that names the field and the allowed values."""

from __future__ import annotations

import pytest

from varpo.run import spec as spec_mod
from varpo.trl import VarpoGRPOConfig

BASE = dict(output_dir="/tmp/varpo-config-test", use_cpu=True, report_to="none")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"advantage_method": "dvoa"}, "advantage_method"),
        ({"policy_loss": "ppo"}, "policy_loss"),
        ({"loss_aggregation": "mean"}, "loss_aggregation"),
        ({"eps": 0.0}, "eps"),
        ({"ddof": 2}, "ddof"),
        ({"saw_base": "x", "advantage_method": "saw"}, "saw_base"),
        ({"rvpo_variant": "hard", "advantage_method": "rvpo"}, "rvpo_variant"),
        ({"rvpo_k": 0.0, "advantage_method": "rvpo"}, "rvpo_k"),
        ({"rvpo_k": 2.0, "advantage_method": "grpo"}, "rvpo_k"),
        ({"rvpo_k_end": 0.1, "advantage_method": "dvao"}, "rvpo_k_end"),
        ({"sigma_ema": 1.5}, "sigma_ema"),
        ({"sigma_ema": 0.9, "advantage_method": "grpo"}, "sigma_ema"),
        ({"saw_offsets": [3.0, 0.0], "advantage_method": "grpo"}, "saw_offsets"),
        ({"vl_norm_alpha": 2.0, "loss_aggregation": "vl_norm"}, "vl_norm_alpha"),
        ({"vl_norm_alpha": 0.5, "loss_aggregation": "token_mean"}, "vl_norm_alpha"),
        ({"gvpo_beta": 0.5}, "gvpo_beta"),
        ({"clip_ratio_c": 1.0}, "clip_ratio_c"),
        ({"clip_ratio_c": 3.0, "policy_loss": "gvpo"}, "clip_ratio_c"),
        ({"policy_loss": "gvpo", "loss_aggregation": "vl_norm"}, "loss_aggregation"),
        ({"policy_loss": "gvpo", "beta": 0.01}, "beta"),
        (
            {
                "policy_loss": "gvpo",
                "num_generations": 4,
                "per_device_train_batch_size": 6,
                "gradient_accumulation_steps": 2,
            },
            "per_device_train_batch_size",
        ),
        ({"max_response_length": 0}, "max_response_length"),
        ({"reward_weights": [1.0, -1.0]}, "reward_weights"),
        ({"loss_type": "grpo"}, "loss_type"),
        ({"scale_rewards": "batch"}, "scale_rewards"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "multi_objective_aggregation"),
        ({"top_entropy_quantile": 0.2}, "top_entropy_quantile"),
        ({"collapse_window": 0}, "collapse_window"),
        ({"collapse_window": 2.5}, "collapse_window"),
    ],
)
def test_invalid_config_one_line(overrides, field):
    with pytest.raises(ValueError) as err:
        VarpoGRPOConfig(**{**BASE, **overrides})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{field}=")
    assert "allowed:" in message


def test_valid_configs():
    VarpoGRPOConfig(**BASE, advantage_method="rvpo", rvpo_k=2.0, rvpo_k_end=0.5, rvpo_variant="explicit")
    VarpoGRPOConfig(**BASE, advantage_method="saw", saw_base="gdpo", saw_offsets=[3.0, 0.0])
    cfg = VarpoGRPOConfig(**BASE, loss_aggregation="vl_norm", vl_norm_alpha=0.75, max_completion_length=64)
    assert cfg.max_response_length == 64 and cfg.bf16 is False and cfg.logging_steps == 1
    assert VarpoGRPOConfig(**BASE, sigma_ema=True).sigma_ema == 0.9
    VarpoGRPOConfig(**BASE, policy_loss="gvpo", num_generations=4, per_device_train_batch_size=8)


def test_unknown_key_suggests_close_matches():
    with pytest.raises(ValueError, match=r"unknown config key 'advantage_methd'; did you mean: advantage_method\?"):
        spec_mod.parse_overrides(["advantage_methd=dvao"])
    with pytest.raises(ValueError, match="unknown config key 'zzz'$"):
        spec_mod.parse_overrides(["zzz=1"])


def test_override_coercion():
    values = spec_mod.parse_overrides(
        [
            "learning_rate=1e-6",
            "max_steps=10",
            "bf16=false",
            "save_strategy=no",
            "report_to=none",
            "reward_weights=[1, 0.5]",
            "saw_offsets=3,0",
            "eval_temperature=null",
            "task_options={correctness_range: unit}",
            "sigma_ema=0.9",
        ]
    )
    assert values["learning_rate"] == 1e-6 and isinstance(values["max_steps"], int)
    assert values["bf16"] is False and values["save_strategy"] == "no" and values["report_to"] == "none"
    assert values["reward_weights"] == [1.0, 0.5] and values["saw_offsets"] == [3.0, 0.0]
    assert values["eval_temperature"] is None and values["task_options"] == {"correctness_range": "unit"}
    resolved = spec_mod.resolve(values, default_output="runs/x")
    assert resolved.spec.task_options == {"correctness_range": "unit"}
    assert resolved.train["output_dir"] == "runs/x" and "task_options" not in resolved.train


@pytest.mark.parametrize("item", ["max_steps=abc", "num_generations=1.5", "bf16=maybe", "noequals"])
def test_bad_override_values(item):
    with pytest.raises(ValueError) as err:
        spec_mod.parse_overrides([item])
    assert "\n" not in str(err.value) and "invalid" in str(err.value)
