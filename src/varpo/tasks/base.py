"""What every task shares: named reward functions and the `Task` interface (text helpers: :mod:`varpo.text`).

A task is a dataset builder (`generate`, `load`) plus an ordered list of named reward functions. The order of
`Task.reward_funcs` is the column index K of the reward matrix the engines build, with the task's main objective
(accuracy / correctness) first.

Reward functions follow TRL's signature `fn(prompts, completions, **kwargs) -> list[float | None]`: dataset columns
arrive as keyword lists, anything else TRL passes (`completion_ids`, `trainer_state`, `log_extra`, `log_metric`,
unrelated columns) is ignored, and `None` means "not applicable to this sample" (TRL turns it into NaN).
"""

from __future__ import annotations

import abc
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from varpo.text import as_chat, completion_text

# One sample's scorer: (completion text, **row fields, **task options) -> float | None.
Scorer = Callable[..., "float | None"]
# One sample's success test: (value, completion text, **row fields) -> bool.
SuccessTest = Callable[..., bool]


class RewardFn:
    """A named, picklable reward function with TRL's signature, built from a one-sample scorer.

    `scorer(text, **fields, **options)` scores one completion; `fields` are the dataset `columns` it needs
    (required) plus `optional` ones passed only when present (e.g. TRL's `completion_ids`, or `prompt`).
    `low`/`high` are the reward's range; a sample *satisfies* the objective when its value reaches `high`
    (or when `success(value, text, **fields)` says so, for rewards whose maximum is not always reachable).
    Instances are module-level objects or carry only picklable options, so they pickle by reference to `scorer`
    and can be shipped to verl/Ray workers.
    """

    def __init__(
        self,
        name: str,
        scorer: Scorer,
        *,
        columns: Sequence[str],
        low: float,
        high: float,
        optional: Sequence[str] = (),
        success: SuccessTest | None = None,
        **options: Any,
    ) -> None:
        self.__name__ = name
        self.scorer = scorer
        self.columns = tuple(columns)
        self.optional = tuple(optional)
        self.low, self.high = float(low), float(high)
        self.success = success
        self.options = options

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"RewardFn({self.__name__!r}, range=[{self.low:g}, {self.high:g}]{opts})"

    def with_options(self, **options: Any) -> RewardFn:
        """A copy with some scorer options replaced (what `get_task(name, **options)` uses)."""
        return RewardFn(
            self.__name__,
            self.scorer,
            columns=self.columns,
            low=self.low,
            high=self.high,
            optional=self.optional,
            success=self.success,
            **{**self.options, **options},
        )

    def score(self, completion: Any, /, **row: Any) -> float | None:
        """Score one completion (string or chat messages) given its dataset row; unknown row keys are ignored."""
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise KeyError(f"reward {self.__name__!r} needs dataset column(s) {missing}; got {sorted(row)}")
        fields = {c: row[c] for c in self.columns + self.optional if c in row}
        value = self.scorer(completion_text(completion), **fields, **self.options)
        if value is None:
            return None
        value = float(value)
        # A reward must be a finite number in its declared range; anything else is a bug in the scorer.
        if not (math.isfinite(value) and self.low - 1e-9 <= value <= self.high + 1e-9):
            raise AssertionError(f"reward {self.__name__!r} produced {value!r} outside [{self.low}, {self.high}]")
        return value

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None, **kwargs: Any):
        """TRL reward-function entry point: one value (or None) per completion."""
        if completions is None:
            raise TypeError(f"reward {self.__name__!r} needs completions=")
        n = len(completions)
        wanted = {c: kwargs[c] for c in self.columns + self.optional if c in kwargs and kwargs[c] is not None}
        if prompts is not None and "prompt" in self.optional:
            wanted["prompt"] = prompts
        for c, values in wanted.items():
            if len(values) != n:
                raise ValueError(f"column {c!r} has {len(values)} values for {n} completions")
        return [self.score(completions[i], **{c: v[i] for c, v in wanted.items()}) for i in range(n)]

    def satisfied(self, value: float | None, completion: Any, /, **row: Any) -> bool | None:
        """Whether `value` (this reward's score of `completion`) counts as meeting the objective; None if N/A."""
        if value is None:
            return None
        if self.success is not None:
            fields = {c: row[c] for c in self.columns + self.optional if c in row}
            return bool(self.success(value, completion_text(completion), **fields))
        return value >= self.high - 1e-9


class Task(abc.ABC):
    """A verifiable task: data (`generate`, `load`) and ordered, named reward functions.

    Subclasses are dataclasses whose fields are the task options (`get_task(name, **options)`).
    """

    name: str = ""

    @property
    @abc.abstractmethod
    def reward_funcs(self) -> list[RewardFn]:
        """Reward functions in column order K; the main objective (accuracy / correctness) first."""

    @abc.abstractmethod
    def generate(self, n: int, seed: int = 0, split: str = "train", chat: bool = False):
        """`n` synthetic examples as a `datasets.Dataset` with "prompt", gold "completion" and the reward columns.

        Deterministic in (`n`, `seed`, `split`, task options). `split="test"` draws from a disjoint part of the
        problem space (chosen by a hash of each problem), so held-out prompts never occur in any train split.
        """

    @abc.abstractmethod
    def load(self, path: str, **layout: Any):
        """Examples from a user file (or HF dataset name) in one of the task's documented layouts."""

    @property
    def reward_names(self) -> list[str]:
        return [f.__name__ for f in self.reward_funcs]

    def score(self, completion: Any, /, **row: Any) -> dict[str, float | None]:
        """All rewards of one completion given its dataset row: `{reward name: value}` in column order."""
        return {f.__name__: f.score(completion, **row) for f in self.reward_funcs}

    def satisfied(self, completion: Any, /, **row: Any) -> dict[str, bool | None]:
        """Per objective, whether `completion` meets it (reward at its maximum; None where not applicable)."""
        return {f.__name__: f.satisfied(f.score(completion, **row), completion, **row) for f in self.reward_funcs}

    # --- verl layout ------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def verl_ground_truth(self, row: Mapping[str, Any]) -> Any:
        """The verl `reward_model.ground_truth` value for a dataset row, in the family's usual encoding (ToolRL:
        the gold reply; DAPO/GSM8K: the answer string; TinyZero: {"target", "numbers"})."""

    def to_verl(self, ds, data_source: str | None = None):
        """A dataset in verl's RL parquet layout: `data_source`, `prompt` (chat messages), `ability`,
        `reward_model` = {"style": "rule", "ground_truth"}, `extra_info` = {"index", "completion" (the gold)}.

        `task.to_verl(task.generate(n)).to_parquet(path)` writes a verl training file; `task.load(path)` reads
        it back, and `varpo.verl.rewards.compute_score` grades it."""
        from varpo.tasks.io import to_dataset

        records = []
        for i, row in enumerate(ds):
            prompt = row["prompt"] if isinstance(row["prompt"], list) else as_chat(row["prompt"], "user")
            records.append(
                {
                    "data_source": data_source or f"varpo/{self.name}",
                    "prompt": prompt,
                    "ability": self.name,
                    "reward_model": {"style": "rule", "ground_truth": self.verl_ground_truth(row)},
                    "extra_info": {"index": i, "completion": completion_text(row["completion"])},
                }
            )
        return to_dataset(records)


SPLITS = ("train", "test")


def in_split(key: str, split: str, test_buckets: int = 1, buckets: int = 10) -> bool:
    """Hash-partition problems: `test` owns `test_buckets` of `buckets` crc32 buckets, `train` the rest.

    Keyed on the problem itself (not the sample index), so the splits stay disjoint for any `n` and `seed`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    is_test = zlib.crc32(key.encode("utf-8")) % buckets < test_buckets
    return is_test == (split == "test")
