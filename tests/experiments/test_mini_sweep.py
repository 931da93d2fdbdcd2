"""End to end: a 2-run sweep (grpo, dvao) through the real TRL engine on builtin:tiny, then its report.

Kept small (2 optimizer steps, 8 held-out prompts × 2 samples, no SFT warm start) so it runs in well under a minute
on one CPU core per run; ``-m "not slow"`` deselects it.
"""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("varpo.run.train", reason="the TRL engine (varpo.run) is not installed")

from varpo.experiments.grid import expand_grid  # noqa: E402
from varpo.experiments.report import write_report  # noqa: E402
from varpo.experiments.results import load_sweep  # noqa: E402
from varpo.experiments.sweep import run_sweep  # noqa: E402

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
    # both runs start from the same model and eval settings: one cached step-0 evaluation
    assert result.finished[0].curve[0] == result.finished[1].curve[0]

    # resume: nothing left to do
    again = run_sweep(config, sweep, points, ["eval_every=1"], runner=runner, jobs=2)
    assert [o.status for o in again] == ["skipped", "skipped"]

    text = write_report(sweep).read_text()
    assert "2 of 2 finished" in text and "`grpo`" in text and "`dvao`" in text
    assert (sweep / "pareto_correctness__format.png").exists()
