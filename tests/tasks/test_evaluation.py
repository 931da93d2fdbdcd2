"""`varpo.tasks.evaluate`: per-objective means, avg@k, pass@k and the all-objectives rate, by hand."""

import math

import pytest

import varpo.tasks
from varpo.tasks import pass_at_k


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))  # 0.7
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_evaluate_countdown_by_hand():
    task = varpo.tasks.get_task("countdown")
    row = {"target": 24, "numbers": "4 6 1"}
    good = "<think> t </think>\n<answer> 4 * 6 * 1 </answer>"
    wrong = "<think> t </think>\n<answer> 4 + 6 + 1 </answer>"
    unformatted = "<answer> 4 * 6 * 1 </answer>"
    other = {"target": 2, "numbers": "1 1"}
    res = varpo.tasks.evaluate(
        task,
        [
            (row, [good, wrong, unformatted, wrong]),  # accuracy 2/4, format 3/4, both 1/4
            (other, [wrong, wrong, wrong, wrong]),  # nothing right (wrong numbers), format 4/4
        ],
    )
    assert (res.n_prompts, res.n_samples, res.k) == (2, 4, 4)
    assert res.mean == {"accuracy": pytest.approx(2 / 8), "format": pytest.approx(7 / 8)}
    assert res.avg_at_k == {"accuracy": pytest.approx((2 / 4 + 0) / 2), "format": pytest.approx((3 / 4 + 1) / 2)}
    assert res.pass_at_k == {"accuracy": 0.5, "format": 1.0}
    assert res.all_objectives == pytest.approx(1 / 8)
    assert res.all_objectives_pass_at_k == 0.5
    # per prompt, in prompt order: what a prompt-clustered standard error is computed from
    assert res.per_prompt == {"accuracy": [0.5, 0.0], "format": [0.75, 1.0], "all": [0.25, 0.0]}
    flat = res.to_dict()
    assert flat["eval/accuracy/pass@4"] == 0.5 and flat["eval/all/rate"] == pytest.approx(1 / 8)
    k1 = varpo.tasks.evaluate(task, [(row, [good, wrong, unformatted, wrong])], k=1)
    assert k1.pass_at_k["accuracy"] == pytest.approx(2 / 4)  # unbiased pass@1 = c/n


def test_evaluate_toolcall_counts_abstention_on_no_tool_prompts():
    task = varpo.tasks.get_task("toolcall")
    ds = task.generate(40, seed=0)
    none_row = next(r for r in ds if r["kind"] == "none")
    call_row = next(r for r in ds if r["kind"] == "single")
    res = varpo.tasks.evaluate(
        task,
        [
            (none_row, [none_row["completion"], call_row["completion"]]),  # abstains / wrongly calls a tool
            (call_row, [call_row["completion"], none_row["completion"]]),
        ],
    )
    assert res.avg_at_k["correctness"] == 0.5 and res.pass_at_k["correctness"] == 1.0
    # Correctness mean: none_row is neutral (0, 0), call_row gets 3 and -3.
    assert res.mean["correctness"] == 0.0
    assert res.all_objectives == 0.5
    # Gold completions satisfy everything, for every kind.
    gold = varpo.tasks.evaluate(task, [(r, [r["completion"]]) for r in ds])
    assert gold.all_objectives == 1.0 and gold.pass_at_k == {"correctness": 1.0, "format": 1.0}


def test_evaluate_skips_not_applicable_and_rejects_empty():
    task = varpo.tasks.get_task("math")
    res = varpo.tasks.evaluate(task, [({"answer": ""}, ["\\boxed{1}"]), ({"answer": "1"}, ["\\boxed{1}"])])
    assert res.mean["accuracy"] == 1.0 and res.avg_at_k["accuracy"] == 1.0
    assert res.per_prompt["accuracy"] == [None, 1.0]  # not applicable to the first prompt
    with pytest.raises(ValueError):
        varpo.tasks.evaluate(task, [({"answer": "1"}, [])])
    with pytest.raises(ValueError):
        varpo.tasks.evaluate(task, [])
    with pytest.raises(ValueError):
        varpo.tasks.evaluate(task, [({"answer": "1"}, ["1"])], k=2)


@pytest.mark.parametrize("name", ["toolcall", "math", "countdown"])
def test_verl_round_trip(name, tmp_path):
    """`to_verl` writes verl's RL layout; its ground truth grades like the original row, and `load` reads it back."""
    task = varpo.tasks.get_task(name)
    ds = task.generate(12, seed=2)
    verl = task.to_verl(ds)
    verl.to_parquet(tmp_path / "v.parquet")
    for row, v in zip(ds, verl, strict=True):
        assert v["prompt"][0]["role"] == "user" and v["reward_model"]["style"] == "rule"
        gold = v["extra_info"]["completion"]
        full = varpo.tasks.evaluate(task, [(row, [gold])]).all_objectives
        assert full == 1.0
        # How a verl reward function maps it back (varpo.verl.rewards.task_row): a dict ground truth gives
        # columns by name, a plain one fills the reward columns.
        gt = v["reward_model"]["ground_truth"]
        fields = dict(gt) if isinstance(gt, dict) else {c: gt for f in task.reward_funcs for c in f.columns}
        assert task.score(gold, **v["extra_info"], **fields) == task.score(gold, **row)
    if name != "math":  # the math verl layout (DAPO) has no worked solutions; toolcall/countdown reload fully
        loaded = task.load(str(tmp_path / "v.parquet"))
        assert all(all(task.satisfied(r["completion"], **r).values()) for r in loaded)
    else:
        loaded = task.load(str(tmp_path / "v.parquet"))
        assert loaded["answer"] == ds["answer"]


def test_generators_do_not_depend_on_hash_randomization():
    """Same (n, seed, split) -> same data in a fresh interpreter with another PYTHONHASHSEED."""
    import hashlib
    import json
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, json, varpo.tasks as T\n"
        "rows = [T.get_task(n, **o).generate(60, seed=3, split=s).to_list() for n, o in "
        "[('toolcall', {'corrupt_frac': 0.3}), ('math', {}), ('countdown', {})] for s in ('train', 'test')]\n"
        "print(hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    rows = [
        varpo.tasks.get_task(n, **o).generate(60, seed=3, split=s).to_list()
        for n, o in [("toolcall", {"corrupt_frac": 0.3}), ("math", {}), ("countdown", {})]
        for s in ("train", "test")
    ]
    here = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    assert other.stdout.strip() == here
