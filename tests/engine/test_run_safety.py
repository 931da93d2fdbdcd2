"""Run safety: a non-empty output_dir is never silently overwritten, --resume continues the run recorded in its own
run.json (a changed config is an error naming the keys unless --override), and default directories of `varpo train`
and `varpo demo` cannot collide. Every check runs before a model is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from varpo.cli import app
from varpo.run import spec as spec_mod
from varpo.run import train as train_mod

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _resolved(out: Path, **extra):
    return spec_mod.load_config(REPO / "configs" / "demo.yaml", {"output_dir": str(out), **extra})


def fake_run(out: Path, resolved) -> None:
    """A run directory as `varpo train` leaves it (run.json from the same writer)."""
    args = resolved.trainer_config(**train_mod.cpu_defaults(resolved.train))
    train_mod.write_run_file(resolved, "builtin:tiny", args)
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 0.1}\n')


def test_non_empty_output_dir_is_refused_before_anything_is_built(tmp_path):
    out = tmp_path / "run"
    fake_run(out, _resolved(out))
    result = runner.invoke(app, ["train", str(REPO / "configs/demo.yaml"), f"output_dir={out}"])
    assert result.exit_code == 2
    assert "is not empty; pass --resume to continue that run, --overwrite to replace it" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (out / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.1}\n'  # untouched


def test_overwrite_replaces_only_a_run_directory(tmp_path):
    out = tmp_path / "run"
    fake_run(out, _resolved(out))
    assert train_mod.check_output_dir(_resolved(out), overwrite=True) == "overwrite"
    assert not out.exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="does not look like a varpo run directory"):
        train_mod.check_output_dir(_resolved(other), overwrite=True)
    assert (other / "thesis.tex").exists()
    assert train_mod.check_output_dir(_resolved(tmp_path / "fresh")) == "new"


def test_resume_reads_the_runs_own_run_json(tmp_path):
    out = tmp_path / "run"
    fake_run(out, _resolved(out))
    assert train_mod.check_output_dir(_resolved(out), resume=True) == "resume"
    changed = _resolved(out, learning_rate=0.12345, advantage_method="gdpo")
    with pytest.raises(
        ValueError, match=r"differs from .*run.json in advantage_method, learning_rate; pass --override"
    ):
        train_mod.check_output_dir(changed, resume=True)
    assert train_mod.check_output_dir(changed, resume=True, override=True) == "resume"
    with pytest.raises(ValueError, match="holds no varpo run to resume"):
        train_mod.check_output_dir(_resolved(tmp_path / "empty"), resume=True)
    with pytest.raises(ValueError, match="exclude each other"):
        train_mod.check_output_dir(_resolved(out), resume=True, overwrite=True)
    record = json.loads((out / "run.json").read_text())
    assert record["train"]["output_dir"] == str(out)


def test_train_and_demo_default_directories_cannot_collide():
    resolved = spec_mod.load_config(REPO / "configs" / "demo.yaml", [])
    assert resolved.train["output_dir"] == "runs/train/demo"
    assert not Path(resolved.train["output_dir"]).is_relative_to("runs/demo")


def test_dry_run_says_what_a_real_run_with_its_flags_would_do_with_output_dir(tmp_path):
    """--dry-run takes the real run's --resume/--overwrite/--override and gives the same answer, deleting nothing."""
    out = tmp_path / "run"
    assert train_mod.output_dir_plan(_resolved(out)) == f"{out}: new run"
    fake_run(out, _resolved(out))
    with pytest.raises(ValueError, match="is not empty; pass --resume to continue that run, --overwrite"):
        train_mod.output_dir_plan(_resolved(out))
    assert "resume the run there (its run.json matches)" in train_mod.output_dir_plan(_resolved(out), resume=True)
    changed = _resolved(out, learning_rate=0.12345)
    with pytest.raises(ValueError, match="differs from .*run.json in learning_rate; pass --override"):
        train_mod.output_dir_plan(changed, resume=True)
    assert "accepts the changes (--override)" in train_mod.output_dir_plan(changed, resume=True, override=True)
    assert "will be replaced (--overwrite)" in train_mod.output_dir_plan(_resolved(out), overwrite=True)
    assert (out / "metrics.jsonl").is_file()  # a dry run deletes nothing, even with --overwrite
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="does not look like a varpo run directory"):
        train_mod.output_dir_plan(_resolved(tmp_path / "notes"), overwrite=True)


def test_cli_dry_run_refuses_what_a_real_run_would_refuse(tmp_path):
    out = tmp_path / "run"
    fake_run(out, _resolved(out))
    args = ["train", str(REPO / "configs/demo.yaml"), f"output_dir={out}", "--dry-run"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert "is not empty; pass --resume to continue that run" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "resume the run there" in resumed.output and (out / "metrics.jsonl").is_file()


def test_overwrite_validates_the_new_config_before_deleting_the_old_run(tmp_path):
    """An invalid new configuration (a weight per reward missing) fails with exit 2 and the old run is intact."""
    out = tmp_path / "run"
    fake_run(out, _resolved(out))
    argv = ["train", str(REPO / "configs/demo.yaml"), f"output_dir={out}", "reward_weights=[1,1]", "--overwrite"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert "reward_weights" in result.output and len(result.output.strip().splitlines()) == 1
    assert (out / "run.json").is_file() and (out / "metrics.jsonl").is_file()


@pytest.mark.parametrize("dry", [False, True])
def test_overwrite_refuses_a_run_directory_holding_foreign_files(tmp_path, dry):
    out = tmp_path / "run"
    fake_run(out, _resolved(out))
    (out / "notes.txt").write_text("mine")
    check = train_mod.output_dir_plan if dry else train_mod.check_output_dir
    with pytest.raises(ValueError, match=r"holds files a varpo run does not write \(notes.txt\); not deleting it"):
        check(_resolved(out), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "run.json").is_file()


@pytest.mark.parametrize("dry", [False, True])
def test_overwrite_refuses_metrics_or_checkpoints_without_run_json(tmp_path, dry):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("{}\n")
    check = train_mod.output_dir_plan if dry else train_mod.check_output_dir
    with pytest.raises(ValueError, match="no run.json"):
        check(_resolved(out), overwrite=True)
    assert (out / "metrics.jsonl").is_file()


@pytest.mark.parametrize("where", ["cwd", "parent_of_cwd", "home", "root"])
@pytest.mark.parametrize("dry", [False, True])
def test_overwrite_never_deletes_the_current_home_or_root_directory(tmp_path, monkeypatch, where, dry):
    """`output_dir=.`, `~`, `/` (or an ancestor of the working directory) is refused even when it holds a run."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "a.txt").write_text("x")
    (work / "run.json").write_text("{}")
    out = {"cwd": ".", "parent_of_cwd": str(tmp_path), "home": "~", "root": "/"}[where]
    check = train_mod.output_dir_plan if dry else train_mod.check_output_dir
    reason = {"cwd": "the current directory", "parent_of_cwd": "an ancestor of the current directory"}
    reason |= {"home": "the home directory", "root": "the file system root"}
    with pytest.raises(ValueError, match=f"is {reason[where]}; not deleting it"):
        check(_resolved(Path(out)), overwrite=True)
    assert (work / "run.json").is_file() and (tmp_path / "home" / "a.txt").is_file()


def test_cli_overwrite_of_the_current_directory_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.tex").write_text("x")
    for extra in ([], ["--dry-run"]):
        argv = ["train", str(REPO / "configs/demo.yaml"), "output_dir=.", "--overwrite", *extra]
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output
        assert "is the current directory; not deleting it" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert (tmp_path / "thesis.tex").is_file()


@pytest.mark.parametrize("below", [False, True])
def test_output_dir_that_is_or_lies_below_a_file_is_refused(tmp_path, below):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "run" if below else blocker
    for check in (train_mod.output_dir_plan, train_mod.check_output_dir):
        with pytest.raises(ValueError, match="is a file; set output_dir=<a directory>"):
            check(_resolved(out))
    assert blocker.read_text() == "x"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[1, 2]", "holds a JSON list, not a run record"),
        ('{"spec": null, "train": {}}', "'spec' is None, not a mapping"),
        ('{"spec": {}, "train": [1]}', "'train' is [1], not a mapping"),
        ('{"spec": ', "is not a readable JSON file"),
    ],
)
def test_resume_with_a_malformed_run_json_is_one_line_naming_it(tmp_path, text, needle):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(text)
    result = runner.invoke(app, ["train", str(REPO / "configs/demo.yaml"), f"output_dir={out}", "--resume"])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "run.json" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_eval_of_a_run_json_with_null_spec_names_the_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    record = {"spec": None, "start_model": "builtin:tiny", "temperature": 1.0, "max_completion_length": 8}
    (out / "run.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["eval", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{out / 'run.json'}: 'spec' is None, not a mapping" in result.output.replace("\n", "")
