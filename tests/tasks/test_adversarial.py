"""Model output is untrusted: every reward returns a finite number (or None only when not applicable) for any
string, in bounded time, and no grader executes anything."""

import builtins
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import varpo.tasks

TASKS = {name: varpo.tasks.get_task(name) for name in ("toolcall", "math", "countdown")}
ROWS = {name: TASKS[name].generate(4, seed=5).to_list() for name in TASKS}

TAGS = [
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<response>",
    "</response>",
    "<answer>",
    "</answer>",
    "\\boxed{",
    "}",
    "{",
    '{"name": "',
    '", "parameters": {',
    "}}",
    "\n",
    "Answer:",
    "[",
    "]",
    "1",
    "-",
    "/",
    "\ufffd",
    "\x00",
    " ",
    "get_weather",
    "celsius",
    "(",
    ")",
    "*",
    "9^{9^{9}}",
]

tag_soup = st.lists(st.sampled_from(TAGS), max_size=40).map("".join)
text = st.one_of(st.text(max_size=300), tag_soup, st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace")))


def check(task_name, completion, rows=None):
    task = TASKS[task_name]
    for row in ROWS[task_name] if rows is None else rows:
        for fn in task.reward_funcs:
            value = fn.score(completion, **row)
            assert value is None or (isinstance(value, float) and math.isfinite(value) and fn.low <= value <= fn.high)
            # Only rows without a gold value are "not applicable"; generated rows always have one.
            assert value is not None


@pytest.mark.parametrize("task_name", sorted(TASKS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion=text)
def test_any_string_gets_a_finite_reward_in_range(task_name, completion):
    check(task_name, completion)


@settings(max_examples=40, deadline=None)
@given(prefix=tag_soup, junk=st.text(max_size=50))
def test_edited_gold_completions_stay_in_range(prefix, junk):
    for name, task in TASKS.items():
        for row in ROWS[name]:
            gold = row["completion"]
            for variant in (prefix + gold, gold + junk, gold[: len(junk)] + junk, gold.replace("<", junk, 1)):
                for fn in task.reward_funcs:
                    v = fn.score(variant, **row)
                    assert v is not None and fn.low <= v <= fn.high


ADVERSARIAL = {
    "empty": "",
    "whitespace": " \n\t " * 100,
    "1MB garbage": ('<think>{["\\boxed{9^{9^9}}\ufffd<answer>(((' * 40000)[:1_000_000],
    "1MB valid-looking": "<think> x </think>\n<tool_call>\n"
    + '{"name": "a", "parameters": {}}\n' * 32000
    + "</tool_call>",
    "unbalanced tags": "<think><think></think><tool_call></tool_call></tool_call><answer><answer></answer>\\boxed{{{",
    "replacement chars": "\ufffd" * 10_000 + "<think>\ufffd</think>\n<answer>\ufffd</answer>",
    "nested json 100k": "<think> t </think>\n<tool_call>\n" + "[" * 100_000 + "\n</tool_call>",
    "nested json 15k": "<think> t </think>\n<tool_call>\n" + '{"a":' * 3000 + "1" + "}" * 3000 + "\n</tool_call>",
    "huge int": "<answer>" + "9" * 5000 + "</answer> \\boxed{" + "9" * 499 + "}",
    "huge exponent": "\\boxed{10^{10^{10^{10}}}}",
    "import": "<think>__import__('os')</think>\n<answer>__import__('os').system('true')</answer>",
    "many boxes": "\\boxed{" * 50_000,
    "many think": "<think>" + "</think>\n" * 5000 + "<response> r </response>",
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_explicit_adversarial_inputs_are_fast_and_finite(name):
    completion = ADVERSARIAL[name]
    for task_name in TASKS:
        row = ROWS[task_name][:1]
        t0 = time.monotonic()
        check(task_name, completion, row)
        # math-verify may spend its timeouts (parse + compare) on a symbolic bomb; the rest is near-instant.
        assert time.monotonic() - t0 < 3 * TASKS["math"].timeout_s + 2
        check(task_name, [{"role": "assistant", "content": completion}], row)


def test_non_string_completions_read_as_empty():
    for task_name, task in TASKS.items():
        row = ROWS[task_name][0]
        for completion in (None, 3, b"<think>", [{"role": "assistant"}], [{"content": None}], {"content": "x"}):
            assert all(v is not None for v in task.score(completion, **row).values())


def test_no_grader_executes_model_output(monkeypatch, tmp_path):
    """Completions whose evaluation would create a file or set a builtin, in every place a grader parses.

    `eval`/`exec` are spied on while grading: libraries use them on their own code (module imports, mpmath's
    generated methods, sympy's `exec("from sympy import *")` and `eval("Integer (42 )")` for the numeric literals
    latex2sympy's grammar matched), but no text of a completion may ever reach them.
    """
    marker = tmp_path / "pwned"
    payloads = [
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
        "__import__('builtins').__setattr__('VARPO_PWNED', 1)",
        'exec("import builtins; builtins.VARPO_PWNED = 1")',
        "open('x', 'w').write('1')",
    ]
    seen = []
    real_eval, real_exec = builtins.eval, builtins.exec

    def spy(real):
        def call(code, *args, **kwargs):
            if isinstance(code, str):
                seen.append(code)
            return real(code, *args, **kwargs)

        return call

    monkeypatch.setattr(builtins, "eval", spy(real_eval))
    monkeypatch.setattr(builtins, "exec", spy(real_exec))
    completions = []
    for p in payloads:
        completions += [
            f"<think> {p} </think>\n<answer> {p} </answer>",
            f"\\boxed{{{p}}}",
            f"\\boxed{{{p} + 1}}",
            f"Answer: {p}",
            f'<think> x </think>\n<tool_call>\n{{"name": "{p}", "parameters": {{"a": "{p}"}}}}\n</tool_call>',
            p,
        ]
    for task_name, task in TASKS.items():
        for row in ROWS[task_name]:
            for c in completions:
                task.score(c, **row)
    monkeypatch.undo()
    fragments = ("__import__", "VARPO_PWNED", "pwned", "'x', 'w'")  # sympy would pass `__import__ ('os')`
    assert not [code for code in seen if any(f in code for f in fragments)]
    assert not marker.exists()
    assert not hasattr(builtins, "VARPO_PWNED")
