"""Your own TRL reward functions (``reward_funcs: [module:function]``) and data file (``train_file`` +
``load_options.columns``) through the config, ``--dry-run`` (the same checks as a real run), training data, the
held-out split that ``varpo eval`` and sweeps score, and ``run.json`` (what ``varpo eval`` rebuilds the task from)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from varpo.cli import app
from varpo.run import data
from varpo.run import spec as spec_mod
from varpo.run import train as train_mod

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom_rewards"
runner = CliRunner()

REWARDS = """
def correct(prompts, completions, answer, **kwargs):
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]

def short(prompts, completions, **kwargs):
    return [1.0 if len(c) < 10 else 0.5 for c in completions]

def broken(prompts, completions, **kwargs):
    return [1.0 for c in completions if kwargs["missing_column"]]

NOT_A_FUNCTION = 3
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's directory: their reward module, a data file with their own column names, a config."""
    monkeypatch.chdir(tmp_path)
    module = f"user_rewards_{tmp_path.name.replace('-', '_')}"  # unique: imported modules stay in sys.modules
    (tmp_path / f"{module}.py").write_text(REWARDS)
    rows = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(60)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    values = {
        "reward_funcs": [f"{module}:correct", f"{module}:short"],
        "train_file": "train.jsonl",
        "load_options": {"columns": {"prompt": "question"}},
        "output_dir": str(tmp_path / "out"),
    }
    return module, values


def test_reward_funcs_make_a_custom_task(project):
    module, values = project
    resolved = spec_mod.resolve(values)
    assert resolved.spec.task == "custom"
    task = spec_mod.validate(resolved).task
    assert task.reward_names == ["correct", "short"]
    row = {"prompt": "What is 2 + 2?", "answer": "4"}
    assert task.score("it is 4", **row) == {"correct": 1.0, "short": 1.0}
    assert task.satisfied("no idea at all", **row) == {"correct": False, "short": False}


def test_dry_run_scores_the_users_rewards(project):
    _, values = project
    rows = dict(train_mod.dry_run(spec_mod.resolve(values)))
    assert rows["task"].startswith("custom: rewards ['correct', 'short']")
    assert "correct on gold" in rows["rewards"] and "short on gold" in rows["rewards"]


def test_train_and_held_out_rows_are_disjoint_and_cover_the_file(project):
    _, values = project
    spec = spec_mod.resolve({**values, "eval_prompts": 100}).spec
    train, held = data.train_data(spec), data.eval_data(spec)
    assert 0 < len(held) < len(train)
    assert set(train["prompt"]).isdisjoint(held["prompt"])
    assert len(train) + len(held) == 60 and set(train.column_names) >= {"prompt", "answer"}
    # with an eval_file, every training row is trained on
    full = data.train_data(spec_mod.resolve({**values, "eval_file": "train.jsonl"}).spec)
    assert len(full) == 60


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("no_such_module_xyz:correct", "cannot be imported: ModuleNotFoundError"),
        ("{module}:nothing", "has no attribute 'nothing'"),
        ("{module}:NOT_A_FUNCTION", "is not callable"),
        ("{module}", "expected module:function"),
        ("missing_file.py:correct", "cannot be imported: FileNotFoundError"),
    ],
)
def test_a_bad_entry_is_one_line_naming_it_in_dry_and_real_runs(project, entry, message):
    module, values = project
    entry = entry.format(module=module)
    values = {**values, "reward_funcs": [f"{module}:correct", entry]}
    with pytest.raises(ValueError, match=message) as real:  # what a real run calls first
        spec_mod.validate(spec_mod.resolve(values))
    assert f"reward_funcs entry {entry!r}" in str(real.value)
    config = Path("run.yaml")
    config.write_text(json.dumps(values))
    result = runner.invoke(app, ["train", str(config), "--dry-run"], standalone_mode=True)
    assert result.exit_code == 2
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith("error: reward_funcs entry") and str(real.value) in line


def test_a_reward_that_raises_on_the_data_fails_the_dry_run(project):
    module, values = project
    values = {**values, "reward_funcs": [f"{module}:broken"]}
    with pytest.raises(ValueError, match="reward 'broken' raised KeyError"):
        train_mod.dry_run(spec_mod.resolve(values))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "toolcall"}, "task='toolcall' is invalid; allowed: custom"),
        ({"train_file": None}, "train_file=None is invalid"),
        ({"load_options": {"columns": {"prompt": "text"}}}, "no column 'text'"),
        ({"load_options": {}}, "no prompt column"),
        ({"task_options": {"success": {"nope": 1}}}, "success names"),
    ],
)
def test_config_mistakes(project, change, message):
    _, values = project
    values = {**values, **change}
    with pytest.raises(ValueError, match=message):
        train_mod.dry_run(spec_mod.resolve(values))


def test_cli_override_is_a_comma_list():
    assert spec_mod.parse_overrides(["reward_funcs=m:f,n.py:g"]) == {"reward_funcs": ["m:f", "n.py:g"]}


def test_run_file_rebuilds_the_task_for_eval(project):
    """``varpo eval RUN_DIR`` rebuilds the spec from run.json: the custom task must round-trip."""
    _, values = project
    resolved = spec_mod.resolve(values)
    record = json.loads(json.dumps({"spec": dataclasses.asdict(resolved.spec)}))
    spec = spec_mod.RunSpec(**record["spec"])
    assert data.task_of(spec).reward_names == ["correct", "short"]


def test_chat_prompts_get_chat_completions_as_in_trl(project):
    module, _ = project
    from varpo.tasks.custom import ImportedReward

    seen = {}

    def spy(prompts, completions, **kwargs):
        seen.update(prompts=prompts, completions=completions, kwargs=kwargs)
        return [0.5]

    fn = ImportedReward(f"{module}:short")
    fn.fn = spy
    prompt = [{"role": "user", "content": "hi"}]
    assert fn.score("hello", prompt=prompt, answer="x") == 0.5
    assert seen["completions"] == [[{"role": "assistant", "content": "hello"}]] and seen["kwargs"] == {"answer": ["x"]}


def test_the_shipped_example_dry_runs(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    config = EXAMPLE / "config.yaml"
    result = runner.invoke(app, ["train", str(config.relative_to(ROOT)), "--dry-run", f"output_dir={tmp_path}/o"])
    assert result.exit_code == 0, result.output
    assert "custom: rewards ['correct', 'concise']" in " ".join(result.output.split())


def test_sft_warm_start_key_follows_the_users_data(project, tmp_path):
    """The custom task's demonstrations come from train_file, which is not among the spec's task options: the warm
    start's cache key digests the demonstrations themselves, so another file never reuses a stale warm start."""
    from varpo.run import sft

    _, values = project
    spec = spec_mod.resolve({**values, "warm_start": "sft"}).spec
    key = sft.sft_key(spec, "base", 0, data.sft_data(spec))
    assert key == sft.sft_key(spec, "base", 0, data.sft_data(spec))  # same data, same key
    rows = [{"question": f"What is {i} * 3?", "answer": str(3 * i)} for i in range(60)]
    (tmp_path / "other.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    other = spec_mod.resolve({**values, "warm_start": "sft", "train_file": "other.jsonl"}).spec
    assert sft.sft_key(other, "base", 0, data.sft_data(other)) != key
    (tmp_path / "train.jsonl").write_text((tmp_path / "other.jsonl").read_text())  # same path, new content
    assert sft.sft_key(spec, "base", 0, data.sft_data(spec)) != key
