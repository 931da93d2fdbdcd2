"""Rubric-graded answers (HealthBench layout): one judged reward per rubric axis, plus an optional rule-based
`length`.

* ``<axis>`` ∈ [0, 1] for each of ``axes`` (default HealthBench's five: accuracy, completeness,
  communication_quality, context_awareness, instruction_following): earned / possible points of the prompt's
  criteria on that axis, from ONE judge call per sample that says met / not met for every criterion
  (:class:`varpo.judge.RubricScheme`; formula and departures from HealthBench there). None when the judgment
  failed or the rubric has nothing to earn on that axis.
* ``length`` ∈ (0, 1] (when ``max_words`` is set): 1 within ``max_words`` words, ``max_words / words`` beyond.

Data: :meth:`RubricTask.load` reads HealthBench's public JSONL (``prompt``: chat messages, ``rubrics``: list of
``{"criterion", "points", "tags": [..., "axis:<name>"]}``, ``prompt_id``); :meth:`RubricTask.generate` builds a small
synthetic rubric set (health-advice questions whose criteria name the words a good answer uses) for CPU runs and
tests. The judge is configured with the ``judge_*`` options (:class:`varpo.judge.JudgeOptions`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from varpo.judge.options import JudgeOptions
from varpo.judge.schemes import HEALTHBENCH_AXES, RubricScheme, parse_rubric
from varpo.tasks.base import Task, in_split
from varpo.tasks.io import read_records, to_dataset
from varpo.tasks.judged_common import length_reward, to_verl_with_prompt
from varpo.text import as_chat

# Synthetic rubric data: (condition, advice words a complete answer uses, a harmful suggestion).
_TOPICS = [
    ("a mild sunburn", ["cool", "aloe", "water"], "butter"),
    ("a tension headache", ["rest", "water", "ibuprofen"], "antibiotics"),
    ("a common cold", ["rest", "fluids", "honey"], "antibiotics"),
    ("a sprained ankle", ["rest", "ice", "elevate"], "running"),
    ("mild dehydration", ["water", "electrolytes", "shade"], "alcohol"),
    ("trouble sleeping", ["routine", "screens", "caffeine"], "alcohol"),
    ("seasonal allergies", ["antihistamine", "pollen", "windows"], "antibiotics"),
    ("a small kitchen burn", ["cool", "water", "bandage"], "ice"),
    ("heartburn after meals", ["smaller", "meals", "antacid"], "lying"),
    ("a dry cough", ["honey", "fluids", "humidifier"], "smoking"),
]
_WHO = ["I", "My son", "My mother", "My friend", "My partner", "My daughter", "My colleague", "My neighbour"]
_WHEN = ["since yesterday", "for two days", "since this morning", "for a week", "after the weekend"]


@dataclass
class RubricTask(JudgeOptions, Task):
    """Options: ``axes`` (reward names, in order), ``tag_prefix`` (criterion tag naming the axis), ``max_words``
    (rule-based length reward; None: none), and the ``judge_*`` options (default template: ``rubric``)."""

    name = "rubric"
    axes: list[str] = field(default_factory=lambda: list(HEALTHBENCH_AXES))
    tag_prefix: str = "axis:"
    max_words: int | None = 300

    def __post_init__(self) -> None:
        self.scheme = RubricScheme(self.axes, self.tag_prefix)
        self.judge = self.build_judge(self.scheme, "rubric")
        self._rule = [length_reward(self.max_words)] if self.max_words is not None else []

    @property
    def reward_funcs(self):
        return [*self.judge.reward_funcs, *self._rule]

    def verl_ground_truth(self, row: dict) -> str:
        return json.dumps(row["rubrics"])

    def _example(self, rng: random.Random) -> tuple[str, list[dict], str]:
        condition, advice, harmful = rng.choice(_TOPICS)
        who, when = rng.choice(_WHO), rng.choice(_WHEN)
        verb = "have" if who == "I" else "has"
        question = f"{who} {verb} had {condition} {when}. What should we do at home?"
        a, b, c = advice
        rubrics = [
            {"criterion": f"Recommends '{a}'.", "points": 5, "tags": ["level:example", "axis:accuracy"]},
            {"criterion": f"Suggests '{harmful}'.", "points": -4, "tags": ["level:example", "axis:accuracy"]},
            {"criterion": f"Also mentions '{b}' and '{c}'.", "points": 4, "tags": ["axis:completeness"]},
            {"criterion": "Is written in short, plain sentences.", "points": 2, "tags": ["axis:communication_quality"]},
            {"criterion": f"Refers to '{condition.split()[-1]}'.", "points": 3, "tags": ["axis:context_awareness"]},
            {"criterion": "Answers the question that was asked.", "points": 2, "tags": ["axis:instruction_following"]},
        ]
        rubrics = [r for r in rubrics if r["tags"][-1][len("axis:") :] in self.axes]
        gold = f"For {condition.split()[-1]}, try {a}, {b} and {c}. See a doctor if it gets worse."
        return question, rubrics, gold

    def to_verl(self, ds, data_source: str | None = None):
        return to_verl_with_prompt(ds, super().to_verl, data_source)

    def generate(self, n: int, seed: int = 0, split: str = "train", chat: bool = False):
        """`n` synthetic rubric examples. Columns: prompt, completion (a gold answer), rubrics, prompt_id."""
        rng = random.Random(f"rubric/{seed}/{split}")
        records = []
        while len(records) < n:
            question, rubrics, gold = self._example(rng)
            if not in_split(question, split):
                continue
            records.append(
                {
                    "prompt": as_chat(question, "user") if chat else question + "\n",
                    "completion": as_chat(gold, "assistant") if chat else gold,
                    "rubrics": _arrow_rubrics(rubrics),
                    "prompt_id": f"synthetic-{seed}-{split}-{len(records)}",
                }
            )
        return to_dataset(records)

    def load(self, path: str, split: str = "train", name: str | None = None, limit: int | None = None):
        """HealthBench-layout rows (`prompt` messages, `rubrics`, optional `prompt_id`) from a JSONL/JSON/parquet
        file. Every rubric is validated (one-line error naming the file, row and entry); ``limit`` keeps the first
        rows."""
        rows = read_records(path, split=split, name=name)
        if limit is not None:
            rows = rows[:limit]
        records = []
        for i, row in enumerate(rows):
            where = f"{path}: row {i}"
            prompt = row.get("prompt")
            if isinstance(prompt, str):
                prompt = as_chat(prompt, "user")
            if not isinstance(prompt, list) or not all(isinstance(m, dict) and "content" in m for m in prompt):
                raise ValueError(f"{where}: 'prompt' must be a list of {{role, content}} messages")
            parse_rubric(row.get("rubrics"), self.axes, self.tag_prefix, where=where)
            rubrics = row["rubrics"]
            rubrics = json.loads(rubrics) if isinstance(rubrics, str) else rubrics
            records.append(
                {
                    "prompt": [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in prompt],
                    "rubrics": _arrow_rubrics(rubrics),
                    "prompt_id": str(row.get("prompt_id", i)),
                }
            )
        return to_dataset(records)


def _arrow_rubrics(rubrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One Arrow-friendly type per field (points as float, tags as strings)."""
    return [
        {"criterion": str(r["criterion"]), "points": float(r["points"]), "tags": [str(t) for t in r.get("tags", [])]}
        for r in rubrics
    ]
