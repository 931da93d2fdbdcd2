"""varpo.verl.rewards: verl's dict format, loaded and called the way verl's reward loop does it."""

from __future__ import annotations

import math

import pytest
from verl.trainer.ppo.reward import get_custom_reward_fn

import varpo.tasks
from tests.verl.helpers import compose
from varpo.verl.rewards import compute_score, task_for, task_row


def verl_loaded(task: str, *extra: str):
    """compute_score as verl's reward workers get it (pkg:// path, reward_kwargs bound by verl)."""
    cfg = compose(
        [
            "reward.custom_reward_function.path=pkg://varpo.verl.rewards",
            "reward.custom_reward_function.name=compute_score",
            f"+reward.custom_reward_function.reward_kwargs.task={task}",
            *extra,
        ]
    )
    return get_custom_reward_fn(cfg)


def call_like_naive_manager(fn, data_source, solution_str, ground_truth, extra_info):
    # verl/experimental/reward_loop/reward_manager/naive.py: keyword call, then every key -> reward_extra_info
    result = fn(data_source=data_source, solution_str=solution_str, ground_truth=ground_truth, extra_info=extra_info)
    assert isinstance(result, dict) and "score" in result
    return result


@pytest.mark.parametrize(
    ("task", "gt_of"),
    [
        ("toolcall", lambda r: r["ground_truth"]),
        ("math", lambda r: r["answer"]),
        ("countdown", lambda r: {"target": r["target"], "numbers": r["numbers"]}),
    ],
)
def test_gold_completions_score_full_marks_through_verl_loader(task, gt_of):
    fn = verl_loaded(task)
    grader = varpo.tasks.get_task(task)
    for row in grader.generate(n=6, seed=3):
        result = call_like_naive_manager(
            fn, "any_source", row["completion"], gt_of(row), {"index": 0, "split": "train"}
        )
        assert set(result) == {"score", "varpo_signal", *grader.reward_names}
        expected = grader.score(row["completion"], **row)
        assert result == {"score": result["score"], "varpo_signal": result["varpo_signal"], **expected}
        assert result["score"] == pytest.approx(sum(v for k, v in result.items() if k not in ("score", "varpo_signal")))
        assert all(grader.satisfied(row["completion"], **row).values())


def test_score_weights_and_task_options():
    row = varpo.tasks.get_task("math").generate(n=1, seed=0)[0]
    out = compute_score("math", row["completion"], row["answer"], {}, task_options={"max_tokens": 1})
    assert out["accuracy"] == 1.0 and out["length"] == 0.0 and out["score"] == 1.0
    out = compute_score("math", "no answer here", row["answer"], {}, weights={"accuracy": 1.0})
    assert out["score"] == 0.0 and out["length"] == 1.0
    with pytest.raises(ValueError, match="unknown rewards"):
        compute_score("math", "x", "1", {}, weights={"acc": 1.0})


def test_not_applicable_is_nan_not_zero():
    out = compute_score("math", "The answer is 3.", "", {})  # no gold answer: accuracy does not apply
    assert math.isnan(out["accuracy"]) and out["score"] == out["length"]


def test_row_mapping():
    task = varpo.tasks.get_task("countdown")
    assert task_row(task, {"target": 5, "numbers": [1, 4]}, {"index": 1}) == {
        "index": 1,
        "target": 5,
        "numbers": [1, 4],
    }
    math_task = varpo.tasks.get_task("math")
    assert task_row(math_task, "42", {"answer": "7"})["answer"] == "7"  # extra_info wins
    assert task_row(math_task, "42", None)["answer"] == "42"
    with pytest.raises(ValueError, match="reward_kwargs.task"):
        compute_score(None, "x", "1", {})


def test_real_toolrl_verl_parquet_rows(toolrl_path):
    """ToolRL's own verl parquet (data_source 'rlla'): gold outputs meet both objectives (ToolRL: correctness 3 for
    tool calls, 0 — neutral — for response-only answers; format 1)."""
    import pandas as pd

    fn = verl_loaded("toolcall")
    task = varpo.tasks.get_task("toolcall")
    df = pd.read_parquet(toolrl_path)
    for _, row in df.iterrows():
        gt = row["reward_model"]["ground_truth"]
        result = call_like_naive_manager(fn, row["data_source"], gt, gt, dict(row["extra_info"]))
        assert result["format"] == 1.0 and result["correctness"] == (3.0 if "<tool_call>" in gt else 0.0)
        assert all(task.satisfied(gt, ground_truth=gt).values())


@pytest.mark.parametrize("name", ["toolcall", "math", "countdown", "constraints"])
def test_task_found_from_data_source_of_to_verl_output(name):
    """No reward_kwargs.task: varpo's own to_verl rows (data_source 'varpo/<task>') grade their gold as full marks."""
    task = varpo.tasks.get_task(name)
    ds = task.generate(4, seed=3)
    rows = task.to_verl(ds).to_list()
    assert rows[0]["data_source"] == f"varpo/{name}"
    for original, row in zip(ds, rows, strict=True):
        gold = row["extra_info"]["completion"]
        result = compute_score(row["data_source"], gold, row["reward_model"]["ground_truth"], row["extra_info"])
        expected = {k: math.nan if v is None else v for k, v in task.score(original["completion"], **original).items()}
        assert {k: result[k] for k in task.reward_names} == pytest.approx(expected, nan_ok=True)


def test_gsm8k_layout_row_is_graded_as_math():
    """verl's examples/data_preprocess/gsm8k.py row: data_source openai/gsm8k, ground_truth the final number,
    extra_info.answer the worked solution."""
    row = {
        "data_source": "openai/gsm8k",
        "prompt": [{"role": "user", "content": "Natalia sold 48 clips ... Let's think step by step."}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": "72"},
        "extra_info": {"split": "train", "index": 0, "answer": "48/2 = 24 ... 48+24 = 72\n#### 72", "question": "?"},
    }
    args = (row["data_source"], row["reward_model"]["ground_truth"], row["extra_info"])
    right = compute_score(args[0], "So she sold \\boxed{72} clips.", *args[1:])
    wrong = compute_score(args[0], "So she sold \\boxed{70} clips.", *args[1:])
    assert right["accuracy"] == 1.0 and wrong["accuracy"] == 0.0
    for source in ("DigitalLearningGmbH/MATH-lighteval", "math_dapo", "rlla", "countdown"):
        assert task_for(source) in ("math", "toolcall", "countdown")


def test_unknown_data_source_asks_for_the_task():
    with pytest.raises(ValueError, match=r"data_source 'my/data' names no varpo task; set \+reward.custom_reward"):
        compute_score("my/data", "x", "1", {})
    with pytest.raises(ValueError, match="names no varpo task"):
        compute_score(None, "x", "1", {})
