"""Judge and data settings: one table, checked through every path that validates them — ``varpo train --dry-run``,
the real run's validation (``spec.validate``), and the judge's own check before its first request — so a dry run
accepts exactly what a real run accepts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from varpo.cli import app
from varpo.run import spec as spec_mod
from varpo.run import train as train_mod

runner = CliRunner()
GOOD = {"judge_base_url": "http://127.0.0.1:9/v1", "judge_model": "tiny-judge", "judge_cache": None}

# (task, task_options, the one-line message; None = valid)
CASES = [
    ("rubric", GOOD, None),
    ("judge", GOOD, None),
    ("rubric", {**GOOD, "judge_base_url": "https://judge.example.org:8443/v1"}, None),
    ("rubric", {"judge_model": "m"}, "task_options judge_base_url is unset"),
    ("judge", {"judge_model": "m"}, "task_options judge_base_url is unset"),
    ("rubric", {**GOOD, "judge_model": None}, "task_options judge_model is unset"),
    ("rubric", {**GOOD, "judge_base_url": "127.0.0.1:8000/v1"}, "judge_base_url='127.0.0.1:8000/v1' is invalid"),
    ("judge", {**GOOD, "judge_base_url": "localhost:8000"}, "judge_base_url='localhost:8000' is invalid"),
    ("rubric", {**GOOD, "judge_base_url": "ftp://judge/v1"}, "judge_base_url='ftp://judge/v1' is invalid"),
    ("rubric", {**GOOD, "judge_base_url": "http:///v1"}, "judge_base_url='http:///v1' is invalid"),
    ("rubric", {**GOOD, "judge_backend": "nope"}, "judge_backend='nope' is invalid"),
    ("rubric", {**GOOD, "judge_max_failure_rate": 0.9, "judge_failure_window": 3}, None),
    ("rubric", {**GOOD, "judge_max_failure_rate": float("nan")}, "judge_max_failure_rate=nan is invalid"),
    ("judge", {**GOOD, "judge_max_failure_rate": 1.5}, "judge_max_failure_rate=1.5 is invalid"),
    ("rubric", {**GOOD, "judge_max_failure_rate": 0.5, "judge_failure_window": 0}, "judge_failure_window=0 is invalid"),
]


def _resolved(task, options, tmp_path):
    return spec_mod.resolve({"task": task, "task_options": options, "output_dir": str(tmp_path / "out")})


@pytest.mark.parametrize(("task", "options", "message"), CASES)
def test_dry_run_and_real_run_agree(task, options, message, tmp_path):
    outcomes = []
    for dry in (True, False):
        try:
            spec_mod.validate(_resolved(task, options, tmp_path), dry_run=dry)
            outcomes.append(None)
        except ValueError as err:
            outcomes.append(str(err))
    assert outcomes[0] == outcomes[1]
    if message is None:
        assert outcomes[0] is None
        spec_mod.resolve({"task": task, "task_options": options}).spec.make_task().judge.backend.check()
    else:
        assert outcomes[0] is not None and message in outcomes[0] and "\n" not in outcomes[0]
        if "judge_backend" not in message:  # the judge's own check before a request says the same
            with pytest.raises(ValueError) as at_request:
                spec_mod.RunSpec(task=task, task_options=options).make_task().judge.backend.check()
            assert str(at_request.value) == outcomes[0]


def test_cli_dry_run_fails_with_one_line_and_labels_reachability(tmp_path):
    config = tmp_path / "judge.yaml"
    config.write_text("task: rubric\ntask_options: {judge_model: m}\n")
    result = runner.invoke(app, ["train", str(config), "--dry-run", f"output_dir={tmp_path}/o"])
    assert result.exit_code == 2 and result.output.strip().startswith("error: task_options judge_base_url is unset")
    rows = dict(train_mod.dry_run(_resolved("rubric", GOOD, tmp_path)))
    assert rows["judge"].endswith(
        "(not called in dry run); reachable now: no (a real run counts every judgment as failed)"
    )
    assert "never stops on failures" in rows["judge"]
    policy = {**GOOD, "judge_max_failure_rate": 0.9, "judge_failure_window": 3}
    assert (
        "stop above 0.9 failed for 3 batches" in dict(train_mod.dry_run(_resolved("rubric", policy, tmp_path)))["judge"]
    )
    config.write_text(
        "task: rubric\ntask_options: {judge_base_url: 'http://127.0.0.1:9/v1', judge_model: m, judge_cache: null,"
        " judge_max_failure_rate: .nan}\n"
    )
    result = runner.invoke(app, ["train", str(config), "--dry-run", f"output_dir={tmp_path}/o"])
    assert result.exit_code == 2 and "judge_max_failure_rate=nan is invalid" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("source", ["/nonexistent.jsonl", "/nonexistent", "/tmp/no/such/data.parquet", "~/no/such"])
def test_missing_local_data_path_fails_the_dry_run_as_the_real_run(source, tmp_path):
    for dry in (True, False):
        resolved = spec_mod.resolve({"train_file": source, "output_dir": str(tmp_path / "o")})
        with pytest.raises(ValueError, match=rf"train_file='{source}': no such file or directory"):
            spec_mod.validate(resolved, dry_run=dry)


def test_a_relative_data_path_not_copied_here_is_skipped_by_the_dry_run_only(tmp_path):
    resolved = spec_mod.resolve({"train_file": "data/later.jsonl", "output_dir": str(tmp_path / "o")})
    assert "data/later.jsonl not found here" in spec_mod.validate(resolved, dry_run=True).skipped["train_file"]
    with pytest.raises(ValueError, match="no such file or directory"):
        spec_mod.validate(resolved)
