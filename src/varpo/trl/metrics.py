"""``metrics.jsonl``: one JSON object per logged step, durable across SIGKILL.

Each record is written with a single ``os.write`` on an ``O_APPEND`` descriptor, then ``fsync``-ed, so after a kill
at any point the file holds whole records plus at most one torn (unterminated) last line. :func:`read_metrics`
ignores such a line; :func:`repair_metrics` removes it and, on resume, also drops records newer than the checkpoint
being resumed (those steps are trained and logged again), so the file stays a single monotonic history.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from transformers import TrainerCallback

from varpo.checks import is_real

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "train_summary.json"
#: a key only the Trainer's end-of-training log has (``train_runtime``, ``train_loss``, ...: not a step's metrics)
_SUMMARY_KEY = "train_runtime"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """All complete records of a metrics file; [] if the file is missing. A torn or corrupt line, and a valid-JSON
    line that is not a record (a list, a number: a hand edit or another tool's output), is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.exists():
        return []
    records = []
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n"):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _step(record: dict) -> float | None:
    """A record's ``step`` as a number (0 when absent), None when it is not one (such a record cannot be placed)."""
    step = record.get("step", 0)
    return step if is_real(step) else None


def repair_metrics(path: str | os.PathLike, max_step: int | None = None) -> int:
    """Rewrite ``path`` keeping whole, parseable records (JSON objects with a numeric or no ``step``) with
    ``step <= max_step``; return the number kept."""
    path = Path(path)
    if not path.exists():
        return 0
    kept = [r for r in read_metrics(path) if (step := _step(r)) is not None and (max_step is None or step <= max_step)]
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(kept)


def _write_summary(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def update_summary(output_dir: str | os.PathLike, record: dict, step: int) -> Path:
    """Merge ``record`` into ``<output_dir>/train_summary.json`` (atomically replaced). The file's own content is
    kept only when it is this run's, written at ``step``; a run stopped before TRL's summary (or an older run's file
    left from before a resume) gets a fresh one, so the two never mix."""
    path = Path(output_dir) / SUMMARY_FILE
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    if not isinstance(current, dict) or current.get("step") != step:
        current = {"step": step}
    current.update({key: _clean(value) for key, value in record.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_summary(path, current)
    return path


class MetricsJSONLCallback(TrainerCallback):
    """Append every ``on_log`` payload (plus ``step``) to ``<output_dir>/metrics.jsonl``, flushed and fsync-ed;
    the Trainer's end-of-training summary (``train_runtime``, ``train_loss``, ...) goes to ``train_summary.json``
    instead, so no step appears twice in ``metrics.jsonl``, resumed or not.

    A fresh run (global step 0 at train start) starts a new file; a resumed run keeps the history up to the
    checkpoint's step.
    """

    def __init__(self, output_dir: str | os.PathLike | None = None) -> None:
        self.output_dir = output_dir
        self.path: Path | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path = Path(self.output_dir or args.output_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if state.global_step == 0:
            self.path.unlink(missing_ok=True)
        else:
            repair_metrics(self.path, max_step=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.path is None or not logs:
            return
        record = {"step": state.global_step, **{k: _clean(v) for k, v in logs.items()}}
        if _SUMMARY_KEY in logs:  # the end-of-training summary repeats the last step: its own file, replaced
            _write_summary(self.path.with_name(SUMMARY_FILE), record)
            return
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
