"""Read a sweep directory into tidy per-run records: final held-out scores, the eval curve, training metrics.

``eval.json`` (written by the runner, last and atomically) — the schema the report reads::

    {
      "objectives": {"correctness": 0.61, "format": 0.93},   # held-out score per objective
      "objective_order": ["correctness", "format"],           # optional: the task's reward order (else key order)
      "all": 0.58,                                            # fraction of samples meeting every objective
      "curve": [                                              # optional: held-out evals during training
        {"step": 0, "objectives": {...}, "all": 0.21}, ...    # (step 0 = the starting model)
      ],
      ...                                                     # anything else (k, prompts, wall time) is kept
    }

``metrics.jsonl`` (written by the engine): one JSON object per logged step with ``step``; training metrics under the
keys of :class:`MetricKeys` (templates with ``{name}`` = objective name; the first template present wins, so other
engines' spellings can be added without code changes). Records whose keys start with ``eval_`` are TRL's in-training
evaluation and are not training dynamics.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from varpo.checks import is_real
from varpo.experiments.evalfile import MISSING, read_eval
from varpo.experiments.grid import GridPoint
from varpo.experiments.sweep import EVAL_FILE, RUNS, load_manifest

METRICS_FILE = "metrics.jsonl"
UNREADABLE = "unreadable eval.json"


@dataclass(frozen=True)
class MetricKeys:
    """Where each training-dynamics series lives in ``metrics.jsonl`` (candidates, first present wins)."""

    reward_mean: tuple[str, ...] = ("reward/{name}/mean", "rewards/{name}/mean")
    reward_std: tuple[str, ...] = ("reward/{name}/std", "rewards/{name}/std")
    weight: tuple[str, ...] = ("adv/weight/{name}",)
    length: tuple[str, ...] = ("completions/mean_length", "completion_length")
    adv_magnitude: tuple[str, ...] = ("adv/adv_abs_mean",)
    #: mean over groups of the within-group reward std of one component (0 at every step: never varied in a group)
    group_std: tuple[str, ...] = ("adv/group_std_mean/{name}", "varpo/group_std_mean/{name}")  # TRL, verl


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Records of a metrics.jsonl, skipping blank, torn or corrupt lines; [] when the file is missing."""
    try:
        raw = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return []
    out = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def series(records: Sequence[dict], candidates: Sequence[str], name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of the first candidate key present in any training record (eval_* records excluded);
    non-numeric or missing values are dropped. Empty arrays when no candidate is present."""
    train = [r for r in records if not any(str(k).startswith("eval_") for k in r)]
    for template in candidates:
        key = template.format(name=name)
        pts = [(r.get("step"), r.get(key)) for r in train if _is_number(r.get(key)) and _is_number(r.get("step"))]
        if pts:
            steps, values = zip(*pts)
            return np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return np.zeros(0), np.zeros(0)


WORST = "worst"


def _worst(scores: dict) -> float:
    """min_k score_k (the worst-objective rate); NaN when no objective has a number."""
    values = [float(v) for v in scores.values() if _is_number(v)]
    return min(values) if values else math.nan


_is_number = is_real  # a finite real number, never a bool (varpo.checks)


@dataclass
class Run:
    """One grid point: its status and (when finished) its held-out scores."""

    point: GridPoint
    dir: Path
    status: str
    objectives: dict[str, float] = field(default_factory=dict)
    all_rate: float | None = None
    curve: list[dict] = field(default_factory=list)
    eval: dict = field(default_factory=dict)
    score_key: str = "objectives"  # which per-objective block of eval.json is "the score" (see SCORES)

    @property
    def finished(self) -> bool:
        return self.status == "done"

    @cached_property
    def metrics(self) -> list[dict]:
        return read_metrics(self.dir / METRICS_FILE)

    def score(self, objective: str) -> float:
        """Final held-out score of one objective ("all" = all-objectives rate, "worst" = the lowest objective's
        score); NaN when absent."""
        if objective == WORST:
            return _worst(self.objectives)
        value = self.all_rate if objective == "all" else self.objectives.get(objective)
        return float(value) if _is_number(value) else math.nan

    def curve_scores(self, objective: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, scores)`` of the eval curve for one objective ("all" allowed), sorted by step."""
        pts = []
        for c in self.curve:
            block = c.get(self.score_key) or {}
            if objective == WORST:
                value = _worst(block)
            else:
                value = c.get("all") if objective == "all" else block.get(objective)
            if _is_number(c.get("step")) and _is_number(value):
                pts.append((float(c["step"]), float(value)))
        pts.sort()
        if not pts:
            return np.zeros(0), np.zeros(0)
        steps, values = zip(*pts)
        return np.asarray(steps), np.asarray(values)


@dataclass
class Sweep:
    """All runs of a sweep directory in grid order, with the manifest."""

    dir: Path
    manifest: dict
    runs: list[Run]

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.finished]

    @property
    def unfinished(self) -> list[Run]:
        return [r for r in self.runs if not r.finished]

    @property
    def unreadable(self) -> list[Run]:
        """Runs whose eval.json exists but is not a valid result (empty, truncated, wrong schema, NaN score)."""
        return [r for r in self.runs if r.status.startswith(UNREADABLE)]

    @property
    def objectives(self) -> list[str]:
        """Objective names in the task's order (first finished run that has them)."""
        for r in self.finished:
            if r.objectives:
                return list(r.objectives)
        return []

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(r.point.variant for r in self.runs))

    @property
    def weights(self) -> list[tuple[float, ...]]:
        return list(dict.fromkeys(r.point.weights for r in self.runs))

    @property
    def seeds(self) -> list[int]:
        return list(dict.fromkeys(r.point.seed for r in self.runs))

    def select(self, variant: str | None = None, weights: tuple[float, ...] | None = None) -> list[Run]:
        """Finished runs, optionally of one variant and/or one weight vector."""
        return [
            r
            for r in self.finished
            if (variant is None or r.point.variant == variant) and (weights is None or r.point.weights == weights)
        ]

    @property
    def main_weights(self) -> tuple[float, ...] | None:
        """The weight vector closest to uniform (1/K each): the papers' Table 1/2 and dynamics use equal weights."""
        ws = self.weights
        if not ws:
            return None
        return min(ws, key=lambda w: sum((x / sum(w) - 1 / len(w)) ** 2 for x in w))


SCORES = {
    "objectives": "avg@k: the fraction of held-out samples that meet each objective (full marks)",
    "mean_reward": "mean reward per objective over the held-out samples (partial credit counts)",
    "pass_at_k": "pass@k: the fraction of held-out prompts with at least one of k samples meeting each objective",
}


def _in_task_order(objectives: dict[str, float], order) -> dict[str, float]:
    """``objectives`` in the task's reward order (``eval.json``'s ``objective_order``; its objects are key-sorted)."""
    if not isinstance(order, list):
        return objectives
    first = {k: objectives[k] for k in order if isinstance(k, str) and k in objectives}
    return {**first, **objectives}


def load_sweep(sweep_dir: str | os.PathLike, score: str = "objectives") -> Sweep:
    """Every run the manifest knows (latest grid first-seen order), with eval results for the finished ones.

    ``score`` picks the per-objective block of each ``eval.json`` (and of its curve points) that the report compares:
    one of :data:`SCORES`. The "all" column is always the all-objectives rate.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r}")
    sweep_dir = Path(sweep_dir)
    manifest = load_manifest(sweep_dir)
    runs = []
    entries = manifest.get("runs", {})
    for name in _grid_order(manifest):
        entry = entries[name]
        point = GridPoint.from_dict(entry["point"])
        rdir = sweep_dir / RUNS / name
        result, reason = read_eval(rdir / EVAL_FILE)
        if result is not None:
            objectives = _in_task_order(
                {k: float(v) for k, v in (result.get(score) or {}).items() if _is_number(v)},
                result.get("objective_order"),
            )
            all_rate = result.get("all")
            runs.append(
                Run(
                    point,
                    rdir,
                    "done",
                    objectives,
                    float(all_rate) if _is_number(all_rate) else None,
                    list(result.get("curve") or []),
                    result,
                    score,
                )
            )
        elif reason != MISSING:  # there is a file, and it is not a result: flagged, never a silent "missing"
            runs.append(Run(point, rdir, f"{UNREADABLE} ({reason})"))
        else:
            status = entry.get("status", "pending")
            runs.append(Run(point, rdir, "missing eval.json" if status == "done" else status))
    return Sweep(sweep_dir, manifest, runs)


def _grid_order(manifest: dict) -> list[str]:
    """Run names in the order the grid listed them (the manifest's run table is key-sorted on disk): points of the
    first invocation first, then points later invocations added, then any others."""
    names = [n for inv in manifest.get("invocations", []) for n in inv.get("points", [])]
    names += list(manifest.get("runs", {}))
    known = manifest.get("runs", {})
    return [n for n in dict.fromkeys(names) if n in known]
