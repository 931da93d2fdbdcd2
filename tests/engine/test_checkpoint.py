"""metrics.jsonl durability (SIGKILL at any point) and --resume from the last TRL checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from varpo.trl import read_metrics, repair_metrics

from .conftest import TEST_TINY


def test_read_and_repair_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert repair_metrics(path, max_step=1) == 1
    assert path.read_text() == '{"step": 1, "loss": 0.5}\n'


def test_repair_skips_valid_json_lines_that_are_not_records(tmp_path):
    """A list, a number or a string step (a hand edit) is not a record: skipped, never a crash on resume."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n[1, 2]\n7\n"text"\n{"step": "x"}\n{"step": 2, "loss": 0.4}\n')
    assert [r["step"] for r in read_metrics(path)] == [1, "x", 2]
    assert repair_metrics(path, max_step=1) == 1
    assert path.read_text() == '{"step": 1, "loss": 0.5}\n'


def _config(tmp_path: Path, **extra) -> Path:
    values = {
        "model": "builtin:tiny",
        "tiny": TEST_TINY,
        "sft_demos": 64,
        "train_prompts": 64,
        "eval_prompts": 4,
        "eval_k": 2,
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_completion_length": 12,
        "learning_rate": 0.01,
        "save_strategy": "steps",
        "save_steps": 2,
        "gradient_checkpointing": False,
        "output_dir": str(tmp_path / "run"),
        "seed": 0,
        **extra,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _varpo(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "varpo", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run) if "loss" in r]


def test_sigkill_then_resume(tmp_path):
    """Kill a training subprocess mid-run, tear the last line as a kill inside a write would, then --resume."""
    config = _config(tmp_path, max_steps=400)
    run = tmp_path / "run"
    proc = _varpo("train", str(config))
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"training exited early:\n{proc.stdout.read()}")
            if len(_steps(run)) >= 5 and list(run.glob("checkpoint-*")):
                break
            time.sleep(0.2)
        else:
            pytest.fail("training did not reach 5 logged steps in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = _steps(run)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # every line written before the kill is whole
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 99999, "loss": 0.')  # a torn record, as if killed inside write()
    assert _steps(run) == killed_at

    last = max(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*"))
    final_steps = last + 2
    resumed = _varpo("train", str(config), f"max_steps={final_steps}", "--resume", "--override")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert _steps(run) == list(range(1, final_steps + 1))  # history up to the checkpoint + the resumed steps
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line)
    assert (run / "final" / "config.json").exists()

    # `varpo eval RUN_DIR` gives the before/after table and writes eval.md
    evaluation = _varpo("eval", str(run), "--k", "2", "--prompts", "4", "--max-new-tokens", "8")
    output, _ = evaluation.communicate(timeout=300)
    assert evaluation.returncode == 0, output
    assert "before (start model)" in output and "after (RL)" in output
    assert "correctness" in (run / "eval.md").read_text()


def test_resume_skips_a_checkpoint_killed_while_saving(tmp_path):
    """A SIGKILL during a save leaves checkpoint-N without (or with a torn) trainer_state.json: --resume must take
    the newest whole one, not fail on the torn one (seen in the SIGKILL test under load)."""
    from varpo.run.train import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path) is None
    for step in (2, 4, 6, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-6" / "trainer_state.json").write_text('{"global_step": 6, "log_hi')  # torn
    # checkpoint-10: model written, state not yet
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


def test_end_of_training_summary_never_repeats_a_step(tmp_path):
    """TRL logs its end-of-training summary at the last step; it goes to train_summary.json, so metrics.jsonl keeps
    one record per step — also when a finished run is resumed (the summary is logged again at the same step)."""
    from types import SimpleNamespace

    from varpo.trl.metrics import SUMMARY_FILE, MetricsJSONLCallback, read_metrics

    args = SimpleNamespace(output_dir=str(tmp_path))
    callback = MetricsJSONLCallback()
    for resumed_at in (0, 3):
        state = SimpleNamespace(is_world_process_zero=True, global_step=resumed_at)
        callback.on_train_begin(args, state, None)
        for step in range(resumed_at + 1, 4):
            state.global_step = step
            callback.on_log(args, state, None, logs={"loss": 0.1, "step_time": 0.5})
        callback.on_log(args, state, None, logs={"train_runtime": 1.0, "train_loss": 0.1})
        steps = [r["step"] for r in read_metrics(tmp_path)]
        assert steps == [1, 2, 3]
        assert json.loads((tmp_path / SUMMARY_FILE).read_text())["train_runtime"] == 1.0


def test_engine_md_metrics_table_lists_step_time():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    assert "| `step_time` |" in text
