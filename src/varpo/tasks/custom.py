"""Your own rewards and data (``custom`` task): TRL reward functions named by import path, prompts from your file.

    reward_funcs: [my_rewards:correct, my_rewards:short]      # module:function, TRL's reward signature
    train_file: data/train.jsonl                               # .jsonl / .json / .parquet / saved dataset / hub id
    load_options: {columns: {prompt: question}}                # varpo/TRL column name -> your file's column

A reward function is anything TRL's ``GRPOTrainer`` accepts as a plain function:
``fn(prompts, completions, **kwargs) -> list[float | None]``, where the dataset's columns arrive as keyword lists.
The module is imported from the current directory or the Python path. The reward's name (its metric and report
column) is the function's ``__name__``.

Without an ``eval_file``, about one row in ten of the training file (chosen by a hash of its prompt, so the choice
does not depend on the order of the rows) is held out: it is never trained on and is what ``varpo eval`` and a
sweep's held-out scores use. An objective counts as met (the report's rates, pass@k) where its reward is at least
``success`` (task option; one number for every reward, or ``{name: threshold}``; default 1.0).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from varpo.tasks.base import Task, in_split
from varpo.tasks.io import get_field, read_records, to_dataset
from varpo.text import as_chat, completion_text, prompt_text


class RewardFuncsError(ValueError):
    """A ``reward_funcs`` entry that cannot be used (reported as it is, not as a task option error)."""


def import_reward(path: str) -> Callable[..., Any]:
    """The function named by ``module:function`` (``pkg.module:function``, or ``path/to/file.py:function``); any
    failure is a one-line ValueError naming the entry."""
    module_name, sep, attr = str(path).rpartition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise RewardFuncsError(
            f"reward_funcs entry {path!r} is invalid; expected module:function (e.g. my_rewards:accuracy)"
        )
    try:
        module = _import_module(module_name.strip())
    except Exception as err:  # noqa: BLE001 - any failure while importing the user's module is that entry's error
        message = " ".join(str(err).split()) or type(err).__name__
        raise RewardFuncsError(
            f"reward_funcs entry {path!r} cannot be imported: {type(err).__name__}: {message}"
        ) from None
    fn = module
    for part in attr.strip().split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise RewardFuncsError(f"reward_funcs entry {path!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise RewardFuncsError(f"reward_funcs entry {path!r} is not callable (a {type(fn).__name__})")
    return fn


def _import_module(name: str):
    """A module by dotted name (the current directory first on the path, as ``python -m`` has it) or by file."""
    if name.endswith(".py"):
        file = Path(name).expanduser().resolve()
        if not file.is_file():
            raise FileNotFoundError(f"no such file {name}")
        key = f"varpo_reward_{file.stem}_{abs(hash(str(file)))}"
        if key not in sys.modules:
            spec = importlib.util.spec_from_file_location(key, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[key]
                raise
        return sys.modules[key]
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `varpo` (the console script) does not put the current directory on it
    return importlib.import_module(name)


class ImportedReward:
    """A user's TRL reward function, also usable by :func:`varpo.tasks.evaluate` (one sample at a time)."""

    def __init__(self, path: str, success: float = 1.0) -> None:
        self.path = path
        self.fn = import_reward(path)
        self.__name__ = getattr(self.fn, "__name__", path.rpartition(":")[2])
        self.success = float(success)

    def __repr__(self) -> str:
        return f"ImportedReward({self.path!r})"

    def __reduce__(self):  # pickles by import path (Ray / subprocess workers import it again)
        return (ImportedReward, (self.path, self.success))

    def __call__(self, prompts=None, completions=None, **kwargs: Any):
        return self.fn(prompts=prompts, completions=completions, **kwargs)

    def score(self, completion: Any, /, **row: Any) -> float | None:
        """This reward of one completion given its dataset row (TRL's call with one prompt)."""
        prompt = row.get("prompt")
        if isinstance(prompt, list) and isinstance(completion, str):
            completion = as_chat(completion, "assistant")  # TRL passes chat completions for chat prompts
        columns = {k: [v] for k, v in row.items() if k != "prompt"}
        values = self.fn(prompts=[prompt], completions=[completion], **columns)
        if not isinstance(values, (list, tuple)) or len(values) != 1:
            raise ValueError(f"reward {self.__name__!r} ({self.path}) returned {values!r} for one completion")
        return None if values[0] is None else float(values[0])

    def satisfied(self, value: float | None, completion: Any, /, **row: Any) -> bool | None:
        return None if value is None else value >= self.success - 1e-9


@dataclass
class CustomTask(Task):
    """Options: ``rewards`` (``module:function`` paths; the run's ``reward_funcs``), ``data_file`` and
    ``load_options`` (the run's ``train_file`` and ``load_options``), ``success`` (see the module doc)."""

    name = "custom"
    rewards: list = field(default_factory=list)
    data_file: str | None = None
    load_options: dict = field(default_factory=dict)
    success: Any = 1.0

    def __post_init__(self) -> None:
        if not self.rewards:
            raise RewardFuncsError("task 'custom' needs reward_funcs (a list of module:function import paths)")
        thresholds = {str(k): v for k, v in self.success.items()} if isinstance(self.success, Mapping) else {}
        default = 1.0 if thresholds else float(self.success)
        self._funcs = []
        for path in self.rewards:
            fn = ImportedReward(path, default)
            fn.success = float(thresholds.pop(fn.__name__, default))
            self._funcs.append(fn)
        names = [f.__name__ for f in self._funcs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise RewardFuncsError(
                f"reward_funcs={self.rewards!r}: two functions are named {repeated[0]!r} (names must differ)"
            )
        if thresholds:
            raise ValueError(f"task_options success names {sorted(thresholds)}, which are not rewards of {names}")

    @property
    def reward_funcs(self) -> list[ImportedReward]:
        return list(self._funcs)

    def load(
        self,
        path: str,
        columns: Mapping[str, str] | None = None,
        split: str = "train",
        name: str | None = None,
        limit: int | None = None,
    ):
        """Every row of ``path``, with ``columns`` (``{varpo name: your column}``, dotted keys reach nested fields)
        renamed; the other columns are kept, and reach your reward functions as keyword lists. A ``prompt``
        (text or chat messages) is required; a ``completion`` (gold answer) is optional (SFT warm start)."""
        mapping = dict(columns or {})
        rows = read_records(path, split=split, name=name)[:limit]
        records = []
        for i, row in enumerate(rows, 1):
            record = dict(row)
            for target, source in mapping.items():
                value = get_field(row, source)
                if value is None:
                    raise ValueError(f"{path}, row {i}: no column {source!r} (load_options columns: {target})")
                record.pop(source, None)
                record[target] = value
            prompt = record.get("prompt")
            if not (isinstance(prompt, str) and prompt) and not isinstance(prompt, list):
                hint = "" if "prompt" in mapping else " (map yours with load_options: {columns: {prompt: <column>}})"
                raise ValueError(f"{path}, row {i}: no prompt column{hint}; columns: {sorted(row)}")
            records.append(record)
        return to_dataset(records)

    def held_out(self, ds, split: str):
        """The rows of ``ds`` in ``split``: "test" is about one row in ten (by a hash of the prompt), "train" the rest."""
        keep = self._split_rows(ds["prompt"], split)
        return ds if len(keep) == len(ds) else ds.select(keep)

    def _split_rows(self, prompts, split: str) -> list[int]:
        keep = [i for i, p in enumerate(prompts) if in_split(prompt_text(p), split)]
        if not keep:
            what = "held-out" if split == "test" else "training"
            raise ValueError(f"train_file={self.data_file!r} has no {what} rows ({len(prompts)} rows; set eval_file)")
        return keep

    def generate(self, n: int, seed: int = 0, split: str = "train", chat: bool = False):
        """Up to ``n`` rows of ``data_file`` in ``split`` (see :meth:`held_out`), in a ``seed``-shuffled order."""
        if not self.data_file:
            raise ValueError("task 'custom' reads its prompts from train_file; set train_file")
        rows = self.load(self.data_file, **self.load_options).to_list()
        keep = self._split_rows([r["prompt"] for r in rows], split)
        random.Random(seed).shuffle(keep)
        return to_dataset([{"completion": "", **rows[i]} for i in keep[:n]])

    def verl_ground_truth(self, row: Mapping[str, Any]) -> Any:
        return completion_text(row.get("completion", ""))
