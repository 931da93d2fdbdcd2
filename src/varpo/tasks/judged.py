"""Judge-scored generation (`judge` task): K named dimensions scored by ONE judge call per sample, plus an optional
rule-based `length`. SAW's Reddit TL;DR set-up is ``judge_template: tldr`` with ``judge_dimensions: [quality,
conciseness]`` and the human summary in a ``reference`` column.

* ``<dimension>`` ∈ [0, 1]: the judge's integer score s ∈ [low, high] (default ``judge_score_range`` [1, 10]),
  normalised ``(s - low) / (high - low)`` (:class:`varpo.judge.ScoreScheme`). None when the judgment failed or the
  reply has no valid score for that dimension.
* ``length`` ∈ (0, 1] (when ``max_words`` is set): 1 within ``max_words`` words, ``max_words / words`` beyond.

Data: :meth:`JudgeTask.load` reads any file with a prompt column and optional reference column (TL;DR files such as
CarperAI/openai_summarize_tldr: ``prompt``, ``label`` -> ``reference_key: label``); :meth:`JudgeTask.generate`
builds synthetic posts to summarise (reference: the post's first sentence) for CPU runs and tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from varpo.judge.options import JudgeOptions
from varpo.judge.schemes import ScoreScheme, parse_dimensions
from varpo.tasks.base import Task, in_split
from varpo.tasks.io import get_field, read_records, to_dataset
from varpo.tasks.judged_common import length_reward, to_verl_with_prompt
from varpo.text import as_chat

PROMPT = "Summarize the following post in one sentence.\n\nPOST: {post}\n\nTL;DR:"
_OPENERS = [
    "My landlord wants to raise the rent by 30% next month",
    "I found out my best friend has been lying about her job",
    "Our team lead takes credit for everyone's work",
    "I adopted a rescue dog who is scared of men",
    "My parents want me to move back home after college",
    "I got two job offers and cannot decide between them",
    "My roommate never cleans the kitchen",
    "I accidentally sent a private message to the whole group chat",
]
_FILLER = [
    "It has been going on for a while now.",
    "I have tried talking about it but nothing changes.",
    "Everyone I ask gives me different advice.",
    "Honestly it is starting to affect my sleep.",
    "I do not want to overreact, but it bothers me.",
    "Any advice would be appreciated.",
]


@dataclass
class JudgeTask(JudgeOptions, Task):
    """Options: ``judge_dimensions`` (names, "name:low:high" strings or {name, low, high, description}),
    ``judge_score_range`` (default range), ``max_words`` (rule-based length reward; None: none), and the
    ``judge_*`` options (default template: ``scores``)."""

    name = "judge"
    judge_dimensions: list = field(default_factory=lambda: ["quality", "conciseness"])
    judge_score_range: list = field(default_factory=lambda: [1, 10])
    max_words: int | None = None

    def __post_init__(self) -> None:
        self.scheme = ScoreScheme(parse_dimensions(self.judge_dimensions, self.judge_score_range))
        self.judge = self.build_judge(self.scheme, "scores")
        self._rule = [length_reward(self.max_words)] if self.max_words is not None else []

    @property
    def reward_funcs(self):
        return [*self.judge.reward_funcs, *self._rule]

    def verl_ground_truth(self, row: dict) -> str:
        return row.get("reference", "")

    def to_verl(self, ds, data_source: str | None = None):
        return to_verl_with_prompt(ds, super().to_verl, data_source)

    def generate(self, n: int, seed: int = 0, split: str = "train", chat: bool = False):
        """`n` synthetic posts to summarise. Columns: prompt, completion (= reference), reference."""
        rng = random.Random(f"judge/{seed}/{split}")
        records = []
        while len(records) < n:
            opener = rng.choice(_OPENERS)
            post = " ".join([opener + "."] + rng.sample(_FILLER, 3))
            if not in_split(post, split):
                continue
            text = PROMPT.format(post=post)
            records.append(
                {
                    "prompt": as_chat(text, "user") if chat else text,
                    "completion": as_chat(opener, "assistant") if chat else " " + opener,
                    "reference": opener,
                }
            )
        return to_dataset(records)

    def load(
        self,
        path: str,
        prompt_key: str = "prompt",
        reference_key: str | None = None,
        split: str = "train",
        name: str | None = None,
        limit: int | None = None,
    ):
        """Rows with a prompt (text or chat messages; dotted keys reach nested fields) and, if ``reference_key`` is
        given, a reference answer (column ``reference``, what ``$reference`` in the template reads)."""
        rows = read_records(path, split=split, name=name)
        if limit is not None:
            rows = rows[:limit]
        records = []
        for i, row in enumerate(rows):
            prompt = get_field(row, prompt_key)
            if not (isinstance(prompt, str) or isinstance(prompt, list)) or not prompt:
                raise ValueError(f"{path}: row {i}: no prompt under {prompt_key!r}")
            record = {"prompt": prompt}
            if reference_key:
                ref = get_field(row, reference_key)
                if not isinstance(ref, str):
                    raise ValueError(f"{path}: row {i}: no string reference under {reference_key!r}")
                record["reference"] = ref
            records.append(record)
        missing = sorted(set(self.judge.columns) - set(records[0] if records else {}))
        if missing:
            raise ValueError(f"{path}: the judge template needs column(s) {missing} (set reference_key=...)")
        return to_dataset(records)
