"""Math word problems: `accuracy` of the final answer and a `length` budget (DVAO's two objectives).

* `accuracy` ∈ {0, 1}: the final answer (last `\\boxed{}`, else `Answer:` line, else last number; see
  `math_grader`) equals the gold `answer` column: exactly for plain numbers, by math-verify otherwise.
  None when the row has no gold answer.
* `length` ∈ {0, 1}: 1 iff the completion has at most `max_tokens` tokens (DVAO: r_length = 1 iff the response
  stays within l tokens; its default l = 4000). Tokens are counted, in order of preference, from the
  `completion_ids` TRL passes (exactly what the policy generated), with the `tokenizer` given to the task, or,
  without either, as regex word pieces (`\\w+` runs and single punctuation marks), which roughly tracks BPE counts.

Data: a built-in generator of small arithmetic word problems with step-by-step solutions of 1..`max_steps`
steps, and loaders for GSM8K, MATH500, AIME and DAPO-Math-17k (verl) layouts or any problem/answer columns.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from varpo.checks import is_real
from varpo.tasks.base import RewardFn, Task, in_split
from varpo.tasks.io import Skipped, first_field, get_field, read_records, to_dataset
from varpo.tasks.math_grader import DEFAULT_TIMEOUT_S, answers_match, extract_answer, gold_answer, last_boxed
from varpo.text import as_chat, prompt_text

PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."

_WORD_PIECES = re.compile(r"\w+|[^\w\s]")
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: "48/2 = <<48/2=24>>24"

# ---------------------------------------------------------------------------------------------------------------
# Rewards


def _score_accuracy(
    text: str, answer: Any, tail_chars: int = 1000, timeout_s: float = DEFAULT_TIMEOUT_S
) -> float | None:
    gold = gold_answer(answer)
    if not gold:
        return None
    pred = extract_answer(text, tail_chars)
    if pred is None:
        return 0.0
    return 1.0 if answers_match(gold, pred, timeout_s) else 0.0


def count_tokens(text: str, completion_ids: Any = None, tokenizer: Any = None, limit: int | None = None) -> int:
    """Completion length in tokens (see module docstring). With `limit`, word pieces stop counting past it."""
    if completion_ids is not None:
        return len(completion_ids)
    if tokenizer is not None:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return len(getattr(ids, "ids", ids))  # `tokenizers.Tokenizer` returns an Encoding
    count = 0
    for count, _ in enumerate(_WORD_PIECES.finditer(text), 1):
        if limit is not None and count > limit:
            break
    return count


def _score_length(text: str, completion_ids: Any = None, max_tokens: int = 4000, tokenizer: Any = None) -> float:
    return 1.0 if count_tokens(text, completion_ids, tokenizer, limit=max_tokens) <= max_tokens else 0.0


accuracy = RewardFn("accuracy", _score_accuracy, columns=("answer",), low=0, high=1)
length = RewardFn("length", _score_length, columns=(), optional=("completion_ids",), low=0, high=1)

# ---------------------------------------------------------------------------------------------------------------
# Built-in word problems: a start amount changed by 1..max_steps operations, one solution sentence per step.

PEOPLE = ("Sam", "Ana", "Tom", "Mia", "Leo", "Zoe", "Ben", "Ivy", "Max", "Eva")
ITEMS = ("apples", "books", "coins", "stickers", "pencils", "marbles", "cookies", "stamps", "shells", "cards")
FRIENDS = ("his friend", "her sister", "a neighbor", "the teacher", "a classmate")


def _step(rng: random.Random, v: int, name: str) -> tuple[str, str, int] | None:
    """(problem sentence, solution sentence, new value) for one operation on the current amount `v`."""
    op = rng.choice("+-*/")
    if op == "+":
        n = rng.randint(2, 20)
        verb = rng.choice(("buys", "finds", "gets"))
        return f"{name} {verb} {n} more.", f"After that: {v} + {n} = {v + n}.", v + n
    if op == "-" and v > 1:
        n = rng.randint(1, v - 1)
        verb = rng.choice((f"gives {n} to {rng.choice(FRIENDS)}", f"loses {n}", f"uses {n}"))
        return f"{name} {verb}.", f"After that: {v} - {n} = {v - n}.", v - n
    if op == "*" and v <= 200:
        k = rng.choice((2, 3))
        word = {2: "doubles", 3: "triples"}[k]
        return f"Then {name} {word} the amount.", f"After that: {v} * {k} = {v * k}.", v * k
    divisors = [k for k in (2, 3, 4, 5) if v % k == 0]
    if op == "/" and divisors:
        k = rng.choice(divisors)
        return (
            f"{name} splits them equally into {k} bags and keeps one bag.",
            f"After that: {v} / {k} = {v // k}.",
            v // k,
        )
    return None


def _word_problem(rng: random.Random, max_steps: int) -> tuple[str, str, int]:
    """(problem, gold solution, answer)."""
    name, item = rng.choice(PEOPLE), rng.choice(ITEMS)
    v = rng.randint(5, 40)
    problem, solution = [f"{name} has {v} {item}."], [f"{name} starts with {v} {item}."]
    target_steps = rng.randint(1, max_steps)
    while len(problem) - 1 < target_steps:
        step = _step(rng, v, name)
        if step is not None:
            problem.append(step[0])
            solution.append(step[1])
            v = step[2]
    problem.append(f"How many {item} does {name} have now?")
    solution.append(f"The answer is \\boxed{{{v}}}.")
    return " ".join(problem), " ".join(solution), v


# ---------------------------------------------------------------------------------------------------------------
# Loader layouts: where the problem, gold answer and (optional) worked solution live.

_LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # layout: (problem keys, answer keys, solution keys), first present key wins
    "gsm8k": (("question",), ("answer",), ("answer",)),
    "math500": (("problem", "Problem"), ("answer", "Answer"), ("solution", "Solution")),
    "aime": (("problem", "Problem", "question", "Question"), ("answer", "Answer"), ("solution", "Solution")),
    "dapo": (("prompt",), ("reward_model.ground_truth",), ()),
}


def _detect_layout(rows: list[dict], source: str) -> str:
    """The layout of the first of the first 20 rows whose fields tell it (a bad first row must not decide)."""
    for row in rows[:20]:
        if get_field(row, "reward_model.ground_truth") is not None:
            return "dapo"
        if "question" in row and "####" in str(row.get("answer", "")):
            return "gsm8k"
        if first_field(row, _LAYOUTS["aime"][0]) and first_field(row, _LAYOUTS["aime"][1]):
            return "aime"
    fields = sorted(rows[0]) if rows else []
    raise ValueError(
        f"{source}: cannot tell the math layout from fields {fields}; pass layout= or problem_key=/answer_key="
    )


def _gold_completion(solution: str | None, answer: str) -> str:
    """A worked solution ending in `\\boxed{answer}` (GSM8K's `#### N` line and calculator notes removed)."""
    if not solution:
        return f"The answer is \\boxed{{{answer}}}."
    solution = _CALCULATOR.sub("", solution.split("####")[0]).strip()
    if last_boxed(solution) is not None:
        return solution
    return f"{solution}\nThe answer is \\boxed{{{answer}}}."


@dataclass
class MathTask(Task):
    """Math with accuracy + length rewards. Options:"""

    max_tokens: int = 4000
    """`length` budget l in tokens (DVAO default 4000)."""
    tokenizer: Any = None
    """Tokenizer for `length` when TRL's `completion_ids` are not available (HF tokenizer or `tokenizers.Tokenizer`)."""
    tail_chars: int = 1000
    """`accuracy` reads only the last `tail_chars` characters of a completion."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    """Wall-clock deadline (seconds) for one completion's whole symbolic comparison (gold parse, prediction parse
    and math-verify's verification together); an answer that runs out of time scores 0 (see `math_grader`)."""
    max_steps: int = 4
    """Generator: most operations per word problem (1..max_steps, uniformly)."""
    prompt_template: str = PROMPT
    """Prompt around each problem (`{problem}` placeholder), for the generator and flat-file layouts."""

    name: str = field(default="math", init=False)

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.tail_chars < 1 or self.max_steps < 1:
            raise ValueError("max_tokens, tail_chars and max_steps must be positive")
        if not (is_real(self.timeout_s) and 0 < self.timeout_s <= 60):
            raise ValueError(f"timeout_s must be a number of seconds in (0, 60], got {self.timeout_s!r}")
        if "{problem}" not in self.prompt_template:
            raise ValueError("prompt_template needs a {problem} placeholder")
        self._reward_funcs = [
            RewardFn(
                "accuracy",
                _score_accuracy,
                columns=("answer",),
                low=0,
                high=1,
                tail_chars=self.tail_chars,
                timeout_s=self.timeout_s,
            ),
            RewardFn(
                "length",
                _score_length,
                columns=(),
                optional=("completion_ids",),
                low=0,
                high=1,
                max_tokens=self.max_tokens,
                tokenizer=self.tokenizer,
            ),
        ]

    @property
    def reward_funcs(self) -> list[RewardFn]:
        return list(self._reward_funcs)

    def verl_ground_truth(self, row: dict) -> str:
        return row["answer"]

    def _prompt(self, problem: str, chat: bool) -> str | list[dict]:
        text = self.prompt_template.format(problem=problem)
        return as_chat(text, "user") if chat else text + "\n"

    def generate(self, n: int, seed: int = 0, split: str = "train", chat: bool = False):
        """`n` word problems. Columns: prompt, completion (steps then `\\boxed{N}`), answer (str), steps (int)."""
        rng = random.Random(f"math/{seed}/{split}")
        records = []
        while len(records) < n:
            problem, solution, value = _word_problem(rng, self.max_steps)
            if not in_split(problem, split):
                continue
            records.append(
                {
                    "prompt": self._prompt(problem, chat),
                    "completion": as_chat(solution, "assistant") if chat else solution,
                    "answer": str(value),
                    "steps": solution.count("After that:"),
                }
            )
        return to_dataset(records)

    def load(
        self,
        path: str,
        layout: str = "auto",
        chat: bool | None = None,
        problem_key: str | None = None,
        answer_key: str | None = None,
        solution_key: str | None = None,
        split: str = "train",
        name: str | None = None,
    ):
        """Problems from a file (JSONL/JSON/parquet/`save_to_disk` dir) or an HF hub dataset name (online only).

        Layouts (`layout="auto"` picks by the first row's fields):
        * "gsm8k": `question`, `answer` = worked solution ending in `#### N` (N becomes the answer).
        * "math500" / "aime": `problem`/`Problem`, `answer`/`Answer`, optional `solution`/`Solution`.
        * "dapo": DAPO-Math-17k's verl rows: `prompt` (chat messages, kept as given), `reward_model.ground_truth`.
        * custom: pass `problem_key` and `answer_key` (dotted keys reach nested fields), `solution_key` optional.
        Columns: prompt, completion (the worked solution ending in `\\boxed{answer}`, or just the box), answer,
        steps (-1: unknown). `chat=None` keeps the file's prompt form (plain strings for flat layouts).
        `split`/`name` select the split and config of hub datasets.

        Bad rows are skipped, with one `io.SkippedRowsWarning` that counts them and names the first few (file,
        1-based row, field): a missing/empty problem, a missing/empty gold (None, NaN, "", "None", "null",
        "nan"), a GSM8K answer without `####`. No row is ever kept with an empty or "None" gold. If no row is
        left, ValueError. A malformed file (bad JSON line, …) raises ValueError naming file and line.
        """
        rows = read_records(path, split=split, name=name)
        if problem_key or answer_key:
            if not (problem_key and answer_key):
                raise ValueError("pass both problem_key and answer_key")
            keys = ((problem_key,), (answer_key,), (solution_key,) if solution_key else ())
            layout = "custom"
        else:
            if layout == "auto":
                layout = _detect_layout(rows, str(path))
            if layout not in _LAYOUTS:
                raise ValueError(f"unknown math layout {layout!r} (use one of {sorted(_LAYOUTS)} or 'auto')")
            keys = _LAYOUTS[layout]
        skipped = Skipped(path, len(rows))
        records = []
        for i, row in enumerate(rows):
            problem_field = first_field(row, keys[0]) or keys[0][0]
            answer_field = first_field(row, keys[1]) or keys[1][0]
            problem, raw_answer = get_field(row, problem_field), get_field(row, answer_field)
            if reason := _unusable(problem, problem_field, raw_answer, answer_field, layout):
                skipped.skip(i, reason)
                continue
            answer = gold_answer(raw_answer)
            solution_field = first_field(row, keys[2]) if keys[2] else None
            solution = get_field(row, solution_field) if solution_field else None
            if layout == "dapo":
                prompt = [dict(m) for m in problem] if isinstance(problem, list) else problem
            else:
                prompt = self._prompt(str(problem), chat=False)
            as_messages = isinstance(prompt, list) if chat is None else chat
            if as_messages and isinstance(prompt, str):
                prompt = as_chat(prompt.rstrip("\n"), "user")
            elif not as_messages and isinstance(prompt, list):
                prompt = prompt_text(prompt)
            completion = _gold_completion(str(solution) if solution else None, answer)
            records.append(
                {
                    "prompt": prompt,
                    "completion": as_chat(completion, "assistant") if as_messages else completion,
                    "answer": answer,
                    "steps": -1,
                }
            )
        skipped.report(len(records))
        return to_dataset(records)


def _unusable(problem: Any, problem_field: str, answer: Any, answer_field: str, layout: str) -> str | None:
    """Why a row cannot be a math example (no usable problem or gold answer), or None if it can."""
    if layout == "dapo" and isinstance(problem, list):
        if not problem or not all(isinstance(m, dict) and m.get("content") for m in problem):
            return f"field {problem_field!r} is not a list of chat messages with content"
    elif problem is None or (isinstance(problem, float) and problem != problem) or not str(problem).strip():
        return f"missing or empty field {problem_field!r}"
    elif not isinstance(problem, str | int):
        return f"field {problem_field!r} is a {type(problem).__name__}, not text"
    if not gold_answer(answer):
        return f"missing or empty gold answer in field {answer_field!r} (got {str(answer)[:40]!r})"
    if layout == "gsm8k" and "####" not in str(answer):
        return f"field {answer_field!r} has no '#### <answer>' line (GSM8K layout)"
    return None
