"""The CLI surface: help, one-line config errors, --dry-run of every shipped config, the demo config file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from varpo.cli import app
from varpo.experiments.demo import DEMO
from varpo.run import spec as spec_mod
from varpo.run import train as train_mod

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "sft", "train", "eval"):
        assert command in result.output


def test_shipped_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {
        "demo",
        "dvao_math_qwen3_4b",
        "toolrl_qwen25_3b",
        "gvpo_math_qwen25_7b",
        "vlnorm_math",
        "vlnorm_countdown",
    } <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_dry_run_every_shipped_config(config):
    rows = dict(train_mod.dry_run(spec_mod.load_config(config)))
    assert {"config", "task", "data", "rewards", "model"} <= set(rows)
    if "builtin:tiny" not in config.read_text():  # hub models: nothing downloaded offline, and it says so
        assert "skipped" in rows["model"]
    for name in ("correctness", "accuracy"):
        if f"{name} on gold" in rows["rewards"]:
            assert f"{name} on gold: nan" not in rows["rewards"]


def test_dry_run_command(tmp_path):
    config = CONFIGS[[p.stem for p in CONFIGS].index("gvpo_math_qwen25_7b")]
    result = runner.invoke(app, ["train", str(config), "--dry-run", f"output_dir={tmp_path / 'x'}"])
    assert result.exit_code == 0, result.output
    assert "dr_grpo / gvpo / token_mean" in result.output and "nothing was trained or downloaded" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("advantage_methd=dvao", "unknown config key 'advantage_methd'; did you mean: advantage_method?"),
        ("advantage_method=dvoa", "advantage_method='dvoa' is invalid; allowed: grpo"),
        ("loss_aggregation=vl_norm", None),
    ],
)
def test_config_errors_are_one_line(override, message):
    config = CONFIGS[[p.stem for p in CONFIGS].index("demo")]
    if message is None:  # a valid override passes validation
        result = runner.invoke(app, ["train", str(config), override, "policy_loss=ppo", "--dry-run"])
        assert "policy_loss='ppo' is invalid" in result.output
        return
    result = runner.invoke(app, ["train", str(config), override, "--dry-run"])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]


def test_demo_yaml_matches_builtin_demo():
    config = CONFIGS[[p.stem for p in CONFIGS].index("demo")]
    values = spec_mod.load_yaml(config)
    assert {k: str(v) for k, v in values.items()} == {k: str(spec_mod.coerce(k, v)) for k, v in DEMO.items()}


def _config(stem: str) -> dict:
    import yaml

    return yaml.safe_load(CONFIGS[[p.stem for p in CONFIGS].index(stem)].read_text())


def test_saw_tldr_config_gives_saw_the_cv_of_the_raw_judge_scores():
    """SAW's CV is not shift-invariant: on (s-1)/9 the weights differ from those on the judge's 1-10 scores; the
    config's saw_offsets make them equal."""
    import torch

    import varpo

    cfg = _config("saw_tldr_qwen25_1p5b")
    low, high = cfg["task_options"]["judge_score_range"]
    raw = torch.tensor(
        [[8.0, 3.0], [6.0, 9.0], [7.0, 2.0], [9.0, 4.0], [5.0, 8.0], [8.0, 7.0], [4.0, 9.0], [6.0, 5.0]],
        dtype=torch.float64,
    )
    ids = torch.arange(8) // 4
    scaled = (raw - low) / (high - low)

    def weights(rewards, **options):
        out = varpo.compute_advantages(rewards, ids, "saw", cfg["reward_weights"], saw_base=cfg["saw_base"], **options)
        return [out.stats[f"saw_cv/{n}"] for n in ("c0", "c1")], out.advantages

    names = {"names": ["c0", "c1"]}
    want, want_adv = weights(raw, **names)
    got, got_adv = weights(scaled, saw_offsets=cfg["saw_offsets"], **names)
    assert got == pytest.approx(want, rel=1e-6)  # equal up to eps (in reward units, so scaled by 1/9 here)
    torch.testing.assert_close(got_adv, want_adv, rtol=1e-5, atol=1e-6)
    assert weights(scaled, **names)[0] != pytest.approx(want, rel=1e-3)  # without the offsets: a different CV


def test_rvpo_config_never_trains_on_healthbench():
    cfg = _config("rvpo_healthbench_qwen25_7b")
    assert "healthbench" not in cfg["train_file"].lower() and "healthbench" in cfg["eval_file"].lower()


@pytest.mark.parametrize("command", [["train"], ["sweep"], ["eval"], ["lab", "allocate"], ["lab", "replay"]])
def test_help_has_no_bool_metavar_and_no_unshipped_doc_path(command):
    """Flags take no value (no ``<bool>`` column); the help points at what a pip install has (pydoc), not docs/."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    if command == ["train"]:
        assert "docs/engine.md" not in result.output and "python -m pydoc varpo.run.spec" in result.output


@pytest.mark.parametrize("dry_run", [True, False])
def test_schedule_with_the_wrong_k_is_refused_the_same_way_by_dry_run_and_real_run(tmp_path, dry_run):
    """The demo task has 4 reward functions: a 2-weight schedule used to print "ok" in the dry run and fail only
    when the trainer was built. Both now stop at the same check, before anything is created."""
    config = CONFIGS[[p.stem for p in CONFIGS].index("demo")]
    schedule = "reward_weight_schedule={type: linear, points: [[0, [0.5, 0.5]], [10, [1, 0]]]}"
    argv = ["train", str(config), schedule, f"output_dir={tmp_path / 'out'}", *(["--dry-run"] if dry_run else [])]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines == ["error: reward_weight_schedule has 2 weights per point; expected K=4 (one per reward)"]
    assert not (tmp_path / "out").exists()
