"""Worst-case grading time: every grader scores every answer of a corpus of hostile completions within
`BOUND_S` = 0.5 s per sample (wall clock, `time.perf_counter`), with the documented verdict.

Math is the grader at risk (sympy can be made to compute 9^(9^9) or (10^10)!): a cheap pre-screen
(`math_grader.too_costly`) drops known bombs, and ONE deadline of `timeout_s` (0.3 s) bounds everything else on
either path (in-process on the main thread; off it, the worker process, killed `KILL_GRACE_S` = 0.1 s later). The corpus has bombs the screen
catches, bombs it lets through (so the deadline is what bounds them), and controls that must still score 1.

Timing on a shared, loaded 2-core CI box: each sample is measured once; only when that is over the bound is it
measured twice more and the median taken, so a momentary stall of the whole process cannot fail the test but a
grader that really overruns (every try) does. Math verdict caches are cleared before every measurement.
"""

import re
import signal
import statistics
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import varpo.tasks
from varpo.tasks import math_grader, symbolic
from varpo.tasks.countdown import last_answer

BOUND_S = 0.5

MATH = varpo.tasks.get_task("math")
MATH_ACCURACY = MATH.reward_funcs[0]
GOLD = "44"

# The worst cases and relatives (answers in \boxed{}; each is also tried as an `Answer:` line).
SCREENED_BOMBS = [
    r"x^{10^{10}} - x^{10^{10}} + 44",  # 4.0 s before (and equal to 44, but a tower is screened out: 0)
    r"\lim_{x\to\infty} x^{x^{x}}",  # 3.0 s before
    r"\lim_{n\to\infty}\left(1+\frac{1}{n}\right)^{n^{2}}",
    r"9**9**9",  # 2.35 s before
    r"(10^{10})!",  # 2.24 s before
    r"9^{9^{9^{1}}}",
    r"9^{9^{9^{i}}}",  # the batch of 8 took 16.2 s
    r"10^{10^{10^{10}}}",
    r"9^{-9^{9}}",
    r"2^{(10)^{10}}",
    r"2^{10000000000}",
    r"x^{10000000000}-x^{10000000000}+44",
    r"1000000!",
    r"(2^{100})!",
    r"\sum_{n=1}^{10^{10}} n",
    r"\prod_{k=1}^{10^{5}} k",
    r"\int_0^1 x^{10^9} dx",
    r"\iint_{[0,1]^2} e^{x y}\,dx\,dy",
]
# Bombs no lexical rule catches: only the deadline bounds them (they time out and score 0).
DEADLINE_BOMBS = [
    r"\Gamma(10^{10})",
    r"\binom{10^{10}}{5000000000}",
    r"e^{e^{e^{e^{e}}}}",
    r"(1+x)^{2019}",
]
CONTROLS = {  # answer -> accuracy against gold 44
    r"44": 1.0,
    r"\frac{88}{2}": 1.0,
    r"4 \cdot 11": 1.0,
    r"2^{2}\cdot 11": 1.0,
    r"\sqrt{1936}": 1.0,
    r"45": 0.0,
    r"2^{2019}": 0.0,
}


# Whole completions that attack extraction rather than sympy (1 MB inputs, unbalanced braces, many candidates).
MATH_EXTRACTION_HOSTILE = [
    "\\boxed{" * 50_000,
    "\\boxed{" * 140 + "1" + "}" * 139,
    "{" * 100_000 + "\\boxed{45}",
    "Answer:" * 100_000,
    "9" * 1_000_000,
    "1/" * 500_000,
    "\\boxed{" + "9" * 499 + "}",
    "\\boxed{" + "x+" * 249 + "}",
    "\\boxed{" + "(" * 240 + "1" + ")" * 240 + "}",
    "\\boxed{" + "\\frac{1}{" * 60 + "2" + "}" * 60 + "}",
    "\\boxed{\\sqrt{" * 70 + "2" + "}" * 140,
    "\\boxed{" + "a^" * 240 + "2}",
    "\\boxed{" + "^" * 400 + "}",
    "\\boxed{" + " ^1" * 160 + "}",
    "\\boxed{" + "1!" * 240 + "}",
]


def _completions(answer: str) -> list[str]:
    return [f"Let me think. The answer is \\boxed{{{answer}}}.", f"Reasoning...\nAnswer: {answer}"]


def _measure(call):
    """(seconds, value) of `call()`; re-measured as a median of 3 when the first try is over the bound."""

    def once():
        math_grader.clear_cache()
        t0 = time.perf_counter()
        value = call()
        return time.perf_counter() - t0, value

    seconds, value = once()
    if seconds > BOUND_S:
        seconds = statistics.median([seconds] + [once()[0] for _ in range(2)])
    return seconds, value


@pytest.fixture(scope="module", autouse=True)
def warm():
    # One-time import of math-verify/sympy and the LaTeX parser (about a second): not part of any sample's time.
    symbolic.warm_up()
    MATH.score(_completions("x+1")[0], answer=GOLD)


def test_math_worst_cases_are_graded_within_the_bound_on_the_main_thread():
    times = {}
    hostile = [c for a in SCREENED_BOMBS for c in _completions(a)] + [_completions(a)[0] for a in DEADLINE_BOMBS]
    for completion in hostile + MATH_EXTRACTION_HOSTILE:
        seconds, value = _measure(lambda c=completion: MATH_ACCURACY.score(c, answer=GOLD))
        times[completion] = seconds
        assert value == 0.0, completion[:80]  # a bomb is wrong, whether screened out or timed out
    for answer, want in CONTROLS.items():
        # Legitimate answers take 10-100 ms; on a heavily loaded box one may still run out of time, which scores
        # 0 and is not cached, so it is graded again, as the next occurrence in training would be.
        for _ in range(3):
            seconds, value = _measure(lambda a=answer: MATH_ACCURACY.score(_completions(a)[0], answer=GOLD))
            if value == want:
                break
        times[answer] = seconds
        assert value == want, answer
    worst = max(times, key=times.get)
    assert times[worst] <= BOUND_S, (worst[:80], times[worst])
    # The screened bombs never reach sympy: each costs microseconds, not a deadline.
    screened = [times[c] for a in SCREENED_BOMBS for c in _completions(a)]
    assert statistics.median(screened) < 0.05


def test_the_pre_screen_catches_bombs_and_passes_real_answers():
    for answer in SCREENED_BOMBS:
        assert math_grader.too_costly(GOLD, answer), answer
    legit = [
        r"2^{2019}",
        r"2^{2019}-1",
        r"e^{-x^2}",
        r"2^{2^{n}}",
        r"10!",
        r"1000!",
        r"n!",
        r"(2n)!",
        r"\frac{\sqrt3}{2}",
        r"\infty",
        r"\sqrt[3]{2}",
        r"x^{10}+1",
        r"\binom{10}{3}",
        r"(1,\infty)",
    ]
    for answer in legit + DEADLINE_BOMBS:
        assert not math_grader.too_costly(GOLD, answer), answer
    # A construct the gold itself uses is compared, not screened.
    assert not math_grader.too_costly(r"\sum_{k=1}^{n} k", r"\sum_{k=1}^{n} k")
    assert not math_grader.too_costly(r"2^{2^{10}}", r"2^{2^{10}}")
    assert math_grader.too_costly(r"\sum_{k=1}^{n} k", r"\int_0^n x\,dx")


def test_the_deadline_alone_bounds_bombs_and_a_timeout_is_wrong_and_not_cached():
    # Straight to math-verify, bypassing the pre-screen: one deadline covers both parses and the comparison.
    # (Not every screened bomb is interruptible: `x^{10^{10}} - x^{10^{10}} + 44` can sit in one C call for
    # 0.8 s, which is why the screen exists; these ones are not.)
    for answer in [r"(10^{10})!", r"9^{9^{9^{1}}}", *DEADLINE_BOMBS[:2]]:
        seconds, verdict = _measure(lambda a=answer: symbolic.equal(GOLD, a, MATH.timeout_s))
        assert seconds <= BOUND_S and verdict in (None, False), (answer, seconds, verdict)
    # A timed-out comparison scores 0 and is not cached (the next call grades it again).
    math_grader.clear_cache()
    assert math_grader.answers_match(GOLD, DEADLINE_BOMBS[0], MATH.timeout_s) is False
    assert not any(key[1] == DEADLINE_BOMBS[0] for key in math_grader._verdicts)
    assert math_grader.answers_match(GOLD, r"4 \cdot 11", MATH.timeout_s) is True
    assert (GOLD, r"4 \cdot 11", float(MATH.timeout_s)) in math_grader._verdicts


def test_math_worst_cases_off_the_main_thread_go_through_the_worker_within_the_bound():
    cases = {c: 0.0 for a in [*SCREENED_BOMBS[:3], *DEADLINE_BOMBS[:2]] for c in _completions(a)[:1]}
    cases[_completions(r"4 \cdot 11")[0]] = 1.0
    results: dict[str, tuple[float, float | None]] = {}

    def grade():
        MATH_ACCURACY.score(_completions("y^2")[0], answer=GOLD)  # start and warm the worker (once per process)
        for completion, want in cases.items():
            for _ in range(3):  # a control that timed out on a loaded box is graded again (see above)
                results[completion] = _measure(lambda c=completion: MATH_ACCURACY.score(c, answer=GOLD))
                if results[completion][1] == want:
                    break

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(timeout=180)
    assert not thread.is_alive()
    assert math_grader._WORKER._proc is not None  # the worker did the symbolic work
    for completion, want in cases.items():
        seconds, value = results[completion]
        assert value == want and seconds <= BOUND_S, (completion, seconds, value)


def test_a_trl_batch_of_tower_answers_is_bounded():
    # The batch: 8 completions `\boxed{9^{9^{9^{i}}}}` took 16.2 s in one reward call.
    completions = [f"\\boxed{{9^{{9^{{9^{{{i}}}}}}}}}" for i in range(8)]
    seconds, values = _measure(lambda: MATH_ACCURACY(prompts=None, completions=completions, answer=[GOLD] * 8))
    assert values == [0.0] * 8 and seconds <= BOUND_S * len(completions)


# --- countdown and toolcall: cheap by construction, but measured on their own worst cases -------------------------

COUNTDOWN = varpo.tasks.get_task("countdown")
COUNTDOWN_ROW = COUNTDOWN.generate(1, seed=3).to_list()[0]
COUNTDOWN_HOSTILE = {
    "open answer tags": "<answer>" * 1250,  # 0.5 s with TinyZero's findall regex (quadratic); now linear
    "open think tags": "<think>" * 1400,
    "many answers": "<answer>1</answer>" * 550,
    "nested parens": "<think> t </think>\n<answer>" + "(" * 120 + "1" + ")" * 120 + "</answer>",
    "deep unary minus": "<think> t </think>\n<answer>" + "-" * 250 + "1</answer>",
    "16 nine-digit products": "<think> t </think>\n<answer>" + "*".join(["999999999"] * 16) + "</answer>",
    "16 nine-digit quotients": "<think> t </think>\n<answer>" + "/".join(["999999999"] * 16) + "</answer>",
    "power tower": "<think> t </think>\n<answer>9**9**9</answer>",
    "huge literal": "<think> t </think>\n<answer>" + "9" * 5000 + "</answer>",
    "just under the size limit": "<think>" + "x" * 9960 + "</think>\n<answer>1</answer>",
    "1 MB": ("<think><answer>(" * 70000)[:1_000_000],
    "code": "<think> t </think>\n<answer>__import__('os').system('true')</answer>",
}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["<answer>", "</answer>", "a", "1", "<", ">", "answer"]), max_size=14).map("".join))
def test_countdown_last_answer_is_tinyzeros_last_findall_match(text):
    matches = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
    assert last_answer(text) == (matches[-1] if matches else None)


@pytest.mark.parametrize("name", sorted(COUNTDOWN_HOSTILE))
def test_countdown_worst_cases_are_graded_within_the_bound(name):
    completion = COUNTDOWN_HOSTILE[name]
    values = {}
    for fn in COUNTDOWN.reward_funcs:
        seconds, values[fn.__name__] = _measure(lambda f=fn: f.score(completion, **COUNTDOWN_ROW))
        assert seconds <= BOUND_S, (fn.__name__, seconds)
    # None of them solves the problem; the ones with one think block then one answer block are well formed.
    well_formed = not name.startswith(("open", "many", "1 MB"))
    assert values == {"accuracy": 0.0, "format": 1.0 if well_formed else 0.0}
    assert COUNTDOWN.score(COUNTDOWN_ROW["completion"], **COUNTDOWN_ROW) == {"accuracy": 1.0, "format": 1.0}


TOOLCALL = varpo.tasks.get_task("toolcall", two_call_frac=1.0, no_tool_frac=0.0)
TOOLCALL_ROW = TOOLCALL.generate(1, seed=3).to_list()[0]  # a two-call ground truth
_CALL = '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius", "n": %d}}'
TOOLCALL_HOSTILE = {
    "190 calls": "<think> x </think>\n<tool_call>\n" + "\n".join(_CALL % i for i in range(190)) + "\n</tool_call>",
    "550 names": "<think> x </think>\n<tool_call>\n"
    + "\n".join(f'{{"name": "n{i}", "parameters": {{}}}}' for i in range(550))
    + "\n</tool_call>",
    "1500 params": '<think> x </think>\n<tool_call>\n{"name": "get_weather", "parameters": {'
    + ",".join(f'"p{i}": {i}' for i in range(1500))
    + "}}\n</tool_call>",
    "deep arrays": "<think> x </think>\n<tool_call>\n" + "[" * 19000 + "\n</tool_call>",
    "deep objects": "<think> x </think>\n<tool_call>\n" + '{"a":' * 3000 + "1" + "}" * 3000 + "\n</tool_call>",
    "huge int": '<think> x </think>\n<tool_call>\n{"name": "x", "parameters": {"a": '
    + "9" * 19000
    + "}}\n</tool_call>",
    "open tool_call tags": "<tool_call>" * 1800,
    "repeated think blocks": "<think>" + "</think>\n<tool_call>\n" * 900,
    "tag soup": ("<think></think>\n<response></response>\n<tool_call>\n\n</tool_call>" * 400)[:19999],
    "1 MB": "<think> x </think>\n<tool_call>\n" + '{"name": "a", "parameters": {}}\n' * 32000 + "</tool_call>",
}
assert all(len(c) < 20_000 for name, c in TOOLCALL_HOSTILE.items() if name != "1 MB")  # parsed, not cut off


@pytest.mark.parametrize("name", sorted(TOOLCALL_HOSTILE))
def test_toolcall_worst_cases_are_graded_within_the_bound(name):
    completion = TOOLCALL_HOSTILE[name]
    values = {}
    for fn in TOOLCALL.reward_funcs:
        seconds, values[fn.__name__] = _measure(lambda f=fn: f.score(completion, **TOOLCALL_ROW))
        assert seconds <= BOUND_S, (fn.__name__, seconds)
    low = TOOLCALL.reward_funcs[0].low
    assert values["correctness"] < 0.0  # none of them is the gold pair of calls
    if name in ("deep arrays", "deep objects", "huge int", "open tool_call tags", "1 MB"):
        assert values["correctness"] == low
    well_formed = ("190 calls", "550 names", "1500 params", "deep arrays", "deep objects", "huge int")
    assert values["format"] == (1.0 if name in well_formed else 0.0)
    gold = TOOLCALL.score(TOOLCALL_ROW["completion"], **TOOLCALL_ROW)
    assert gold == {"correctness": 3.0, "format": 1.0}


def test_an_outer_sigalrm_timer_survives_grading():
    # The deadline borrows SIGALRM; a caller's own timer (pytest-timeout, an alarm) is handed back, minus the time
    # spent, and still fires once.
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(time.monotonic()))
    try:
        t0 = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 0.8)
        assert symbolic.equal(GOLD, DEADLINE_BOMBS[0], MATH.timeout_s) is None
        while not fired and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        assert len(fired) == 1 and 0.75 <= fired[0] - t0 < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


CONSTRAINTS = varpo.tasks.get_task("constraints")
CONSTRAINTS_ROW = CONSTRAINTS.generate(1, seed=3).to_list()[0]
CONSTRAINTS_HOSTILE = {  # name -> (completion, whether it is over the 2,000-character limit: every reward 0)
    "word flood under the limit": ("alpha " * 333 + "x", False),
    "punctuation flood": ("bravo," * 333, False),
    "no spaces": ("a" * 1999, False),
    "unicode spaces": ("\u00a0".join(["alpha"] * 333), False),
    "over the limit": ("alpha bravo charlie " * 101, True),
    "1 MB": ("alpha " * 200_000, True),
}


@pytest.mark.parametrize("name", sorted(CONSTRAINTS_HOSTILE))
def test_constraints_worst_cases_are_graded_within_the_bound(name):
    completion, over = CONSTRAINTS_HOSTILE[name]
    for fn in CONSTRAINTS.reward_funcs:
        seconds, value = _measure(lambda f=fn: f.score(completion, **CONSTRAINTS_ROW))
        assert seconds <= BOUND_S, (fn.__name__, seconds)
        assert value is not None and fn.low <= value <= fn.high
        if over or (fn.__name__ == "length" and len(completion.split()) > 100):  # far over the word budget
            assert value == 0.0, fn.__name__
