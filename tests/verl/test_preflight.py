"""verl pre-flight (``python -m varpo.verl.train [--dry-run]``, before Ray or any model load): reward keys against
the task's components, local data and model paths, batch-size arithmetic — one line per problem, naming fields.
docs/verl.md's complete verl command passes it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

import varpo.verl.plugin  # noqa: F401
from tests.verl.test_config import local_files
from varpo.verl.train import compose_config, main, validate

ROOT = Path(__file__).parents[2]
TOOLRL = [
    "algorithm.adv_estimator=varpo_dvao",
    "trainer.v1.trainer_mode=varpo",
    "+algorithm.varpo.reward_keys=[correctness,format]",
    "reward.custom_reward_function.path=pkg://varpo.verl.rewards",
    "reward.custom_reward_function.name=compute_score",
    "+reward.custom_reward_function.reward_kwargs.task=toolcall",
    "data.train_batch_size=16",
    "actor_rollout_ref.rollout.n=4",
    "actor_rollout_ref.actor.ppo_mini_batch_size=8",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
    "trainer.n_gpus_per_node=8",
]


@pytest.fixture()
def files(tmp_path):
    env = local_files(tmp_path)
    return [
        f"data.train_files={env['DATA_DIR']}/train.parquet",
        f"data.val_files={env['DATA_DIR']}/test.parquet",
        f"actor_rollout_ref.model.path={env['MODEL']}",
    ]


def problems(capsys, *overrides) -> list[str]:
    assert main(["--dry-run", *overrides]) == 2
    err = capsys.readouterr().err
    return [line[2:] for line in err.splitlines() if line.startswith("- ")]


def test_good_config_passes(files, capsys):
    assert main(["--dry-run", *TOOLRL, *files]) == 0
    assert "config OK" in capsys.readouterr().out


def test_reward_key_typo_is_caught_before_launch(files, capsys):
    bad = [o.replace("[correctness,format]", "[correctnes,format]") for o in TOOLRL]
    (line,) = problems(capsys, *bad, *files)
    assert line == (
        "algorithm.varpo.reward_keys: 'correctnes' is not a component of task 'toolcall' (did you mean "
        "'correctness'?); its components: ['correctness', 'format']"
    )


def test_missing_data_and_model_are_caught(files, capsys, tmp_path):
    lines = problems(
        capsys,
        *TOOLRL,
        f"data.train_files={tmp_path}/nope.parquet",
        f"data.val_files={tmp_path}/data/test.parquet",
        f"actor_rollout_ref.model.path={tmp_path}/no-model",
    )
    assert lines == [
        f"data.train_files: {tmp_path}/nope.parquet does not exist",
        f"actor_rollout_ref.model.path: {tmp_path}/no-model is not a local model directory (and not a hub id "
        "'org/name')",
    ]


def test_hub_model_offline_uncached_is_skipped_in_a_dry_run_and_refused_for_a_launch(files, capsys, monkeypatch):
    """As ``varpo train --dry-run``: a hub model not in the local cache offline is skipped (and said so) by a dry
    run; a real launch is refused (its workers could not load it)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = [*TOOLRL, *files[:2], "actor_rollout_ref.model.path=nobody/not-a-model"]
    assert main(["--dry-run", *hub]) == 0
    out = capsys.readouterr().out
    assert "skipped: model nobody/not-a-model: not in the local Hugging Face cache (HF_HUB_OFFLINE=1)" in out
    with pytest.raises(ValueError, match="hub model 'nobody/not-a-model' is not in the local Hugging Face cache"):
        validate(compose_config(hub))


def test_dry_run_prints_what_it_checked(files, capsys):
    assert main(["--dry-run", *TOOLRL, *files]) == 0
    out = capsys.readouterr().out
    assert "checked: training data: 1024 rows in 1 file(s)" in out
    assert "checked: reward function compute_score from pkg://varpo.verl.rewards: scored the first training row" in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "reward.custom_reward_function.path=pkg://varpo.verl.rewardz",
            "reward.custom_reward_function (path=pkg://varpo.verl.rewardz, name=compute_score) cannot be loaded: ",
        ),
        (
            "reward.custom_reward_function.name=compute_scor",
            "reward.custom_reward_function (path=pkg://varpo.verl.rewards, name=compute_scor) cannot be loaded: ",
        ),
        (
            "reward.custom_reward_function.path=/nonexistent/reward.py",
            "reward.custom_reward_function (path=/nonexistent/reward.py, name=compute_score) cannot be loaded: ",
        ),
        (
            "data.train_batch_size=2048",
            "data.train_batch_size (2048) is larger than the training data (1024 rows in data.train_files)",
        ),
        (
            "actor_rollout_ref.rollout.n=1",
            "actor_rollout_ref.rollout.n=1: algorithm.adv_estimator=varpo_dvao compares the responses of a prompt",
        ),
    ],
)
def test_reward_function_data_size_and_group_mistakes_are_caught(files, capsys, override, message):
    base = [o for o in TOOLRL if o.split("=")[0].lstrip("+") != override.split("=")[0].lstrip("+")]
    lines = problems(capsys, *base, override, *files)
    assert any(line.startswith(message) or message in line for line in lines), lines


def test_varpo_reward_without_task_on_unknown_data_source_is_refused(files, capsys, tmp_path):
    """No reward_kwargs.task and a data_source that names no task: the pre-flight asks for the task (the reward
    workers would otherwise fail on the first batch)."""
    import varpo.tasks

    task = varpo.tasks.get_task("math")
    path = tmp_path / "mine.parquet"
    task.to_verl(task.generate(64, seed=0), data_source="my_lab/word_problems").to_parquet(str(path))
    base = [o for o in TOOLRL if "reward_kwargs.task" not in o and "reward_keys" not in o]
    (line,) = problems(capsys, *base, f"data.train_files={path}", *files[1:])
    assert "data_source 'my_lab/word_problems' names no varpo task; set +reward.custom_reward_function" in line
    # public GSM8K-style sources and varpo's own to_verl output need no task
    task.to_verl(task.generate(64, seed=0), data_source="openai/gsm8k").to_parquet(str(path))
    assert (
        main(
            [
                "--dry-run",
                *base,
                "+algorithm.varpo.reward_keys=[accuracy,length]",
                f"data.train_files={path}",
                *files[1:],
            ]
        )
        == 0
    )


def test_hydra_mistakes_are_one_line(files, capsys):
    assert main(["--dry-run", *TOOLRL, *files, "algorithm.adv_estimatr=grpo"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: hydra: Could not override 'algorithm.adv_estimatr'.")
    assert main(["--dry-run", *TOOLRL, *files, "+algorithm.varpo.reward_keys=["]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: hydra: no viable alternative at input '['")


def test_batch_arithmetic_one_line_each(files, capsys):
    drop = ("ppo_micro_batch_size_per_gpu", "log_prob_micro_batch_size_per_gpu", "train_batch_size")
    base = [o for o in TOOLRL if not any(d in o for d in drop)]
    lines = problems(capsys, *base, *files, "data.train_batch_size=6", "actor_rollout_ref.rollout.n=3")
    assert lines == [
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu is unset: set it (sequences per GPU per forward pass) "
        "or actor_rollout_ref.actor.use_dynamic_bsz=true",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu is unset: set it or "
        "actor_rollout_ref.actor.use_dynamic_bsz=true",
        "data.train_batch_size (6) x actor_rollout_ref.rollout.n (3) = 18 sequences must be divisible by "
        "trainer.n_gpus_per_node x trainer.nnodes (8)",
        "actor_rollout_ref.actor.ppo_mini_batch_size (8) must be <= data.train_batch_size (6)",
    ]
    lines = problems(capsys, *TOOLRL, *files, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3")
    assert lines == [
        "actor_rollout_ref.actor.ppo_mini_batch_size (8) x rollout.n (4) / 8 GPUs = 4 sequences per GPU must be a "
        "multiple of actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu (3)"
    ]


def test_verl_own_validation_errors_are_one_line(files):
    cfg = compose_config([*TOOLRL, *files, "actor_rollout_ref.actor.loss_agg_mode=nonsense"])
    with pytest.raises(Exception, match=r"^verl's validate_config: Invalid loss_agg_mode: nonsense$"):
        validate(cfg)


def test_docs_verl_command_is_complete_and_passes(tmp_path, capsys):
    """docs/verl.md's complete command as bash runs it (variables, quoting, continuation lines): the ``python -m
    varpo.verl.train`` it starts is captured by a ``python`` shim and run here, in this process, through the same
    ``main`` (a fresh interpreter would only add verl's import time). The recipe line after it is covered by
    tests/verl/test_config.py (every example script composes and validates)."""
    text = (ROOT / "docs" / "verl.md").read_text()
    block = re.search(
        r"\n(DATA_DIR=.*?python -m varpo\.verl\.train --dry-run.*?# drop --dry-run to train)\n", text, re.S
    )
    assert block, "docs/verl.md's complete verl command block not found"
    shims, calls = tmp_path / "shims", tmp_path / "calls"
    shims.mkdir()
    calls.mkdir()
    (shims / "python").write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$(mktemp "$CALLS/call.XXXXXX")"\n')
    (shims / "python").chmod(0o755)
    env = {
        **os.environ,
        **local_files(tmp_path),
        "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": str(shims / "python"),
        "CALLS": str(calls),
    }
    proc = subprocess.run(["bash", "-euc", block.group(1)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [f.read_text().split("\0")[:-1] for f in calls.iterdir()]
    assert len(runs) == 1
    for args in runs:
        assert args[:2] == ["-m", "varpo.verl.train"] and "--dry-run" in args, args
        assert main(args[2:]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "config OK (adv_estimator=varpo_dvao" in out


def test_reward_keys_checked_against_the_task_as_its_options_build_it(files, capsys):
    """judge's components depend on task_options (max_words adds 'length'): the keys are checked against them."""
    judge = [o for o in TOOLRL if "reward_keys" not in o and "reward_kwargs.task=" not in o]
    judge += [
        "+reward.custom_reward_function.reward_kwargs.task=judge",
        "+algorithm.varpo.reward_keys=[quality,length]",
    ]
    (line,) = problems(capsys, *judge, *files)
    assert line.startswith("algorithm.varpo.reward_keys: 'length' is not a component of task 'judge'")
    with_length = [*judge, "+reward.custom_reward_function.reward_kwargs.task_options.max_words=50"]
    assert main(["--dry-run", *with_length, *files]) == 0, capsys.readouterr().err
