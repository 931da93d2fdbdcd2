"""The toolcall task: generator, loaders (real ToolRL data), reward ranges, TRL-style calls."""

import collections
import importlib
import json
import pickle

import pandas as pd
import pytest

import varpo.tasks
from varpo.tasks import toolcall
from varpo.tasks.toolrl_rules import parse_ground_truth


@pytest.fixture(scope="module")
def task():
    return varpo.tasks.get_task("toolcall")


@pytest.fixture(scope="module")
def train(task):
    return task.generate(n=600, seed=0)


def full_marks(task, row):
    return task.score(row["completion"], **row) == {"correctness": 3.0 if row["kind"] != "none" else 0.0, "format": 1.0}


def test_reward_funcs_names_order_and_ranges(task):
    assert task.reward_names == ["correctness", "format"]
    c, f = task.reward_funcs
    assert (c.low, c.high, f.low, f.high) == (-3.0, 3.0, 0.0, 1.0)
    unit = varpo.tasks.get_task("toolcall", correctness_range="0_1").reward_funcs[0]
    assert (unit.low, unit.high) == (0.0, 1.0)


def test_generator_is_deterministic_and_seeded(task):
    a, b = task.generate(50, seed=3), task.generate(50, seed=3)
    assert a.to_list() == b.to_list()
    assert a.to_list() != task.generate(50, seed=4).to_list()


def test_train_and_test_splits_are_disjoint(task, train):
    test = task.generate(300, seed=0, split="test")
    assert set(test["kind"]) == {"single", "multi", "none"}
    assert not set(test["prompt"]) & set(train["prompt"])

    def requests(ds):  # tool requests are held out as requests, whatever tools are listed around them
        return {p.split("User: ")[1] for p, k in zip(ds["prompt"], ds["kind"], strict=True) if k != "none"}

    assert not requests(test) & requests(train)
    assert task.generate(300, seed=7, split="test")["prompt"] != test["prompt"]


def test_every_gold_completion_scores_full_marks(task, train):
    assert all(full_marks(task, r) for r in train)
    assert all(all(task.satisfied(r["completion"], **r).values()) for r in train)


def test_kind_mix_and_short_completions(train):
    kinds = collections.Counter(train["kind"])
    assert 0.08 < kinds["multi"] / len(train) < 0.25
    assert 0.08 < kinds["none"] / len(train) < 0.25
    # Short enough for a tiny model: at most ~60 BPE tokens in practice; bound the characters.
    assert max(len(c) for c in train["completion"]) < 260
    assert sum(len(c) for c in train["completion"]) / len(train) < 150
    assert max(len(p) for p in train["prompt"]) < 400


def test_prompt_lists_the_needed_tools_and_values_appear_verbatim(train):
    for row in train:
        calls = parse_ground_truth(row["ground_truth"]) or []
        listed = row["prompt"].split("User: ")[0]
        request = row["prompt"].split("User: ")[1]
        assert listed.count("(") == 3
        for c in calls:
            assert f"\n{c['name']}(" in listed
            for v in c["parameters"].values():
                if not isinstance(v, bool):
                    assert str(v) in request


def test_corrupt_frac_corrupts_exactly_that_many_and_each_loses_reward():
    task = varpo.tasks.get_task("toolcall", corrupt_frac=0.3)
    ds = task.generate(200, seed=1)
    bad = [r for r in ds if r["corruption"]]
    assert len(bad) == 60
    labels = collections.Counter(r["corruption"].split(":")[0] for r in bad)
    assert labels["format"] > 10 and labels["value"] > 10
    for r in ds:
        scores = task.score(r["completion"], **r)
        assert full_marks(task, r) == (r["corruption"] == ""), (r["corruption"], r["completion"], scores)
        # The ground truth column stays clean.
        assert task.score(r["ground_truth"], **r)["format"] == 1.0
    clean = varpo.tasks.get_task("toolcall").generate(200, seed=1)
    assert clean["ground_truth"] == ds["ground_truth"]


def test_chat_generation_gives_messages(task):
    ds = task.generate(20, seed=0, chat=True)
    row = ds[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["completion"][0]["role"] == "assistant"
    assert all(full_marks(task, r) for r in ds)


def test_instructions_option_prepends_the_format_hint():
    ds = varpo.tasks.get_task("toolcall", instructions=True).generate(3)
    assert all(p.startswith(toolcall.FORMAT_HINT) for p in ds["prompt"])


def test_unit_range_is_the_affine_map_of_toolrl_range(train):
    faithful = varpo.tasks.get_task("toolcall")
    unit = varpo.tasks.get_task("toolcall", correctness_range="unit")
    row = next(r for r in train if r["kind"] == "single")
    candidates = [row["completion"], row["completion"].replace('"', "'"), row["completion"].replace("1", "2"), ""]
    for c in candidates:
        r = faithful.score(c, **row)["correctness"]
        u = unit.score(c, **row)["correctness"]
        assert u == pytest.approx((r + 3) / 6)
    none_row = next(r for r in train if r["kind"] == "none")
    assert faithful.score("anything", **none_row)["correctness"] == 0.0
    assert unit.score("anything", **none_row)["correctness"] == 0.5


def test_trl_call_signature_ignores_extra_kwargs_and_accepts_chat_completions(task, train):
    rows = train.select(range(8))
    cols = {k: rows[k] for k in rows.column_names if k not in ("prompt", "completion")}
    extras = dict(completion_ids=[[1, 2]] * 8, trainer_state=object(), log_extra=print, log_metric=print)
    for fn in task.reward_funcs:
        plain = fn(prompts=rows["prompt"], completions=rows["completion"], **cols, **extras)
        chat = fn(
            prompts=[[{"role": "user", "content": p}] for p in rows["prompt"]],
            completions=[[{"role": "assistant", "content": c}] for c in rows["completion"]],
            **cols,
            **extras,
        )
        assert plain == chat and len(plain) == 8 and all(isinstance(v, float) for v in plain)


def test_missing_column_is_a_clear_error(task):
    with pytest.raises(KeyError, match="ground_truth"):
        task.reward_funcs[0](prompts=["p"], completions=["c"])


def test_reward_funcs_pickle_and_import_by_dotted_path(task):
    from trl.trainer.utils import get_callable_name, is_async_callable

    for fn in task.reward_funcs:
        clone = pickle.loads(pickle.dumps(fn))
        assert clone.__name__ == fn.__name__ and get_callable_name(fn) == fn.__name__
        assert not is_async_callable(fn)
    module, _, attr = "varpo.tasks.toolcall.correctness".rpartition(".")
    assert getattr(importlib.import_module(module), attr).__name__ == "correctness"
    assert pickle.loads(pickle.dumps(toolcall.format)).__name__ == "format"


# --- real data -----------------------------------------------------------------------------------------------------


def test_every_toolrl_test_example_scores_full_marks(task, toolrl_path):
    ds = task.load(str(toolrl_path))
    raw = pd.read_parquet(toolrl_path)
    assert len(ds) == len(raw) == 80
    assert ds["ground_truth"] == [r["ground_truth"] for r in raw["reward_model"]]
    for row in ds:
        assert row["prompt"][0]["role"] == "system" and row["prompt"][1]["role"] == "user"
        scores = task.score(row["completion"], **row)
        want = 3.0 if row["kind"] != "none" else 0.0
        assert scores == {"correctness": want, "format": 1.0}
        assert all(task.satisfied(row["completion"], **row).values())
    assert collections.Counter(ds["kind"]) == {"single": 36, "multi": 35, "none": 9}


def test_toolrl_sft_json_and_jsonl_layouts(task, toolrl_path, tmp_path):
    raw = pd.read_parquet(toolrl_path)
    sft = [{k: r["extra_info"][k] for k in ("instruction", "input", "output")} for _, r in raw.iterrows()]
    (tmp_path / "rlla.json").write_text(json.dumps(sft))
    (tmp_path / "rlla.jsonl").write_text("\n".join(json.dumps(r) for r in sft))
    verl = task.load(str(toolrl_path))
    for name in ("rlla.json", "rlla.jsonl"):
        ds = task.load(str(tmp_path / name))
        assert ds["prompt"] == verl["prompt"] and ds["ground_truth"] == verl["ground_truth"]
    flat = task.load(str(tmp_path / "rlla.jsonl"), chat=False)
    assert isinstance(flat[0]["prompt"], str) and isinstance(flat[0]["completion"], str)
    assert all(full_marks(task, r) for r in flat)


def test_unknown_layout_and_options_are_rejected(task, tmp_path):
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match="layout"):
        task.load(str(tmp_path / "x.jsonl"))
    with pytest.raises(TypeError, match="corrupt_frac"):
        varpo.tasks.get_task("toolcall", corruption=0.2)
    with pytest.raises(ValueError):
        varpo.tasks.get_task("toolcall", correctness_range="0-1")
    with pytest.raises(ValueError):
        varpo.tasks.get_task("nope")
