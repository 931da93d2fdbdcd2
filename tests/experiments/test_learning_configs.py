"""The learning-benchmark configs resolve to valid engine configs for every method and weight they are swept with."""

from __future__ import annotations

from pathlib import Path

import pytest

from varpo.experiments.grid import expand_grid
from varpo.run import data
from varpo.run.spec import load_config

LEARNING = Path(__file__).resolve().parents[2] / "benchmarks" / "learning"


@pytest.mark.parametrize(
    ("name", "objectives"), [("toolcall", ["correctness", "format"]), ("math", ["accuracy", "length"])]
)
def test_learning_config_is_valid(name, objectives, tmp_path):
    config = LEARNING / f"{name}.yaml"
    for point in expand_grid("grpo,ac,gdpo,dvao,saw,rvpo", "0.1,0.9", "1"):
        resolved = load_config(config, [*point.overrides(), f"output_dir={tmp_path}"])
        args = resolved.trainer_config(use_cpu=True, report_to="none")
        assert args.advantage_method == point.method and list(args.reward_weights) == list(point.weights)
    assert data.task_of(resolved.spec).reward_names == objectives
    assert "eval_every=" in (LEARNING / "run.sh").read_text()
