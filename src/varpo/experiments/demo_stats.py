"""The demo's numbers, on the project's one statistical standard (:mod:`varpo.significance`).

A unit is a seed: its own SFT warm start (SFT seed = run seed) and one RL run per method, all evaluated on the same
held-out prompts (``eval_prompts`` x ``eval_k`` samples) at the final step.

* **Rate** of a method on an objective: the mean over seeds of each run's held-out rate. Its **s.e.** is
  ``unit_se(per-seed rates, per-seed prompt_cluster_se)``: the larger of the between-seed s.e. (every source of noise:
  warm start, RL sampling, evaluation sample) and the pooled prompt-clustered sampling s.e. (samples of one prompt are
  correlated, so the evaluation's prompts, not its samples, are its independent units).
* **Comparison** ``method - baseline``: :func:`varpo.significance.two_sample` — the difference of the means, its s.e.
  (the two rates' s.e. in quadrature), a 95 % t interval (``2S - 2`` df) and the exact two-sided permutation p over
  all ``C(2S, S)`` relabellings of the seeds' outcomes (``S = 4``: 70 relabellings, smallest p = 2/70 = 0.029).
  The two runs of a seed share a warm start (positively correlated); the unpaired test ignores that and is therefore
  conservative. A paired sign-flip test cannot reach p < 0.05 with fewer than 6 pairs (2/2^5 = 0.0625), which is why
  the demo uses the two-sample test on 4 + 4 runs.
* **Family** (what "established" is about): the pre-registered ``primary`` metrics only (docs/claims.md, DM3: the
  length budget). ``established`` = Holm-adjusted p < 0.05 within that family (``Result.established``, the
  project-wide definition). With 4 + 4 seeds Holm over two metrics cannot reach 0.05 (2 x 2/70 > 0.05), so the family
  is one metric; every other row is printed with its unadjusted p as *descriptive* and is never called established.
* **Lost**: a run whose final held-out rate on an objective is <= ``LOST`` (0.05, the collapse-alarm claims'
  definition); the per-seed outcome is reported as counts ("length lost: grpo 4/4, saw 0/4").

The all-objectives rate is treated like one more objective (``ALL``).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from varpo import significance as sig

ALL = "all objectives"
LOST = 0.05  # a final held-out rate at or below this counts as the objective lost (collapse-alarm claims)


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


def cluster_se(payload: dict, objective: str) -> float:
    """Prompt-clustered s.e. of one run's final rate on ``objective`` (NaN when eval.json has no per-prompt rates)."""
    per_prompt = payload.get("per_prompt") or {}
    values = per_prompt.get("all" if objective == ALL else objective)
    return sig.prompt_cluster_se(values) if values else math.nan


def summarize(runs: dict[str, dict[int, dict]], baseline: str, primary: tuple[str, ...]) -> dict:
    """Rates, comparisons and per-seed outcomes of the seeds every method finished.

    Returns ``{"seeds", "objectives", "primary", "rates" [method][objective] -> per-seed list, "within_se" (same
    shape), "table" [method][objective] -> {"mean", "se", "lost"}, "diffs" [method][objective] -> Result}``.
    ``diffs`` rows of ``primary`` objectives are Holm-adjusted together (per method); the others keep ``p_holm`` NaN
    and ``established`` False (descriptive).
    """
    if baseline not in runs:
        raise ValueError(f"no run of the baseline {baseline!r}")
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in runs.values())))
    if not seeds:
        raise ValueError("no seed finished for every method")
    names = list(rates(runs[baseline][seeds[0]]))
    unknown = [p for p in primary if p not in names]
    if unknown:
        raise ValueError(f"primary metric(s) {unknown} are not objectives of the task ({names})")
    per_seed = {m: {o: [rates(runs[m][s])[o] for s in seeds] for o in names} for m in runs}
    within = {m: {o: [cluster_se(runs[m][s], o) for s in seeds] for o in names} for m in runs}
    table = {
        m: {
            o: {
                "mean": statistics.fmean(per_seed[m][o]),
                "se": sig.unit_se(per_seed[m][o], within[m][o]),
                "lost": sum(r <= LOST for r in per_seed[m][o]),
            }
            for o in names
        }
        for m in runs
    }
    diffs = {}
    for m in runs:
        if m == baseline:
            continue
        rows = {
            o: sig.two_sample(o, per_seed[m][o], per_seed[baseline][o], within[m][o], within[baseline][o])
            for o in names
        }
        family = sig.holm_family([rows[o] for o in primary])
        rows.update({r.metric: r for r in family})
        diffs[m] = rows
    return {
        "seeds": seeds,
        "objectives": names,
        "primary": list(primary),
        "rates": per_seed,
        "within_se": within,
        "table": table,
        "diffs": diffs,
    }


def lost_counts(summary: dict, objective: str) -> str:
    """``"grpo 4/4, saw 0/4"``: per method, how many seeds lost ``objective`` (final rate <= LOST)."""
    n = len(summary["seeds"])
    return ", ".join(f"{m} {per[objective]['lost']}/{n}" for m, per in summary["table"].items())


def verdict(result: sig.Result, primary: bool) -> str:
    """The verdict word of one comparison row: established (Holm within the family) or descriptive."""
    if primary:
        return result.verdict()
    return "descriptive (not in the pre-registered family)"


def verdict_lines(summary: dict, baseline: str) -> list[str]:
    """One line per method and objective: difference [95 % CI], exact p, lost counts, and the verdict."""
    lines = []
    n = len(summary["seeds"])
    for method, per_obj in summary["diffs"].items():
        for obj, r in per_obj.items():
            primary = obj in summary["primary"]
            if primary and r.established:
                better = method if r.estimate > 0 else baseline
                word = f"{better} is better: established (p = {r.p:.3g}, Holm over {r.family}, < {sig.ALPHA:g})"
            elif primary:
                word = f"not established (p = {r.p:.3g} >= {sig.ALPHA:g} after Holm over {r.family}; MDE {r.mde:.3f})"
            else:
                word = f"descriptive, p = {r.p:.3g} (not in the pre-registered family)"
            lines.append(
                f"{obj}: {method} - {baseline} = {r.estimate:+.3f} [{r.low:+.3f}, {r.high:+.3f}] over {n} + {n} "
                f"seeds; lost (rate <= {LOST:g}): {lost_counts(summary, obj)} -> {word}"
            )
    return lines


def _finite(value):
    """NaN/inf -> None, recursively (results.json stays strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(summary: dict) -> dict:
    """``summary`` as JSON: every per-seed number, the table and each comparison's full Result (NaN -> null)."""
    return _finite(
        {
            "seeds": summary["seeds"],
            "objectives": summary["objectives"],
            "primary": summary["primary"],
            "lost_threshold": LOST,
            "per_seed": summary["rates"],
            "per_seed_prompt_cluster_se": summary["within_se"],
            "table": summary["table"],
            "diffs": {
                m: {o: {**r.to_dict(), "in_family": o in summary["primary"]} for o, r in per.items()}
                for m, per in summary["diffs"].items()
            },
        }
    )
