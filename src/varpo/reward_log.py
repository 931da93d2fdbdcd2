"""Reward-matrix log: one compressed ``.npz`` file per generation batch, append-only.

Written by the TRL engine when ``log_reward_matrix`` is on (``<output_dir>/reward_log/``), read by the lab
(``varpo lab replay`` / ``varpo lab allocate --log``). Each file ``batch_<index:07d>.npz`` holds

* ``rewards [N, K]`` float32 (NaN = missing component), ``group_ids [N]`` int32,
* ``step`` (optimizer step when the batch was scored), ``names [K]``, ``weights [K]`` float64,
* optionally ``lengths [N]`` int32 (completion lengths in tokens).

A crash loses at most the file being written: files are written under a temporary name and renamed.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PATTERN = "batch_*.npz"


@dataclass(frozen=True)
class LoggedBatch:
    step: int
    rewards: np.ndarray  # [N, K] float32
    group_ids: np.ndarray  # [N] int32
    names: tuple[str, ...]
    weights: np.ndarray | None  # [K]
    lengths: np.ndarray | None  # [N]


def append(
    directory: str | os.PathLike,
    *,
    step: int,
    rewards,
    group_ids,
    names,
    weights=None,
    lengths=None,
) -> Path:
    """Write one batch as the next ``batch_<index>.npz`` in ``directory`` (created if missing)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    index = len(list(d.glob(PATTERN)))
    path = d / f"batch_{index:07d}.npz"
    r = np.asarray(rewards, dtype=np.float32)
    if r.ndim == 1:
        r = r[:, None]
    data = dict(
        step=np.int64(step),
        rewards=r,
        group_ids=np.asarray(group_ids, dtype=np.int32),
        names=np.asarray([str(n) for n in names]),
    )
    if weights is not None:
        data["weights"] = np.asarray(weights, dtype=np.float64)
    if lengths is not None:
        data["lengths"] = np.asarray(lengths, dtype=np.int32)
    tmp = d / f".{path.name}.tmp"
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **data)
    os.replace(tmp, path)
    return path


def read(directory: str | os.PathLike) -> list[LoggedBatch]:
    """All batches in index order; a malformed file raises one ``ValueError`` naming it and the field."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"reward log {d}: not a directory")
    out = []
    for path in sorted(d.glob(PATTERN)):
        try:
            with np.load(path, allow_pickle=False) as z:
                rewards = z["rewards"]
                ids = z["group_ids"]
                names = tuple(str(n) for n in z["names"])
                batch = LoggedBatch(
                    step=int(z["step"]),
                    rewards=rewards,
                    group_ids=ids,
                    names=names,
                    weights=z["weights"] if "weights" in z.files else None,
                    lengths=z["lengths"] if "lengths" in z.files else None,
                )
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:  # BadZipFile: a truncated file
            raise ValueError(f"reward log {path}: unreadable ({type(err).__name__}: {err})") from None
        if rewards.ndim != 2 or rewards.shape[1] != len(names) or ids.shape != (rewards.shape[0],):
            raise ValueError(
                f"reward log {path}: rewards {rewards.shape}, group_ids {ids.shape} and names {len(names)} disagree"
            )
        if batch.lengths is not None and batch.lengths.shape != ids.shape:
            raise ValueError(f"reward log {path}: lengths {batch.lengths.shape} vs group_ids {ids.shape}")
        if rewards.shape[0] == 0:
            raise ValueError(f"reward log {path}: holds 0 samples")
        if batch.weights is not None and batch.weights.shape != (len(names),):
            raise ValueError(f"reward log {path}: weights {batch.weights.shape} for K={len(names)} objectives {names}")
        if out and names != out[0].names:
            raise ValueError(f"reward log {path}: objectives {names} differ from the first file's {out[0].names}")
        out.append(batch)
    return out
