"""Constraints: a learnable K-objective testbed. Write one line about a topic that meets K verifiable constraints.

Every objective is a rule on the words of the reply, so a ``builtin:tiny``-class model learns each of them in
minutes of CPU RL, and the task's knobs set up the situations the multi-reward papers are about:

* **K objectives** (``k`` word rules, 1..32, plus an optional ``length`` rule): rule ``j`` asks for the code word
  ``WORDS[j]`` (``alpha``, ``bravo``, ...) — once (``binary``) or exactly ``repeat`` times (``partial``: reward
  ``min(c, repeat) / repeat`` for c ≤ repeat occurrences, decreasing by ``1/repeat`` per extra copy, so spamming
  the word is not a way out).
* **Difficulty per objective** (``rates``): the warm start is SFT on *demonstrations* (:meth:`demonstrations`) in
  which rule ``j`` is met with probability ``rates[j]``, so the warm-started policy meets it about that often
  (0.05 = a hard, rarely seen objective; 0.9 = nearly saturated).
* **Reward type and scale** (``kinds``, ``scales``): binary or partial credit, on ``[0, scales[j]]``.
* **Conflict** (``length_budget``): the ``length`` objective asks for at most ``length_budget`` words. Every other
  rule adds words, and demonstrations carry 0..``filler_max`` filler words, so at the warm start the budget binds;
  a budget below the number of required words makes the objectives truly incompatible (no reply meets all).
* **Correlation** (``correlation``): demonstrations meet the word rules with a Gaussian-copula correlation, so the
  warm start's rewards are correlated across objectives.
* **Length spread** (``filler_max``): correct replies are short (the gold: the required words only) or long (with
  fillers), which is what the loss-aggregation question (token vs sequence normalization) is about.

Prompts (``"<topic> <n>: use alpha, bravo x3, charlie; at most 6 words\\n"``) state the rules; the topic and the
number only vary the prompt (they are what the hash split keys on). The gold completion lists the required words in
rule order. Rewards read the reply's whitespace-separated words (lower-cased, surrounding punctuation stripped); a
reply over ``MAX_CHARS`` characters scores 0 on every objective. Graders are plain string operations, linear time.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from varpo.checks import is_real
from varpo.tasks.base import RewardFn, Task, in_split
from varpo.tasks.io import read_records, to_dataset
from varpo.text import as_chat, completion_text, prompt_text

MAX_CHARS = 2000
KINDS = ("binary", "partial")
WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
    "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
    "xray", "yankee", "zulu", "amber", "cobalt", "indigo", "magenta", "olive", "teal",
)  # fmt: skip
FILLERS = ("the", "a", "very", "good", "and", "so", "then", "now", "just", "here", "more", "well")
TOPICS = (
    "river", "garden", "winter", "music", "city", "ocean", "forest", "train", "coffee", "market", "school", "storm",
    "island", "bridge", "desert", "museum", "kitchen", "harbor", "valley", "library", "planet", "festival", "mountain",
    "village", "bicycle", "window", "lantern", "meadow", "canyon", "castle", "comet", "piano",
)  # fmt: skip
_PUNCT = ".,;:!?\"'()[]{}"


def words_of(text: str) -> list[str] | None:
    """The reply's words, lower-cased without surrounding punctuation; None when the reply is over MAX_CHARS."""
    if len(text) > MAX_CHARS:
        return None
    return [w for w in (t.strip(_PUNCT).lower() for t in text.split()) if w]


def _score_word(text: str, word: str, repeat: int, scale: float) -> float:
    words = words_of(text)
    if words is None:
        return 0.0
    count = words.count(word)
    if repeat == 1:
        return scale if count >= 1 else 0.0
    # partial credit up to `repeat` copies, then one `1/repeat` step down per extra copy (never below 0)
    credit = count if count <= repeat else max(0, 2 * repeat - count)
    return scale * credit / repeat


def _score_length(text: str, budget: int, scale: float) -> float:
    words = words_of(text)
    return scale if words is not None and len(words) <= budget else 0.0


@dataclass
class ConstraintsTask(Task):
    """K verifiable word rules plus an optional length budget. Options:"""

    k: int = 3
    """Number of word rules (1..32); objective j asks for the code word WORDS[j]."""
    rates: list[float] | None = None
    """Warm-start rate per word rule: the probability that a demonstration meets it (default 0.6 .. 0.1)."""
    kinds: list[str] | None = None
    """Per word rule, "binary" (the word once) or "partial" (exactly `repeat` copies, partial credit); default binary."""
    scales: list[float] | None = None
    """Reward range [0, scale] per objective (word rules, then length); default 1."""
    repeat: int = 3
    """Copies a "partial" rule asks for."""
    length_budget: int | None = -1
    """At most this many words (adds the `length` objective, last); -1: the number of required words; None: none."""
    filler_max: int = 6
    """Demonstrations carry 0..filler_max filler words (length spread; makes the length budget bind)."""
    correlation: float = 0.0
    """Gaussian-copula correlation of the word rules' inclusion in demonstrations, in [0, 1)."""

    name: str = field(default="constraints", init=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.k, int) and 1 <= self.k <= len(WORDS)):
            raise ValueError(f"k must be an int in 1..{len(WORDS)}, got {self.k!r}")
        self.rates = self._per_rule("rates", self.rates, _default_rates(self.k))
        self.kinds = self._per_rule("kinds", self.kinds, ["binary"] * self.k)
        if any(not (isinstance(r, (int, float)) and 0.0 <= r <= 1.0) for r in self.rates):
            raise ValueError(f"rates must be numbers in [0, 1], got {self.rates!r}")
        if any(kind not in KINDS for kind in self.kinds):
            raise ValueError(f"kinds must be among {KINDS}, got {self.kinds!r}")
        if not (isinstance(self.repeat, int) and 2 <= self.repeat <= 8):
            raise ValueError(f"repeat must be an int in 2..8, got {self.repeat!r}")
        if self.length_budget == -1:
            self.length_budget = len(self.required_words())
        if self.length_budget is not None and not (isinstance(self.length_budget, int) and self.length_budget >= 1):
            raise ValueError(f"length_budget must be a positive int, -1 or None, got {self.length_budget!r}")
        n_obj = self.k + (self.length_budget is not None)
        scales = self.scales if self.scales is not None else [1.0] * n_obj
        # checked before float(): a null entry made float() raise TypeError, reported as "takes options [...]"
        if (
            not isinstance(scales, (list, tuple))
            or len(scales) != n_obj
            or any(not (is_real(s) and s > 0) for s in scales)
        ):
            raise ValueError(f"scales must be {n_obj} positive numbers (word rules, then length), got {self.scales!r}")
        self.scales = [float(s) for s in scales]
        if not (isinstance(self.filler_max, int) and 0 <= self.filler_max <= 32):
            raise ValueError(f"filler_max must be an int in 0..32, got {self.filler_max!r}")
        if not (isinstance(self.correlation, (int, float)) and 0.0 <= self.correlation < 1.0):
            raise ValueError(f"correlation must be in [0, 1), got {self.correlation!r}")
        self._funcs = self._build_reward_funcs()  # built once: `score` asks for them per sample

    def _per_rule(self, name: str, values: Any, default: list) -> list:
        if values is None:
            return default
        if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != self.k:
            raise ValueError(f"{name} must be a list of k={self.k} values, got {values!r}")
        return list(values)

    # --- rules ---------------------------------------------------------------------------------------------------

    def copies(self, j: int) -> int:
        return 1 if self.kinds[j] == "binary" else self.repeat

    def required_words(self) -> list[str]:
        """The gold reply's words: each rule's code word, as many copies as it asks for, in rule order."""
        return [WORDS[j] for j in range(self.k) for _ in range(self.copies(j))]

    @property
    def reward_funcs(self) -> list[RewardFn]:
        return list(self._funcs)

    def _build_reward_funcs(self) -> list[RewardFn]:
        funcs = [
            RewardFn(WORDS[j], _score_word, columns=(), low=0, high=self.scales[j], word=WORDS[j],
                     repeat=self.copies(j), scale=self.scales[j])
            for j in range(self.k)
        ]  # fmt: skip
        if self.length_budget is not None:
            scale = self.scales[-1]
            funcs.append(
                RewardFn("length", _score_length, columns=(), low=0, high=scale, budget=self.length_budget, scale=scale)
            )
        return funcs

    def rules_text(self) -> str:
        rules = ", ".join(WORDS[j] + (f" x{self.repeat}" if self.kinds[j] == "partial" else "") for j in range(self.k))
        budget = f"; at most {self.length_budget} words" if self.length_budget is not None else ""
        return f"use {rules}{budget}"

    def verl_ground_truth(self, row: dict) -> str:
        return self.rules_text()  # the rules are the task's options (the same for every row); for the record only

    # --- data ----------------------------------------------------------------------------------------------------

    def _problems(self, n: int, seed: int, split: str, salt: str):
        rng = random.Random(f"constraints/{salt}/{seed}/{split}")
        out = []
        while len(out) < n:
            topic, number = rng.choice(TOPICS), rng.randrange(1000)
            if in_split(f"{topic}-{number}", split):
                out.append((topic, number, rng))
        return out

    def _prompt(self, topic: str, number: int, chat: bool):
        text = f"{topic} {number}: {self.rules_text()}"
        return as_chat(text, "user") if chat else text + "\n"

    def _records(self, n: int, seed: int, split: str, chat: bool, demo: bool) -> list[dict]:
        gold = " ".join(self.required_words())
        records = []
        for topic, number, rng in self._problems(n, seed, split, "demo" if demo else "gold"):
            completion = self._demonstration(rng) if demo else gold
            records.append(
                {
                    "prompt": self._prompt(topic, number, chat),
                    "completion": as_chat(completion, "assistant") if chat else completion,
                }
            )
        return records

    def _demonstration(self, rng: random.Random) -> str:
        """One imperfect reply: rule j met with probability rates[j] (copula-correlated), 0..filler_max fillers."""
        normal = statistics.NormalDist()
        common = rng.gauss(0.0, 1.0)
        rho = self.correlation
        words: list[str] = []
        for j in range(self.k):
            u = normal.cdf(math.sqrt(rho) * common + math.sqrt(1.0 - rho) * rng.gauss(0.0, 1.0))
            want = self.copies(j)
            # a partial rule that is not met gets 0..repeat-1 copies (partial credit), a binary one none
            count = want if u < self.rates[j] else (rng.randrange(want) if want > 1 else 0)
            words += [WORDS[j]] * count
        for _ in range(rng.randint(0, self.filler_max)):
            words.insert(rng.randint(0, len(words)), rng.choice(FILLERS))
        return " ".join(words)

    def generate(self, n: int, seed: int = 0, split: str = "train", chat: bool = False):
        """`n` prompts with the gold completion (every rule met, shortest reply). Columns: prompt, completion."""
        return to_dataset(self._records(n, seed, split, chat, demo=False))

    def demonstrations(self, n: int, seed: int = 0, chat: bool = False):
        """`n` imperfect demonstrations from the train split for the SFT warm start: rule j met with probability
        `rates[j]`, fillers as configured. Deterministic in (n, seed, options)."""
        return to_dataset(self._records(n, seed, "train", chat, demo=True))

    def load(self, path: str, chat: bool | None = None):
        """Prompts from the task's own files (`.jsonl`/`.json`/`.parquet`, e.g. written by `generate(...).to_json`
        or `to_verl(...)`): rows with a `prompt` (string or chat messages) and optionally a `completion`.
        A row without a usable prompt raises one error naming the file and the row."""
        records = []
        for i, row in enumerate(read_records(path), start=1):
            prompt = row.get("prompt") if isinstance(row, dict) else None
            text = prompt_text(prompt) if prompt is not None else ""
            if not text.strip():
                raise ValueError(f"{path}: row {i}: missing or empty 'prompt'")
            as_messages = isinstance(prompt, list) if chat is None else chat
            prompt = as_chat(text.rstrip("\n"), "user") if as_messages else text.rstrip("\n") + "\n"
            completion = row.get("completion") or (row.get("extra_info") or {}).get("completion")
            gold = completion_text(completion) if completion is not None else None
            records.append({"prompt": prompt, "completion": gold or " ".join(self.required_words())})
        return to_dataset(records)


def _default_rates(k: int) -> list[float]:
    """Warm-start rates evenly from 0.6 (easy) down to 0.1 (hard)."""
    return [0.6] if k == 1 else [round(0.6 - 0.5 * j / (k - 1), 3) for j in range(k)]
