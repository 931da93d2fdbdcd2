"""The CLI surface: help, one-line config errors, --dry-run of every shipped config, the demo config file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from varpo.cli import app
from varpo.run import spec as spec_mod
from varpo.run import train as train_mod
from varpo.run.demo import DEMO

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


@pytest.mark.parametrize("command", [["train"], ["sweep"], ["eval"], ["lab", "allocate"], ["lab", "replay"]])
def test_help_has_no_bool_metavar_and_no_unshipped_doc_path(command):
    """Flags take no value (no ``<bool>`` column); the help points at what a pip install has (pydoc), not docs/."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    if command == ["train"]:
        assert "docs/engine.md" not in result.output and "python -m pydoc varpo.run.spec" in result.output
