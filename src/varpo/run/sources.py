"""The files and models a run names: each must exist and be of the right kind before anything is built.

:func:`check_sources` is the last step of :func:`varpo.run.spec.validate`: data files (``.jsonl``/``.json``/
``.parquet``, a saved dataset directory or a hub dataset), the model and the warm start (``builtin:tiny``, a local
model directory with a ``config.json`` or a hub id; offline, a hub id must be in the local cache). A dry run skips
what only the target machine can have (relative paths, uncached hub ids) and says why.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _path_like(value: str) -> bool:
    """A value that can only mean a local path (a hub id is ``name`` or ``org/name``)."""
    return value.startswith(("/", ".", "~")) or value.count("/") > 1 or os.sep != "/" and os.sep in value


def check_sources(spec: Any, *, dry_run: bool = False) -> dict[str, str]:
    """The files and models ``spec`` (a :class:`varpo.run.spec.RunSpec`: ``train_file``, ``eval_file``, ``model``,
    ``warm_start``) names exist and have the right kind; returns ``{field: reason}`` of what a dry run skipped (see
    :func:`varpo.run.spec.validate`)."""
    from varpo import models

    skipped: dict[str, str] = {}
    for name in ("train_file", "eval_file"):
        source = getattr(spec, name)
        if source is None:
            continue
        path = Path(source).expanduser()
        if path.is_file() and path.suffix.lower() not in _DATA_SUFFIXES:
            allowed = f"a {', '.join(_DATA_SUFFIXES)} file, a saved dataset directory or a hub dataset"
            raise ValueError(f"{name}={source!r} is invalid; allowed: {allowed}")
        if path.exists():
            continue
        if _path_like(source) or path.suffix.lower() in _DATA_SUFFIXES:
            if not dry_run or path.is_absolute() or source.startswith("~"):  # this machine's path: it is not there
                raise ValueError(f"{name}={source!r}: no such file or directory")
            skipped[name] = f"{source} not found here (a relative path; a real run fails without it)"
        elif dry_run and models.offline():
            skipped[name] = f"hub dataset {source} not checked (HF_HUB_OFFLINE=1; loaded at train time)"
    for name in ("model", "warm_start"):
        source = getattr(spec, name)
        if (
            source is None
            or (name == "model" and source == models.BUILTIN_TINY)
            or (name == "warm_start" and source == "sft")
        ):
            continue
        if source.startswith("builtin:"):
            allowed = f"{models.BUILTIN_TINY}, a local model directory or a hub id"
            raise ValueError(f"{name}={source!r} is invalid; allowed: {allowed}")
        allowed = ("'sft', null, " if name == "warm_start" else f"{models.BUILTIN_TINY}, ") + (
            "a local model directory or a hub id (org/name)"
        )
        path = Path(source).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise ValueError(f"{name}={source!r} is not a model directory (no config.json)")
            continue
        if _path_like(source) or not _HUB_ID.match(source):
            raise ValueError(f"{name}={source!r}: no such model directory; allowed: {allowed}")
        if models.offline() and not _hub_cached(source):
            if "/" not in source or not dry_run:
                raise ValueError(
                    f"{name}={source!r} is neither a local model directory nor in the local HF cache "
                    f"(HF_HUB_OFFLINE=1); allowed: {allowed}"
                )
            skipped[name] = f"hub model {source} not in the local HF cache (HF_HUB_OFFLINE=1)"
    return skipped


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid id or cache layout: not cached
        return False
