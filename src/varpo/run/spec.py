"""Run configuration: one flat namespace of ``RunSpec`` fields (model, task, data, warm start, evaluation) and
:class:`~varpo.trl.VarpoGRPOConfig` fields (everything the trainer does).

YAML files and CLI ``key=value`` overrides use the same keys, the dataclass field names; values are coerced to the
field's declared type. An unknown key fails with one line listing the closest known keys, so a typo never becomes a
silently ignored option.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from varpo.trl.config import VarpoGRPOConfig


@dataclass
class RunSpec:
    """What a run trains and evaluates on (the trainer's own options live in VarpoGRPOConfig)."""

    model: str = field(default="builtin:tiny", metadata={"help": "builtin:tiny, a local model directory or a hub id."})
    tiny: dict = field(default_factory=dict, metadata={"help": "builtin:tiny architecture overrides (TinySpec)."})
    task: str = field(default="toolcall", metadata={"help": "varpo.tasks task name."})
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
    """``value`` converted to the declared type of field ``key``.

    A CLI string is read as YAML first (numbers, booleans, lists, ``null``), falling back to the literal string,
    so ``save_strategy=no`` stays "no" while ``bf16=false`` becomes False.
    """
    check_key(key)
    target = hint(key)
    candidates = [value]
    if cli and isinstance(value, str):
        try:
            candidates = [yaml.safe_load(value), value]
        except yaml.YAMLError:
            pass
    for candidate in candidates:
        try:
            return _convert(candidate, target)
        except (TypeError, ValueError):
            continue
    raise ValueError(f"{key}={value!r} is invalid; expected {_type_name(target)}")


def _type_name(target: Any) -> str:
    return getattr(target, "__name__", None) or str(target).replace("typing.", "")


def _convert(value: Any, target: Any) -> Any:
    origin = typing.get_origin(target)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(target)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option)
            except (TypeError, ValueError) as err:
                errors.append(err)
        raise ValueError(f"no type matches {value!r}")
    if target is Any or target is object:
        return value
    if origin is list or target is list:
        (item,) = typing.get_args(target) or (Any,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_convert(v, item) for v in value]
    if origin is dict or target is dict:
        if isinstance(value, dict):
            return value
        raise TypeError("expected a mapping")
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise TypeError("expected a bool")
    if target is int:
        if isinstance(value, bool):
            raise TypeError("expected an int")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, (int, str)):
            return int(value)
        raise TypeError("expected an int")
    if target is float:
        if isinstance(value, bool):
            raise TypeError("expected a number")
        return float(value)
    if target is str:
        if isinstance(value, (dict, list, bool)):
            raise TypeError("expected a string")
        return str(value)
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return target(value)
    return value


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
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys at the top level")
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
    spec = RunSpec(**{k: v for k, v in values.items() if k in _RUN_KEYS})
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


def digest(obj: Any) -> str:
    """Short stable hash of a JSON-able object (cache keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
