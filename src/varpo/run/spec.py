"""Run configuration: one flat namespace of ``RunSpec`` fields (model, task, data, warm start, evaluation) and
:class:`~varpo.trl.VarpoGRPOConfig` fields (everything the trainer does).

YAML files and CLI ``key=value`` overrides use the same keys, the dataclass field names; values are coerced to the
field's declared type. An unknown key fails with one line listing the closest known keys, so a typo never becomes a
silently ignored option.

Validation lives in three places, all one-line ``ValueError``s that name the field: ``RunSpec.__post_init__``
(each RunSpec value on its own), ``VarpoGRPOConfig.__post_init__`` (each trainer value and their combinations) and
:func:`validate` (what needs both or the machine: one weight/offset per reward function of the task, the files and
models the run will read). :func:`validate` is what ``varpo train --dry-run``, ``varpo sweep --dry-run`` and every
real run call first, so a dry run rejects exactly what a real run would reject, before any model is built.

The type conversion of values lives in :mod:`varpo.run.coercion`, the checks of the files and models a run names in
:mod:`varpo.run.sources` (:func:`check_sources`, importable from here too).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from varpo.checks import is_int, is_real
from varpo.run.coercion import coerce_value
from varpo.run.sources import check_sources
from varpo.schedules import parse_schedule
from varpo.trl.config import VarpoGRPOConfig


@dataclass
class RunSpec:
    """What a run trains and evaluates on (the trainer's own options live in VarpoGRPOConfig)."""

    model: str = field(default="builtin:tiny", metadata={"help": "builtin:tiny, a local model directory or a hub id."})
    tiny: dict = field(default_factory=dict, metadata={"help": "builtin:tiny architecture overrides (TinySpec)."})
    task: str = field(
        default="toolcall", metadata={"help": "varpo.tasks task name ('custom' with reward_funcs: your own rewards)."}
    )
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Your own TRL reward functions as module:function import paths (task 'custom'; data: train_file)."
        },
    )
    task_options: dict = field(default_factory=dict, metadata={"help": "Keyword options of get_task()."})
    train_file: str | None = field(default=None, metadata={"help": "User training data (task.load); else generated."})
    load_options: dict = field(
        default_factory=dict, metadata={"help": "Keyword options of task.load() (layout, columns, split, name)."}
    )
    train_prompts: int = field(default=512, metadata={"help": "Generated training prompts."})
    task_seed: int = field(default=0, metadata={"help": "Seed of the generated data (train, SFT demos, eval)."})
    warm_start: str | None = field(
        default=None, metadata={"help": "'sft': SFT the model first (cached); a path: start from that model."}
    )
    sft_demos: int = field(default=512, metadata={"help": "SFT: gold demonstrations (from the train split)."})
    sft_corrupt_fraction: float = field(
        default=0.3, metadata={"help": "SFT: fraction of demonstrations with format or value errors."}
    )
    sft_epochs: float = field(default=2.0, metadata={"help": "SFT: epochs over the demonstrations."})
    sft_learning_rate: float = field(default=3e-3, metadata={"help": "SFT: learning rate."})
    sft_batch_size: int = field(default=16, metadata={"help": "SFT: batch size."})
    eval_file: str | None = field(default=None, metadata={"help": "User evaluation data; else held-out generated."})
    eval_prompts: int = field(default=128, metadata={"help": "Held-out prompts for evaluation (test split)."})
    eval_k: int = field(default=4, metadata={"help": "Samples per prompt for avg@k."})
    eval_temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature for evaluation (default: the training temperature)."}
    )
    eval_batch_size: int = field(default=128, metadata={"help": "Sequences generated at once during evaluation."})
    num_threads: int = field(
        default=1,
        metadata={"help": "torch CPU threads (1 is fastest for tiny models on a shared machine; 0: torch default)."},
    )

    def __post_init__(self) -> None:
        """Each value on its own (types, ranges, the task and its options); one-line ValueError naming the field.
        What depends on the trainer config or on files is checked by :func:`validate`."""
        for name in ("model", "task"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                _invalid(name, getattr(self, name), "a non-empty string")
        for name in ("tiny", "task_options", "load_options"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                _invalid(name, value, "a mapping of option names (strings) to values")
        for name in ("train_file", "eval_file", "warm_start"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                _invalid(name, value, "a non-empty string or null")
        if not isinstance(self.reward_funcs, list) or not all(isinstance(p, str) for p in self.reward_funcs):
            _invalid("reward_funcs", self.reward_funcs, "a list of module:function import paths")
        if self.reward_funcs and self.task != "custom":
            _invalid("task", self.task, "custom (or leave task unset) with reward_funcs")
        if self.task == "custom" and not self.train_file:
            _invalid("train_file", self.train_file, "your data file (task 'custom' has no generator)")
        for name, low in (
            ("train_prompts", 1),
            ("sft_demos", 1),
            ("sft_batch_size", 1),
            ("eval_prompts", 1),
            ("eval_k", 1),
            ("eval_batch_size", 1),
            ("num_threads", 0),
        ):
            value = getattr(self, name)
            if not is_int(value) or value < low:
                _invalid(name, value, f"an int >= {low}")
        if not is_int(self.task_seed):
            _invalid("task_seed", self.task_seed, "an int")
        _bounded("sft_corrupt_fraction", self.sft_corrupt_fraction, "a number in [0, 1]", lambda v: 0 <= v <= 1)
        _bounded("sft_epochs", self.sft_epochs, "a finite number > 0", lambda v: v > 0)
        _bounded("sft_learning_rate", self.sft_learning_rate, "a finite number > 0", lambda v: v > 0)
        if self.eval_temperature is not None:
            _bounded("eval_temperature", self.eval_temperature, "a finite number > 0 or null", lambda v: v > 0)
        self.make_task()

    def make_task(self, **extra: Any):
        """The configured task (``varpo.tasks.get_task(task, **task_options, **extra)``); a bad name or option is a
        one-line ValueError naming ``task`` or ``task_options``."""
        import varpo.tasks
        from varpo.tasks.custom import RewardFuncsError

        if self.task not in varpo.tasks.task_names():
            _invalid("task", self.task, " | ".join(varpo.tasks.TASKS))
        if self.task == "custom":
            extra = {
                "rewards": self.reward_funcs,
                "data_file": self.train_file,
                "load_options": self.load_options,
                **extra,
            }
        try:
            return varpo.tasks.get_task(self.task, **{**self.task_options, **extra})
        except RewardFuncsError:
            raise
        except (TypeError, ValueError) as err:
            hint = _option_hint(self.task_options, varpo.tasks.TASKS[self.task])
            raise ValueError(
                f"task_options={self.task_options!r} is invalid for task {self.task!r}{hint}: {err}"
            ) from None


def _option_hint(options: dict, cls: type) -> str:
    """`` (did you mean: max_token -> max_tokens?)`` for misspelt task options; empty when none is close."""
    import dataclasses
    import difflib

    valid = [f.name for f in dataclasses.fields(cls) if f.init] if dataclasses.is_dataclass(cls) else []
    hints = [f"{k} -> {m[0]}" for k in options if k not in valid for m in [difflib.get_close_matches(k, valid, 1)] if m]
    return f" (did you mean: {', '.join(hints)}?)" if hints else ""


def _invalid(name: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ValueError(f"{name}={value!r} is invalid; allowed: {allowed}")


def _bounded(name: str, value: Any, allowed: str, ok) -> None:
    if not is_real(value) or not ok(value):
        _invalid(name, value, allowed)


_RUN_KEYS = {f.name for f in dataclasses.fields(RunSpec)}
_TRAIN_KEYS = {f.name for f in dataclasses.fields(VarpoGRPOConfig) if f.init}


def known_keys() -> list[str]:
    return sorted(_RUN_KEYS | _TRAIN_KEYS)


def _type_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_HINTS: dict[str, Any] = {}


def hint(key: str) -> Any:
    if not _HINTS:
        _HINTS.update(_type_hints(VarpoGRPOConfig))
        _HINTS.update(_type_hints(RunSpec))
    return _HINTS[key]


def check_key(key: str) -> None:
    if key in _RUN_KEYS or key in _TRAIN_KEYS:
        return
    close = difflib.get_close_matches(key, known_keys(), n=4, cutoff=0.6)
    suggestion = f"; did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown config key {key!r}{suggestion}")


def coerce(key: str, value: Any, cli: bool = False) -> Any:
    """``value`` converted to the declared type of field ``key`` (:func:`varpo.run.coercion.coerce_value`).

    A CLI string is read as YAML first (numbers, booleans, lists, ``null``), falling back to the literal string,
    so ``save_strategy=no`` stays "no" while ``bf16=false`` becomes False.
    """
    check_key(key)
    return coerce_value(key, value, hint(key), cli)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: coerced value}``."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"override {item!r} is invalid; expected key=value")
        out[key] = coerce(key, raw, cli=True)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file -> ``{key: coerced value}``; an unreadable file, a YAML syntax error, a non-mapping or a
    non-string key is a one-line ValueError naming the file (and line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ValueError(f"config file {str(path)!r} cannot be read: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ValueError(f"config file {str(path)!r}: YAML syntax error{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r}: expected a mapping of config keys at the top level")
    for key in data:
        if not isinstance(key, str):
            raise ValueError(f"config file {str(path)!r}: config key {key!r} is not a string (a field name)")
    return {key: coerce(key, value) for key, value in data.items()}


@dataclass
class Resolved:
    """A run's configuration split by owner: ``spec`` (RunSpec) and ``train`` (VarpoGRPOConfig keyword args)."""

    spec: RunSpec
    train: dict[str, Any]
    source: str | None = None

    def trainer_config(self, **extra: Any) -> VarpoGRPOConfig:
        return VarpoGRPOConfig(**{**self.train, **extra})

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.spec), **self.train}


def resolve(values: dict[str, Any], source: str | None = None, default_output: str | None = None) -> Resolved:
    """Split a flat key -> value mapping into a RunSpec and trainer keyword arguments."""
    for key in values:
        check_key(key)
    if values.get("reward_funcs") and "task" not in values:
        values = {**values, "task": "custom"}
    spec = RunSpec(**{k: v for k, v in values.items() if k in _RUN_KEYS})  # validates each RunSpec value
    train = {k: v for k, v in values.items() if k in _TRAIN_KEYS and k not in _RUN_KEYS}
    if "output_dir" not in train and default_output:
        train["output_dir"] = default_output
    return Resolved(spec, train, source)


def load_config(path: str | Path | None, overrides: list[str] | dict[str, Any] = ()) -> Resolved:
    """YAML file (optional) + overrides -> :class:`Resolved`; output_dir defaults to ``runs/train/<file stem>``
    (under ``runs/train/`` so it can never be ``varpo demo``'s ``runs/demo/`` or a sweep's ``runs/sweeps/``)."""
    values = load_yaml(path) if path else {}
    values.update(overrides if isinstance(overrides, dict) else parse_overrides(list(overrides)))
    default_output = f"runs/train/{Path(path).stem}" if path else "runs/train/default"
    return resolve(values, str(path) if path else None, default_output)


def cpu_defaults(train: dict) -> dict:
    """``use_cpu`` on a machine without CUDA and no remote reporting unless asked for."""
    import torch

    out = dict(train)
    if not torch.cuda.is_available():
        out.setdefault("use_cpu", True)
    out.setdefault("report_to", "none")
    return out


@dataclass
class Checked:
    """What :func:`validate` built: the trainer config, the task, and (dry run) the checks it had to skip."""

    args: VarpoGRPOConfig
    task: Any
    skipped: dict[str, str] = field(default_factory=dict)  # field -> why it could not be checked here


def validate(resolved: Resolved, *, dry_run: bool = False) -> Checked:
    """Every check a real run makes before it builds anything; raises a one-line ValueError naming the field.

    The trainer config (``VarpoGRPOConfig.__post_init__``), one ``reward_weights`` / ``saw_offsets`` entry and one
    weight per point of ``reward_weight_schedule`` per reward function of the task, the judge endpoint of a judged task (URL and model; reachability is the dry run's
    note, not a check), and the files and models the run reads (:func:`check_sources`). With ``dry_run``, a hub
    dataset or hub model that cannot be looked up here (HF_HUB_OFFLINE=1, not cached) or a relative data path not
    copied here yet is recorded in ``skipped`` instead of failing; an absolute path that does not exist, and anything that cannot work anywhere (a directory or
    wrong file type as data, a file as a model, a warm start that is neither ``sft``, a model directory nor a hub
    id) fails in both modes.
    """
    args = resolved.trainer_config(**cpu_defaults(resolved.train))
    spec = resolved.spec
    task = spec.make_task()
    names = task.reward_names
    for name in ("reward_weights", "saw_offsets"):
        value = getattr(args, name)
        if value is not None and len(value) != len(names):
            _invalid(name, value, f"{len(names)} numbers, one per reward function of task {spec.task!r}: {names}")
    parse_schedule(args.reward_weight_schedule, len(names))  # the trainer's own check: K = its reward functions
    judge = getattr(task, "judge", None)
    if judge is not None and hasattr(judge.backend, "base_url"):  # the OpenAI-compatible judge's endpoint
        from varpo.judge.backends import check_endpoint

        check_endpoint(judge.backend.base_url, judge.backend.model)
    skipped = check_sources(spec, dry_run=dry_run)
    return Checked(args, task, skipped)


def digest(obj: Any) -> str:
    """Short stable hash of a JSON-able object (cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
