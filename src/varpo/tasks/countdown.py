"""Countdown (TinyZero): combine the given numbers, each exactly once, with + − × ÷ to reach the target.

Prompt and data follow TinyZero (Jiayi-Pan/TinyZero `examples/data_preprocess/countdown.py`, reward
`verl/utils/reward_score/countdown.py`); the two parts of TinyZero's single score become two rewards:

* `accuracy` ∈ {0, 1}: the last `<answer>…</answer>` holds an expression that uses exactly the given numbers,
  each once (as a multiset), and equals the target. TinyZero checks the numbers with `re.findall(r"\\d+")` and
  evaluates with `eval` under a character whitelist; here `arith.evaluate` parses the AST and computes with exact
  fractions (so `1e-5` float tolerance is not needed), and never executes anything.
* `format` ∈ {0, 1}: the stripped reply is `<think>…</think>` then `<answer>…</answer>` (whitespace between them
  allowed, nothing after), each tag exactly once. TinyZero gives 0.1 for an extracted-but-wrong answer instead.

Both differ from TinyZero in one more way: TinyZero reads only the last line of the reply; here the whole reply
is searched. Prompts that end with an opened `<think>` (TinyZero's assistant prefill) are handled: the completion
is read as continuing it. Completions longer than `MAX_CHARS` score 0.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from varpo.tasks import arith
from varpo.tasks.base import RewardFn, Task, in_split
from varpo.tasks.io import Skipped, get_field, read_records, to_dataset
from varpo.text import as_chat, prompt_text

MAX_CHARS = 10_000
_FORMAT = re.compile(r"^<think>.*?</think>\s*<answer>.*?</answer>$", re.DOTALL)
_INT = re.compile(r"-?\d+")

PROMPT = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic operations "
    "(+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. And return the "
    "final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)

# ---------------------------------------------------------------------------------------------------------------
# Rewards


def parse_numbers(value: Any) -> tuple[int, ...] | None:
    """The available numbers from a column value: a list/array of ints or a string like "19 36 55 7" / "[19, 36]"."""
    if isinstance(value, str):
        found = _INT.findall(value[:1000])
        return tuple(int(x) for x in found) or None
    try:
        numbers = tuple(int(x) for x in value)
    except (TypeError, ValueError):
        return None
    return numbers or None


def last_answer(text: str) -> str | None:
    """The last match of TinyZero's `re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)`, in linear time.

    The regex itself is quadratic on unclosed tags (every `<answer>` scans to the end: 1250 of them in a 10 000
    character reply took 0.5 s); `str.find` walks the same non-overlapping matches left to right, each once.
    """
    last, pos = None, 0
    while (start := text.find("<answer>", pos)) >= 0:
        end = text.find("</answer>", start + len("<answer>"))
        if end < 0:
            break  # no later `<answer>` can close either
        last, pos = text[start + len("<answer>") : end], end + len("</answer>")
    return last


def _reply(text: str, prompt: Any = None) -> str:
    text = text.strip()
    if prompt is not None and prompt_text(prompt).rstrip().endswith("<think>") and not text.startswith("<think>"):
        text = "<think>" + text  # TinyZero prefills "<think>" in the prompt
    return text


def _score_accuracy(text: str, target: Any, numbers: Any, prompt: Any = None) -> float | None:
    available = parse_numbers(numbers)
    try:
        goal = Fraction(int(target))
    except (TypeError, ValueError):
        return None  # the row has no usable target: not applicable
    if available is None:
        return None
    if len(text) > MAX_CHARS:
        return 0.0
    answer = last_answer(_reply(text, prompt))
    if answer is None:
        return 0.0
    result = arith.evaluate(answer)
    if result is None or sorted(result.numbers) != sorted(available):
        return 0.0
    return 1.0 if result.value == goal else 0.0


def _score_format(text: str, prompt: Any = None) -> float:
    if len(text) > MAX_CHARS:
        return 0.0
    reply = _reply(text, prompt)
    # Counting first keeps the regex linear (each tag is then present once).
    if any(reply.count(tag) != 1 for tag in ("<think>", "</think>", "<answer>", "</answer>")):
        return 0.0
    return 1.0 if _FORMAT.search(reply) else 0.0


accuracy = RewardFn("accuracy", _score_accuracy, columns=("target", "numbers"), optional=("prompt",), low=0, high=1)
# Named `format` on purpose (shadowing the builtin in this module): the name is the reward's stable key.
format = RewardFn("format", _score_format, columns=(), optional=("prompt",), low=0, high=1)

# ---------------------------------------------------------------------------------------------------------------
# Problems: built from a random expression over the numbers, so every target is reachable.

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


@dataclass(frozen=True)
class _Expr:
    value: Fraction
    text: str
    prec: int  # 3 for a number


def _combine(a: _Expr, op: str, b: _Expr) -> _Expr | None:
    if op == "+":
        value = a.value + b.value
    elif op == "-":
        value = a.value - b.value
    elif op == "*":
        value = a.value * b.value
    elif b.value == 0:
        return None
    else:
        value = a.value / b.value
    p = _PREC[op]
    left = f"({a.text})" if a.prec < p else a.text
    # The right operand of - and / needs parentheses at equal precedence too: a - (b - c) != a - b - c.
    right = f"({b.text})" if b.prec < p or (b.prec == p and op in "-/") else b.text
    return _Expr(value, f"{left} {op} {right}", p)


def _random_problem(rng: random.Random, k: int, max_number: int, max_target: int):
    """(numbers, target, equation, steps) with positive-integer intermediate results, or None."""
    numbers = [rng.randint(1, max_number) for _ in range(k)]
    for _ in range(50):
        pool = [_Expr(Fraction(x), str(x), 3) for x in numbers]
        steps = []
        while len(pool) > 1:
            a, b = rng.sample(pool, 2)
            op = rng.choice("+-*/")
            c = _combine(a, op, b)
            if c is None or c.value <= 0 or c.value.denominator != 1:
                break
            pool.remove(a)
            pool.remove(b)
            pool.append(c)
            steps.append(f"{a.value} {op} {b.value} = {c.value}")
        if len(pool) == 1 and 1 <= pool[0].value <= max_target:
            return numbers, int(pool[0].value), pool[0].text, steps
    return None


def solve(numbers: Sequence[int], target: int, max_numbers: int = 4) -> str | None:
    """An equation over `numbers` (each once) that equals `target`, by exhaustive search; None if there is none
    or if there are more than `max_numbers` numbers (the search grows factorially)."""
    if len(numbers) > max_numbers or not numbers:
        return None
    goal = Fraction(target)

    def search(pool: list[_Expr]) -> str | None:
        if len(pool) == 1:
            return pool[0].text if pool[0].value == goal else None
        for i, j in itertools.permutations(range(len(pool)), 2):
            rest = [e for t, e in enumerate(pool) if t not in (i, j)]
            for op in "+-*/":
                c = _combine(pool[i], op, pool[j])
                if c is not None and (found := search(rest + [c])):
                    return found
        return None

    return search([_Expr(Fraction(x), str(x), 3) for x in numbers])


def _gold(think: str, equation: str, prompt: Any) -> str:
    gold = f"<think> {think} </think>\n<answer> {equation} </answer>"
    if prompt_text(prompt).rstrip().endswith("<think>"):
        gold = gold[len("<think>") :]
    return gold


@dataclass
class CountdownTask(Task):
    """Countdown with numbers 1..`max_number` and targets 1..`max_target`. Options:"""

    min_numbers: int = 3
    """Generator: fewest numbers per problem."""
    max_numbers: int = 4
    """Generator: most numbers per problem."""
    max_number: int = 99
    """Generator: largest available number."""
    max_target: int = 100
    """Generator: largest target."""

    name: str = field(default="countdown", init=False)

    def __post_init__(self) -> None:
        if not 2 <= self.min_numbers <= self.max_numbers <= 6:
            raise ValueError("need 2 <= min_numbers <= max_numbers <= 6")
        if self.max_number < 1 or self.max_target < 1:
            raise ValueError("max_number and max_target must be positive")

    @property
    def reward_funcs(self) -> list[RewardFn]:
        return [accuracy, format]

    def verl_ground_truth(self, row: dict) -> dict:
        return {"target": row["target"], "numbers": list(parse_numbers(row["numbers"]) or ())}

    def _prompt(self, numbers: Sequence[int], target: int, chat: bool) -> str | list[dict]:
        text = PROMPT.format(numbers=list(numbers), target=target)
        return as_chat(text, "user") if chat else text + "\n"

    def generate(self, n: int, seed: int = 0, split: str = "train", chat: bool = False):
        """`n` solvable problems. Columns: prompt, completion (think = the steps, answer = the equation),
        target (int), numbers (str, space-separated, in prompt order)."""
        rng = random.Random(f"countdown/{seed}/{split}")
        records = []
        while len(records) < n:
            k = rng.randint(self.min_numbers, self.max_numbers)
            problem = _random_problem(rng, k, self.max_number, self.max_target)
            if problem is None:
                continue
            numbers, target, equation, steps = problem
            if not in_split(f"{sorted(numbers)}->{target}", split):
                continue
            rng.shuffle(numbers)  # the prompt order must not give the solution's order away
            prompt = self._prompt(numbers, target, chat)
            completion = _gold(". ".join(steps) + ".", equation, prompt)
            records.append(
                {
                    "prompt": prompt,
                    "completion": as_chat(completion, "assistant") if chat else completion,
                    "target": target,
                    "numbers": " ".join(map(str, numbers)),
                }
            )
        return to_dataset(records)

    def load(self, path: str, layout: str = "auto", chat: bool | None = None):
        """Problems from a file or hub dataset. Same columns as `generate`.

        Layouts (`layout="auto"` picks by the first row's fields):
        * "verl": TinyZero's parquet rows: `prompt` (chat messages, kept as given),
          `reward_model.ground_truth` = {"target", "numbers"}.
        * "flat": rows with `target` and `nums` (HF `Jiayi-Pan/Countdown-Tasks-3to4`) or `numbers`; the prompt is
          built with TinyZero's wording.
        The gold completion comes from `solve()` (up to 4 numbers; None when unsolvable or larger).
        `chat=None` keeps the file's prompt form (plain strings for "flat").

        Rows without a usable integer target, without numbers (missing, `null`, no integers) or, for "verl",
        without a prompt are skipped, with one `io.SkippedRowsWarning` that counts them and names the first few
        (file, 1-based row, field). If no row is left, ValueError.
        """
        rows = read_records(path)
        if layout == "auto":
            verl = any(get_field(r, "reward_model") is not None for r in rows[:20])
            layout = "verl" if verl else "flat"
        if layout not in ("verl", "flat"):
            raise ValueError(f"unknown countdown layout {layout!r} (use 'verl', 'flat' or 'auto')")
        skipped = Skipped(path, len(rows))
        records = []
        for i, row in enumerate(rows):
            problem = self._problem(row, layout)
            if isinstance(problem, str):
                skipped.skip(i, problem)
                continue
            target, numbers, prompt = problem
            as_messages = isinstance(prompt, list) if chat is None else chat
            if as_messages and isinstance(prompt, str):
                prompt = as_chat(prompt.rstrip("\n"), "user")
            elif not as_messages and isinstance(prompt, list):
                prompt = prompt_text(prompt)
            equation = solve(numbers, target)
            completion = None if equation is None else _gold("Search the combinations.", equation, prompt)
            if completion is not None and as_messages:
                completion = as_chat(completion, "assistant")
            records.append(
                {
                    "prompt": prompt,
                    "completion": completion,
                    "target": target,
                    "numbers": " ".join(map(str, numbers)),
                }
            )
        skipped.report(len(records))
        return to_dataset(records)

    def _problem(self, row: dict, layout: str) -> tuple[int, tuple[int, ...], Any] | str:
        """(target, numbers, prompt) of one file row, or the reason it cannot be used."""
        if layout == "verl":
            gt = get_field(row, "reward_model.ground_truth")
            if not isinstance(gt, dict):
                return "field 'reward_model.ground_truth' is not an object with 'target' and 'numbers'"
            names = ("reward_model.ground_truth.numbers", "reward_model.ground_truth.nums")
            raw_target, raw_numbers = gt.get("target"), _first_present(gt, "numbers", "nums")
            prompt = row.get("prompt")
            if isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
                prompt = [dict(m) for m in prompt]
            elif not (isinstance(prompt, str) and prompt.strip()):
                return "missing or empty field 'prompt'"
            target_name = "reward_model.ground_truth.target"
        else:
            names = ("nums", "numbers")
            raw_target, raw_numbers = row.get("target"), _first_present(row, "nums", "numbers")
            prompt, target_name = None, "target"
        target = _as_int(raw_target)
        if target is None:
            return f"field {target_name!r} is missing or not an integer (got {str(raw_target)[:40]!r})"
        numbers = parse_numbers(raw_numbers) if raw_numbers is not None else None
        if numbers is None:
            return f"field {names[0]!r} (or {names[1]!r}) is missing, null or holds no integers"
        if prompt is None:
            prompt = self._prompt(numbers, target, chat=False)
        return target, numbers, prompt


def _first_present(row: dict, *keys: str) -> Any:
    """The value of the first of `keys` that is present and not null."""
    return next((row[k] for k in keys if row.get(k) is not None), None)


def _as_int(value: Any) -> int | None:
    """An integer column value (int, integral float, or digit string), else None; bools are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) <= 18:
        return int(value.strip())
    return None
