"""End to end: a 2-run sweep (grpo, dvao) through the real TRL engine on builtin:tiny, then its report.

Kept small (2 optimizer steps, 8 held-out prompts × 2 samples, no SFT warm start) so it runs in well under a minute
on one CPU core per run; ``-m "not slow"`` deselects it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from varpo.experiments.grid import expand_grid
from varpo.experiments.report import write_report
from varpo.experiments.results import load_sweep
from varpo.experiments.sweep import run_sweep

CONFIG = """\
model: builtin:tiny
task: toolcall
train_prompts: 16
sft_demos: 32
eval_prompts: 8
eval_k: 2
max_steps: 2
num_generations: 4
per_device_train_batch_size: 8
max_completion_length: 24
learning_rate: 1.0e-3
"""


@pytest.mark.slow
def test_two_run_sweep_on_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("VARPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = tmp_path / "mini.yaml"
    config.write_text(CONFIG)
    sweep = tmp_path / "sweep"
    points = expand_grid("grpo,dvao", "0.5", "1")
    runner = [sys.executable, "-m", "varpo.experiments.runner"]
    outcomes = run_sweep(config, sweep, points, ["eval_every=1"], runner=runner, jobs=2, timeout=300)
    assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]

    result = load_sweep(sweep)
    assert result.objectives == ["correctness", "format"]
    for run in result.finished:
        assert [c["step"] for c in run.curve] == [0, 1, 2]
        assert set(run.objectives) == {"correctness", "format"} and run.all_rate is not None
        steps = [r["step"] for r in run.metrics if "reward/correctness/mean" in r]
        assert steps == [1, 2]
        assert (run.dir / "final").is_dir() and not list(run.dir.glob("checkpoint-*"))
        payload = json.loads((run.dir / "eval.json").read_text())
        per_prompt = payload["per_prompt"]  # the final evaluation's per-prompt rates; the curve stays compact
        assert set(per_prompt) == {"correctness", "format", "all"}
        assert all("per_prompt" not in point for point in payload["curve"])
        rates = [r for r in per_prompt["all"] if r is not None]
        assert sum(rates) / len(rates) == pytest.approx(payload["all"])
    # both runs start from the same model and eval settings: one cached step-0 evaluation
    assert result.finished[0].curve[0] == result.finished[1].curve[0]

    # resume: nothing left to do
    again = run_sweep(config, sweep, points, ["eval_every=1"], runner=runner, jobs=2)
    assert [o.status for o in again] == ["skipped", "skipped"]

    text = write_report(sweep).read_text()
    assert "2 of 2 finished" in text and "`grpo`" in text and "`dvao`" in text
    assert (sweep / "pareto_correctness__format.png").exists()


@pytest.mark.slow
def test_own_rewards_and_data_sweep_to_report(tmp_path, monkeypatch):
    """docs/custom.md end to end: the shipped example (two TRL reward functions by import path, a JSONL file with
    its own column names) through a real 2-run sweep, then the report names the user's objectives."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # the example's paths are relative to the repository root, as the doc runs it
    monkeypatch.setenv("VARPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sweep = tmp_path / "sweep"
    points = expand_grid("grpo,gdpo", "0.5", "1")
    runner = [sys.executable, "-m", "varpo.experiments.runner"]
    small = ["max_steps=2", "eval_prompts=4", "eval_k=2", "eval_every=0"]
    outcomes = run_sweep("examples/custom_rewards/config.yaml", sweep, points, small, runner=runner, jobs=2)
    assert [o.status for o in outcomes] == ["done", "done"], [o.error for o in outcomes]
    result = load_sweep(sweep)
    assert result.objectives == ["correct", "concise"]
    text = write_report(sweep).read_text()
    assert "2 of 2 finished" in text and "correct" in text and "concise" in text
    assert (sweep / "pareto_correct__concise.png").exists()
