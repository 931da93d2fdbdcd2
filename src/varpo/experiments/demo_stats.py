"""The demo's numbers: per-method held-out rates with their uncertainty, and paired differences against the baseline.

Every run is one seed of one method, evaluated on the same held-out prompts (``eval_prompts`` x ``eval_k`` samples).
For a method, the rate of an objective is the mean over seeds of each run's rate. Its standard error is the larger of

* the between-seed s.e. (``sd over seeds / sqrt(S)``, which holds every source of noise: RL sampling, the evaluation
  sample, the machine's arithmetic), and
* the pooled sampling s.e. (``sqrt(mean_s p_s (1 - p_s) / n) / sqrt(S)`` with ``n`` = prompts x samples per run),

so that a few seeds that agree by chance cannot make an interval narrower than the evaluation sample allows. The
paired difference ``d_s = rate(method, s) - rate(baseline, s)`` (same seed, same warm start, same prompts) gets the
same treatment; a difference is *established* when ``|mean d| >= 3 s.e.``. The all-objectives rate is treated
like one more objective.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

ALL = "all objectives"
Z_ESTABLISHED = 3.0


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float
    n_seeds: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.se:.3f}"


def _sampling_var(p: float, n: int) -> float:
    return p * (1.0 - p) / max(n, 1)


def estimate(values: list[float], n_eval: int, *, paired_with: list[float] | None = None) -> Estimate:
    """Mean ± s.e. over seeds of ``values`` (or of ``values - paired_with``), per the module docstring."""
    if not values:
        return Estimate(math.nan, math.nan, 0)
    s = len(values)
    diffs = values if paired_with is None else [a - b for a, b in zip(values, paired_with, strict=True)]
    mean = sum(diffs) / s
    between = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (s - 1) / s) if s > 1 else math.inf
    samp = [_sampling_var(v, n_eval) for v in values]
    if paired_with is not None:
        samp = [a + _sampling_var(b, n_eval) for a, b in zip(samp, paired_with, strict=True)]
    within = math.sqrt(sum(samp) / s / s)
    return Estimate(mean, max(between, within) if s > 1 else within, s)


def established(diff: Estimate) -> bool:
    return math.isfinite(diff.se) and diff.se > 0 and abs(diff.mean) >= Z_ESTABLISHED * diff.se


def load_runs(run_dirs: list[Path]) -> dict[str, dict[int, dict]]:
    """``{method: {seed: eval.json payload}}`` of the given run directories."""
    out: dict[str, dict[int, dict]] = {}
    for path in (Path(d) / "eval.json" for d in run_dirs):
        payload = json.loads(path.read_text())
        config = payload["config"]
        out.setdefault(config["advantage_method"], {})[int(config["seed"])] = payload
    return out


def rates(point: dict) -> dict[str, float]:
    """Per objective and for all objectives at once, the held-out rate of one evaluation (eval.json or a curve point)."""
    return {**point["objectives"], ALL: point["all"]}


def summarize(runs: dict[str, dict[int, dict]], baseline: str, n_eval: int) -> dict:
    """Per method and objective: the rate estimate; per non-baseline method: the paired difference and verdict."""
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in runs.values())))
    if not seeds:
        raise ValueError("no seed finished for every method")
    names = list(rates(runs[baseline][seeds[0]]))
    per_seed = {m: {o: [rates(runs[m][s])[o] for s in seeds] for o in names} for m in runs}  # [method][objective]
    table = {m: {o: estimate(per_seed[m][o], n_eval) for o in names} for m in runs}
    diffs = {
        m: {o: estimate(per_seed[m][o], n_eval, paired_with=per_seed[baseline][o]) for o in names}
        for m in runs
        if m != baseline
    }
    return {"seeds": seeds, "objectives": names, "rates": per_seed, "table": table, "diffs": diffs}


def verdict_lines(summary: dict, baseline: str) -> list[str]:
    """One line per method and objective: the paired difference and whether it is established."""
    lines = []
    for method, per_obj in summary["diffs"].items():
        for obj, d in per_obj.items():
            z = abs(d.mean) / d.se if d.se > 0 else (math.inf if d.mean else 0.0)
            if established(d):
                better = method if d.mean > 0 else baseline
                word = f"{better} is better (established, {z:.1f} s.e.)"
            elif d.se == 0:
                word = "no difference (identical on every seed and sample)"
            else:
                word = f"no established difference ({z:.1f} s.e. < {Z_ESTABLISHED:g})"
            lines.append(f"{obj}: {method} - {baseline} = {d.mean:+.3f} ± {d.se:.3f} -> {word}")
    return lines
