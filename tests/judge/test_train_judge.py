"""`varpo train` end to end on CPU with the local judge server: rubric task, 5 judged axes + 1 rule-based reward,
through a judge endpoint that fails in every way (500s, malformed JSON, timeouts) for part of the samples, and
through one that is down for all of them."""

from __future__ import annotations

import json
import math

import yaml
from typer.testing import CliRunner

from tests.judge.conftest import TINY
from varpo.cli import app
from varpo.judge.schemes import HEALTHBENCH_AXES
from varpo.trl.metrics import read_metrics

runner = CliRunner()


def write_config(tmp_path, url: str, steps: int, method: str = "dvao", **judge_options):
    config = {
        "model": "builtin:tiny",
        "tiny": TINY,
        "task": "rubric",
        "task_options": {
            "judge_base_url": url,
            "judge_model": "tiny-judge",
            "judge_concurrency": 4,
            "judge_timeout": 1.5,  # the chaos endpoint's slow replies take 6 s: those time out
            "judge_retries": 1,
            "judge_backoff": 0.0,
            "judge_batch_timeout": 15.0,
            "judge_cache": str(tmp_path / "judge.sqlite"),
            "max_words": 8,
            **judge_options,
        },
        "train_prompts": 16,
        "sft_demos": 32,
        "advantage_method": method,
        "max_steps": steps,
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_completion_length": 12,
        "learning_rate": 0.01,
        "logging_steps": 1,
        "save_strategy": "no",
        "gradient_checkpointing": False,
        "disable_tqdm": True,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


NAMES = [*HEALTHBENCH_AXES, "length"]


def test_varpo_train_with_faulty_judge(server, stats, tmp_path):
    result = runner.invoke(app, ["train", str(write_config(tmp_path, server.url("chaos"), steps=2))])
    assert result.exit_code == 0, result.output
    records = [r for r in read_metrics(tmp_path / "run") if "reward/length/mean" in r]
    assert len(records) == 2
    for r in records:
        for name in NAMES:  # per-dimension mean, std and effective weight, every step
            assert f"reward/{name}/mean" in r and f"reward/{name}/std" in r and f"adv/weight/{name}" in r
        assert r["reward/length/mean"] is not None and 0 < r["reward/length/mean"] <= 1
        assert r["judge/requests"] >= 1 and r["judge/failures"] >= 1  # chaos: some judgments fail...
        assert r["judge/retries"] >= 1
    assert sum(r["judge/failures"] for r in records) < sum(r["judge/requests"] + r["judge/cache_hits"] for r in records)
    judged = [r[f"reward/{a}/mean"] for r in records for a in ("accuracy", "completeness", "context_awareness")]
    assert any(v is not None and math.isfinite(v) for v in judged)  # ...and some succeed
    sent = stats()["requests"]["chaos"]  # a retry cut off by the timeout may never reach the server
    assert (
        sum(r["judge/requests"] for r in records)
        <= sent
        <= sum(r["judge/requests"] + r["judge/retries"] for r in records)
    )
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_varpo_train_survives_judge_outage(server, tmp_path):
    result = runner.invoke(app, ["train", str(write_config(tmp_path, server.url("error"), steps=1, method="gdpo"))])
    assert result.exit_code == 0, result.output
    (record,) = [r for r in read_metrics(tmp_path / "run") if "reward/length/mean" in r]
    assert record["judge/failures"] == record["judge/requests"] > 0
    for axis in HEALTHBENCH_AXES:  # every judged value missing (NaN), left out of the estimator's statistics
        assert record[f"adv/frac_missing/{axis}"] == 1.0
    assert record["adv/frac_missing/length"] == 0.0 and record["reward/length/mean"] > 0
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())  # TRL's summary + the judge's totals
    assert "train_runtime" in summary and "stopped" not in summary
    assert summary["judge_summary/failures"] == summary["judge_summary/judged"] == record["judge/requests"]
    assert summary["judge_summary/failure_rate"] == 1.0 and summary["judge_summary/batches"] == 1
    assert "HTTP 500" in summary["judge_summary/first_error"] or "500" in summary["judge_summary/first_error"]


def test_varpo_train_stops_on_a_judge_outage_with_one_line(server, tmp_path):
    config = write_config(
        tmp_path, server.url("error"), steps=5, judge_max_failure_rate=0.5, judge_failure_window=2, judge_retries=0
    )
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]  # one line, exit 2
    assert line.startswith("error: JudgeOutageError: the judge failed more than 0.5 of the judgments in each of the ")
    assert "judge_max_failure_rate=0.5, judge_failure_window=2" in line
    assert len([r for r in read_metrics(tmp_path / "run") if "reward/length/mean" in r]) == 1  # stopped in step 2
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["stopped"].startswith("JudgeOutageError: the judge failed more than 0.5")
    assert summary["judge_summary/batches"] == 2 and summary["judge_summary/longest_failing_streak"] == 2
    assert summary["judge_summary/failures"] == summary["judge_summary/judged"] > 0
    assert "train_runtime" not in summary and not (tmp_path / "run" / "final").exists()
