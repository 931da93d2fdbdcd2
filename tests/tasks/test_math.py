"""The math task: answer extraction, exact/symbolic comparison, length counting, generator, loaders, threads."""

import json
import threading
import time

import pytest

import varpo.tasks
from tests.timing import median_seconds
from varpo.tasks import math_grader
from varpo.tasks.math import count_tokens
from varpo.tasks.math_grader import _Worker, answers_match, extract_answer, gold_answer, last_boxed, to_number


@pytest.fixture(scope="module")
def task():
    return varpo.tasks.get_task("math")


def accuracy(task, text, answer):
    return task.reward_funcs[0].score(text, answer=answer)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (r"so the total is \boxed{42}.", "42"),
        (r"\boxed{1} then \boxed{\frac{3}{4}}", r"\frac{3}{4}"),  # the last box wins
        (r"\boxed{x^{2}+\{1\}}", r"x^{2}+\{1\}"),  # balanced braces
        ("Work...\nAnswer: 17\n", "17"),  # Minerva / DAPO line
        ("3 apples and 5 pears, 8 fruits", "8"),  # last number
        ("It costs 1,234 dollars.", "1,234"),
        ("nothing here", None),
        (r"\boxed{unclosed", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_extract_answer_reads_only_the_tail():
    assert extract_answer(r"\boxed{1}" + " " * 2000) is None
    assert extract_answer(r"\boxed{1}" + " " * 2000, tail_chars=3000) == "1"
    assert last_boxed(r"\fbox{7}") == "7"


@pytest.mark.parametrize(
    ("s", "value"),
    [
        ("42", 42),
        ("-3", -3),
        ("1,260", 1260),
        ("2.25", 2.25),
        ("$36$", 36),
        ("3/4", 0.75),
        (r"\frac{1}{2}", 0.5),
        (r"-\dfrac{3}{6}", -0.5),
        ("10.", 10),
        ("x", None),
        ("1/0", None),
        (r"\frac{1}{0}", None),
    ],
)
def test_to_number(s, value):
    got = to_number(s)
    assert (got is None) if value is None else (float(got) == value)


def test_gold_answer_takes_gsm8k_final_line():
    assert gold_answer("work <<1+1=2>>2\n#### 1,260") == "1,260"
    assert gold_answer(72) == "72"


@pytest.mark.parametrize(
    ("gold", "pred", "ok"),
    [
        ("72", "72", True),
        ("72", "72.0", True),
        ("1,260", "1260", True),
        ("0.5", r"\frac{1}{2}", True),
        ("0.5", "0.50001", False),
        (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt3}{2}", True),  # math-verify
        ("x^2+1", "1+x^2", True),
        (r"\pi", "3.14", False),
        ("10", r"10 \text{ apples}", True),
        ("7", "8", False),
    ],
)
def test_answers_match(gold, pred, ok):
    assert answers_match(gold, pred) is ok


def test_generator_gold_scores_full_marks_and_lengths_vary(task):
    ds = task.generate(400, seed=0)
    assert all(task.score(r["completion"], **r) == {"accuracy": 1.0, "length": 1.0} for r in ds)
    assert set(ds["steps"]) == {1, 2, 3, 4}
    lengths = [count_tokens(c) for c in ds["completion"]]
    assert min(lengths) < 26 and max(lengths) > 45
    assert all(p.endswith("\\boxed{}.\n") for p in ds["prompt"])
    assert task.generate(5, seed=0).to_list() == ds.select(range(5)).to_list()
    test = task.generate(100, seed=0, split="test")
    assert not set(test["prompt"]) & set(ds["prompt"])
    chat = task.generate(3, seed=0, chat=True)
    assert chat[0]["prompt"][0]["role"] == "user" and chat[0]["completion"][0]["role"] == "assistant"


def test_wrong_answers_and_missing_gold(task):
    assert accuracy(task, r"\boxed{41}", "42") == 0.0
    assert accuracy(task, "no answer at all", "42") == 0.0
    assert accuracy(task, r"\boxed{42}", "") is None  # no gold: not applicable
    assert accuracy(task, r"\boxed{42}", None) is None
    assert accuracy(task, r"\boxed{42}", "#### 42") == 1.0


def test_length_prefers_completion_ids_then_tokenizer_then_word_pieces():
    short = varpo.tasks.get_task("math", max_tokens=5)
    length = short.reward_funcs[1]
    text = "one two three four five six"
    assert count_tokens(text) == 6
    assert length.score(text) == 0.0
    assert length.score(text, completion_ids=[1, 2, 3]) == 1.0  # TRL's ids win
    assert length(prompts=["p"], completions=[text], completion_ids=[[1] * 5]) == [1.0]

    class CharTokenizer:  # an HF-style encode(): one token per character
        def encode(self, s, add_special_tokens=False):
            return list(s)

    char_length = varpo.tasks.get_task("math", max_tokens=10, tokenizer=CharTokenizer()).reward_funcs[1]
    assert char_length.score("abcdefghij") == 1.0 and char_length.score("abcdefghijk") == 0.0


def test_length_with_a_real_tokenizers_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["a b c d e"] * 10, trainers.BpeTrainer(vocab_size=50))
    length = varpo.tasks.get_task("math", max_tokens=3, tokenizer=tok).reward_funcs[1]
    assert length.score("a b c") == 1.0 and length.score("a b c d") == 0.0


def test_gsm8k_layout_file_gold_scores_full_marks(task, gsm8k_path):
    ds = task.load(str(gsm8k_path))
    rows = [json.loads(line) for line in gsm8k_path.read_text().splitlines()]
    assert len(ds) == len(rows) == 10
    for row, raw in zip(ds, rows, strict=True):
        assert raw["question"] in row["prompt"]
        assert "<<" not in row["completion"] and "####" not in row["completion"]
        assert task.score(row["completion"], **row) == {"accuracy": 1.0, "length": 1.0}
    assert ds["answer"][2] == "1,260" and ds["answer"][8] == "-4"


def test_math500_aime_dapo_and_custom_layouts(task, tmp_path):
    math500 = [
        {"problem": "Simplify $\\frac{6}{8}$.", "solution": "It is $\\boxed{\\frac34}$.", "answer": "\\frac{3}{4}"}
    ]
    aime = [{"Problem": "Find 2+2.", "Answer": 4}]
    dapo = [
        {
            "prompt": [{"role": "user", "content": "Solve 3*3. Put it after Answer:"}],
            "reward_model": {"ground_truth": "9", "style": "rule"},
            "data_source": "math_dapo",
        }
    ]
    custom = [{"q": "What is 5-2?", "meta": {"final": "3"}}]
    for name, rows in [("m.jsonl", math500), ("a.json", aime), ("d.jsonl", dapo), ("c.jsonl", custom)]:
        path = tmp_path / name
        text = json.dumps(rows) if name.endswith(".json") else "\n".join(json.dumps(r) for r in rows)
        path.write_text(text)
    m = task.load(str(tmp_path / "m.jsonl"))
    assert m[0]["completion"] == "It is $\\boxed{\\frac34}$." and m[0]["answer"] == "\\frac{3}{4}"
    a = task.load(str(tmp_path / "a.json"), layout="aime")
    assert a[0]["answer"] == "4" and "Find 2+2." in a[0]["prompt"]
    d = task.load(str(tmp_path / "d.jsonl"))
    assert d[0]["prompt"] == dapo[0]["prompt"] and d[0]["completion"][0]["role"] == "assistant"
    c = task.load(str(tmp_path / "c.jsonl"), problem_key="q", answer_key="meta.final")
    assert c[0]["answer"] == "3"
    for ds in (m, a, d, c):
        assert all(task.score(r["completion"], **r) == {"accuracy": 1.0, "length": 1.0} for r in ds)
    chat = task.load(str(tmp_path / "m.jsonl"), chat=True)
    assert chat[0]["prompt"][0]["role"] == "user"


def test_parquet_input(task, gsm8k_path, tmp_path):
    import pandas as pd

    pd.read_json(gsm8k_path, lines=True).to_parquet(tmp_path / "g.parquet")
    assert task.load(str(tmp_path / "g.parquet"))["answer"] == task.load(str(gsm8k_path))["answer"]


def test_hub_names_are_not_fetched_offline(task):
    with pytest.raises(Exception):  # noqa: B017 - any datasets/hub error; the point is that it fails fast offline
        task.load("nonexistent-org/nonexistent-math-dataset")


def test_accuracy_off_the_main_thread_uses_the_worker_and_agrees(task):
    cases = [(r"\boxed{\frac{\sqrt3}{2}}", r"\frac{\sqrt{3}}{2}"), (r"\boxed{1+x^2}", "x^2+1"), (r"\boxed{7}", "8")]
    main = [accuracy(task, t, a) for t, a in cases]
    math_grader.clear_cache()  # make the thread really grade (verdicts are cached)
    out = []
    worker = threading.Thread(target=lambda: out.extend(accuracy(task, t, a) for t, a in cases))
    worker.start()
    worker.join(timeout=120)
    assert out == main == [1.0, 1.0, 0.0]
    assert math_grader._WORKER._proc is not None  # the child process did the symbolic work


def test_runaway_math_verify_is_bounded_on_and_off_the_main_thread(task):
    bomb = r"\boxed{9^{9^{9^{9}}}}"
    # medians of 3 runs, the verdict cache cleared before each so every run grades the bomb
    seconds, score = median_seconds(lambda: accuracy(task, bomb, "42"), setup=math_grader.clear_cache)
    assert score == 0.0 and seconds < task.timeout_s + 0.1
    out = []

    def on_a_thread():
        worker = threading.Thread(target=lambda: out.append(accuracy(task, bomb, "42")))
        worker.start()
        worker.join(timeout=60)

    seconds, _ = median_seconds(on_a_thread, setup=math_grader.clear_cache)
    assert out == [0.0, 0.0, 0.0] and seconds < 3 * task.timeout_s + 4


def test_a_hung_worker_is_killed_and_replaced(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text("import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\ntime.sleep(600)\n")
    worker = _Worker(str(script))
    try:
        worker._spawn()
        worker._wait_ready()
        hung = worker._proc
        t0 = time.perf_counter()
        assert worker.equal("1", "x", timeout_s=0.3) is None  # None: timed out (scored as wrong)
        # The caller stops waiting KILL_GRACE_S after the deadline (2 s of slack for a loaded machine) ...
        assert 0.3 <= time.perf_counter() - t0 < 0.3 + math_grader.KILL_GRACE_S + 2
        # ... and the child, stuck, is killed HARD_KILL_S after the request and replaced.
        limit = time.monotonic() + math_grader.HARD_KILL_S + 10
        while time.monotonic() < limit:
            with worker._lock:  # the reaper replaces the child under this lock
                if hung.poll() is not None and worker._proc not in (None, hung):
                    break
            time.sleep(0.02)
        assert hung.poll() is not None
        assert worker._proc is not None and worker._proc.poll() is None
        assert worker.equal("1", "x", timeout_s=0.3) is None  # the replacement is used (and hangs too)
    finally:
        worker._stop()


def test_a_late_worker_answer_is_dropped_and_the_worker_kept(tmp_path):
    # Answers its first request after 0.8 s (a starved child), later ones at once.
    script = tmp_path / "late.py"
    script.write_text(
        "import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\ntime.sleep(0.8)\nprint('1', flush=True)\n"
        "for line in sys.stdin:\n    print('0', flush=True)\n"
    )
    worker = _Worker(str(script))
    try:
        worker._spawn()
        worker._wait_ready()
        child = worker._proc
        t0 = time.perf_counter()
        assert worker.equal("1", "x", timeout_s=0.3) is None
        assert time.perf_counter() - t0 < 0.3 + math_grader.KILL_GRACE_S + 2
        time.sleep(0.6)  # the late "1" arrives meanwhile: it must not be read as the next request's answer
        assert worker.equal("1", "y", timeout_s=0.3) is False
        assert worker._proc is child and child.poll() is None  # a late answer is not a reason to kill
    finally:
        worker._stop()
