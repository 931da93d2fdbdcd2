"""Countdown: the AST evaluator, the generator (always solvable), rewards, solver and loaders."""

import json
from fractions import Fraction

import pytest

import varpo.tasks
from varpo.tasks import arith
from varpo.tasks.countdown import parse_numbers, solve


@pytest.fixture(scope="module")
def task():
    return varpo.tasks.get_task("countdown")


@pytest.mark.parametrize(
    ("expr", "value", "numbers"),
    [
        ("1 + 2", 3, (1, 2)),
        ("(1 + 2) / 3", 1, (1, 2, 3)),
        ("7 / 2", Fraction(7, 2), (7, 2)),
        ("-3 + 5", 2, (3, 5)),
        ("2 * (3 - 10)", -14, (2, 3, 10)),
        ("((((4))))", 4, (4,)),
        (" 6 - 2 - 1 ", 3, (6, 2, 1)),
    ],
)
def test_evaluate_valid(expr, value, numbers):
    result = arith.evaluate(expr)
    assert result is not None and result.value == value and result.numbers == numbers


@pytest.mark.parametrize(
    "expr",
    [
        "1 / 0",
        "5 / (2 - 2)",
        "2 ** 3",
        "7 // 2",
        "7 % 2",
        "1.5 + 1",
        "True + 1",
        "0x10",
        "1_000",
        "1e3",
        "+3",
        "abs(-3)",
        "x + 1",
        "__import__('os').system('echo hi')",
        "[1, 2]",
        "1 + ",
        "1 = 1",
        "1 < 2",
        "(" * 300 + "1" + ")" * 300,
        "-" * 100 + "1",  # too deep
        "+".join(["1"] * 20),  # too many numbers
        "1234567890 + 1",  # too many digits
        "1\x00+1",
        "",
    ],
)
def test_evaluate_rejects(expr):
    assert arith.evaluate(expr) is None


def test_gold_of_generated_problems_scores_full_marks_and_numbers_are_used_once(task):
    ds = task.generate(300, seed=0)
    for row in ds:
        assert task.score(row["completion"], **row) == {"accuracy": 1.0, "format": 1.0}
        eq = row["completion"].split("<answer>")[1].split("</answer>")[0]
        assert sorted(arith.evaluate(eq).numbers) == sorted(parse_numbers(row["numbers"]))
        assert 1 <= row["target"] <= 100
    assert {len(parse_numbers(n)) for n in ds["numbers"]} == {3, 4}
    assert task.generate(10, seed=0).to_list() == ds.select(range(10)).to_list()
    assert not set(task.generate(100, seed=0, split="test")["prompt"]) & set(ds["prompt"])


def test_rewards_by_hand(task):
    row = {"target": 24, "numbers": "4 6 1"}
    ok = "<think> 4 * 6 = 24 </think>\n<answer> 4 * 6 * 1 </answer>"
    assert task.score(ok, **row) == {"accuracy": 1.0, "format": 1.0}
    assert task.score("<think> x </think> <answer> (6 * 4) / 1 </answer>", **row)["accuracy"] == 1.0
    assert task.score("<answer> 4 * 6 </answer>", **row) == {"accuracy": 0.0, "format": 0.0}  # 1 unused, no think
    assert task.score("<think></think><answer> 4 * 6 * 1 * 1 </answer>", **row)["accuracy"] == 0.0  # 1 twice
    assert task.score("<think></think><answer> 4 + 6 + 1 </answer>", **row) == {"accuracy": 0.0, "format": 1.0}
    assert task.score("<think></think><answer> 4 * 6 * 1 = 24 </answer>", **row)["accuracy"] == 0.0  # not an expression
    two = "<think></think><answer> 1 </answer><answer> 4 * 6 * 1 </answer>"
    assert task.score(two, **row) == {"accuracy": 1.0, "format": 0.0}  # the last answer counts; tags twice
    assert task.score(ok + " trailing", **row)["format"] == 0.0
    assert task.score(ok, target=24, numbers=[4, 6, 1])["accuracy"] == 1.0  # list column (verl parquet)
    assert task.score(ok, target=None, numbers="4 6 1")["accuracy"] is None


def test_tinyzero_prefilled_think_prompt(task):
    prompt = "User: ...\nAssistant: Let me solve this step by step.\n<think>"
    text = " 4 * 6 = 24 </think>\n<answer> 4 * 6 * 1 </answer>"
    fns = task.reward_funcs
    assert [f(prompts=[prompt], completions=[text], target=[24], numbers=["4 6 1"])[0] for f in fns] == [1.0, 1.0]
    assert [f(prompts=["plain"], completions=[text], target=[24], numbers=["4 6 1"])[0] for f in fns] == [1.0, 0.0]


def test_solve():
    eq = solve([4, 6, 1], 24)
    assert eq is not None and arith.evaluate(eq).value == 24
    assert arith.evaluate(solve([3, 3, 8, 8], 24)).value == 24  # needs fractions: 8 / (3 - 8 / 3)
    assert solve([1, 1], 5) is None
    assert solve([1, 2, 3, 4, 5], 15) is None  # beyond max_numbers


def test_loaders(task, tmp_path):
    flat = [{"target": 24, "nums": [4, 6, 1]}, {"target": 99, "nums": [1, 1, 1]}]
    (tmp_path / "flat.jsonl").write_text("\n".join(json.dumps(r) for r in flat))
    ds = task.load(str(tmp_path / "flat.jsonl"))
    assert ds[0]["numbers"] == "4 6 1" and ds[1]["completion"] is None  # unsolvable: no gold
    assert task.score(ds[0]["completion"], **ds[0]) == {"accuracy": 1.0, "format": 1.0}
    verl = [
        {
            "prompt": [{"role": "user", "content": "Using the numbers [4, 6, 1] ...\nAssistant: <think>"}],
            "reward_model": {"style": "rule", "ground_truth": {"target": 24, "numbers": [4, 6, 1]}},
        }
    ]
    (tmp_path / "verl.json").write_text(json.dumps(verl))
    ds = task.load(str(tmp_path / "verl.json"))
    row = ds[0]
    assert row["prompt"] == verl[0]["prompt"] and not row["completion"][0]["content"].startswith("<think>")
    assert task.score(row["completion"], **row) == {"accuracy": 1.0, "format": 1.0}
