"""The numbers behind docs/claims.md's testbed rows, recomputed from a sweep's committed per-run eval.json files.

    python benchmarks/testbed/claims.py docs/results/collapse-alarm-confirm --pairs saw-grpo \\
        --family "length,all objectives" --out docs/results/collapse-alarm-confirm/claims.json

The standard is `varpo.significance` (docs/claims.md, "How claims are decided"). For each pair (method, baseline)
and each metric — every objective's final held-out rate, the worst objective's rate (min over objectives, per run),
the all-objectives rate — the unit is the seed (its own warm start; method and baseline of one seed share the warm
start and the held-out prompts, so the design is paired): `significance.paired` over the per-seed differences gives
the mean, its s.e. (max of the between-seed s.e. and the pooled prompt-clustered s.e. of the per-seed differences,
when the eval.json files carry per-prompt rates), the t interval, the exact sign-flip p and the MDE at 80 % power.
The worst objective's rate is a min over objectives of prompt means, not a prompt mean itself, so its s.e. is the
between-seed one only.

Family. The caller states the claim's pre-registered metrics (``--family``, optionally restricted to ``--pairs``);
Holm's correction runs over exactly those rows, and a difference is *established* when its Holm-adjusted p < 0.05.
Without ``--family`` the family is every row printed, and the output says so. Rows outside a stated family are
printed as a second, exploratory family (Holm over those rows). With several weight vectors in the sweep the rows are
per weight vector, and each method's hypervolume (2 objectives, reference (0, 0)) over the weight vectors is compared
per seed the same way (metric ``hypervolume``). Finally, per objective, the largest move from the warm start over
methods (learnability; descriptive).

Writes (``--out``) claims.json: the standard, the family as stated, each row's `Result.to_dict()` with its pair,
per-seed differences and per-seed within s.e. Exits 2 on a folder with no runs/*/eval.json.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from varpo import significance as sig

WORST = "worst objective"
ALL = "all objectives"


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95 % t half-width over seeds (inf with one seed): the descriptive interval the cost scripts print."""
    return sig.t_interval(values)


def load(sweep: Path | list[Path]) -> dict:
    """Per-run final metrics of one sweep folder, or of several pooled (disjoint seeds of one setting).

    Returns ``{"runs": {weights: {method: {seed: {"metrics": {name: rate}, "per_prompt": {name: [rate | None]},
    "eval": dict}}}}, "start": {objective: mean warm-start rate}}``. ``per_prompt`` maps each objective (and the
    all-objectives metric) to the final evaluation's per-prompt rates, empty when the eval.json predates them.
    A (weights, method, seed) present in two folders is an error: pooled folders must hold disjoint seeds.
    """
    out: dict = defaultdict(lambda: defaultdict(dict))
    start: dict = defaultdict(list)
    folders = [sweep] if isinstance(sweep, Path) else list(sweep)
    for path in [p for folder in folders for p in sorted(folder.glob("runs/*/eval.json"))]:
        try:
            d = json.loads(path.read_text())
            cfg = d["config"]
            weights = tuple(round(float(w), 4) for w in cfg["reward_weights"])
            metrics = {name: float(v) for name, v in d["objectives"].items()}
            metrics[WORST] = min(metrics.values())
            metrics[ALL] = float(d["all"])
            method, seed = cfg["advantage_method"], int(cfg["seed"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a run's eval.json ({type(err).__name__}: {err})") from None
        if seed in out[weights][method]:
            raise ValueError(f"{path}: {method} seed {seed} at weights {weights} already loaded from another folder")
        per_prompt = dict(d.get("per_prompt") or {})
        if "all" in per_prompt:
            per_prompt[ALL] = per_prompt.pop("all")
        out[weights][method][seed] = {"metrics": metrics, "per_prompt": per_prompt, "eval": d.get("eval")}
        for name, value in d["curve"][0]["objectives"].items():
            start[name].append(value)
    return {"runs": out, "start": {k: statistics.fmean(v) for k, v in start.items()}}


def paired_within_se(run: dict, base: dict, metric: str) -> float:
    """Prompt-clustered s.e. of one seed's difference run − base on ``metric`` (NaN when not available).

    Both runs evaluated the same prompts (same eval spec and prompt count): the s.e. of the per-prompt differences
    (prompts as clusters, `significance.prompt_cluster_se`), which keeps the positive correlation of the two runs on
    one prompt. Otherwise the runs' own clustered s.e. combined as independent, sqrt(se_a² + se_b²).
    """
    a, b = run["per_prompt"].get(metric), base["per_prompt"].get(metric)
    if not a or not b:
        return math.nan
    if run["eval"] == base["eval"] and len(a) == len(b):
        return sig.prompt_cluster_se([x - y if x is not None and y is not None else None for x, y in zip(a, b)])
    return math.hypot(sig.prompt_cluster_se(a), sig.prompt_cluster_se(b))


def hypervolume_2d(points: list[tuple[float, float]]) -> float:
    """Area dominated by the points above the reference (0, 0)."""
    area, best_y = 0.0, 0.0
    for x, y in sorted(points, key=lambda p: -p[0]):
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area


def _label(weights: tuple, multi: bool) -> str:
    return ("/".join(f"{w:g}" for w in weights) + " ") if multi else ""


def comparisons(data: dict, baselines: list[str], pairs: set[tuple[str, str]] | None) -> list[dict]:
    """Every (weights, method − baseline, metric) comparison: its `paired` Result, per-seed differences, within s.e."""
    rows = []
    multi = len(data["runs"]) > 1
    for weights, by_method in data["runs"].items():
        for base in [b for b in baselines if b in by_method]:
            for m in by_method:
                if m == base or (pairs is not None and (m, base) not in pairs):
                    continue
                seeds = sorted(set(by_method[m]) & set(by_method[base]))
                if not seeds:
                    continue
                for metric in by_method[m][seeds[0]]["metrics"]:
                    diffs = [by_method[m][s]["metrics"][metric] - by_method[base][s]["metrics"][metric] for s in seeds]
                    within = [paired_within_se(by_method[m][s], by_method[base][s], metric) for s in seeds]
                    name = f"{_label(weights, multi)}{m} − {base}: {metric}"
                    rows.append(_row(name, m, base, metric, seeds, diffs, within, weights))
    if multi:
        names = list(data["start"])
        if len(names) == 2:
            hv: dict = defaultdict(dict)
            methods = set.intersection(*(set(bm) for bm in data["runs"].values()))
            for m in sorted(methods):
                for s in sorted(set.intersection(*(set(bm[m]) for bm in data["runs"].values()))):
                    pts = [
                        (bm[m][s]["metrics"][names[0]], bm[m][s]["metrics"][names[1]]) for bm in data["runs"].values()
                    ]
                    hv[m][s] = hypervolume_2d(pts)
            for base in [b for b in baselines if b in hv]:
                for m in sorted(hv):
                    if m == base or (pairs is not None and (m, base) not in pairs):
                        continue
                    seeds = sorted(set(hv[m]) & set(hv[base]))
                    diffs = [hv[m][s] - hv[base][s] for s in seeds]
                    rows.append(_row(f"{m} − {base}: hypervolume", m, base, "hypervolume", seeds, diffs, None, None))
    return rows


def _row(name, method, base, metric, seeds, diffs, within, weights) -> dict:
    within_ok = within if within and all(math.isfinite(w) for w in within) else None
    return {
        "result": sig.paired(name, diffs, within_ok),
        "method": method,
        "baseline": base,
        "measure": metric,
        "weights": list(weights) if weights is not None else None,
        "per_seed": {str(s): d for s, d in zip(seeds, diffs, strict=True)},
        "within_se": {str(s): w for s, w in zip(seeds, within, strict=True)} if within_ok else None,
    }


def _adjust(rows: list[dict]) -> list[dict]:
    adjusted = sig.holm_family([r["result"] for r in rows]) if rows else []
    return [{**r, "result": res} for r, res in zip(rows, adjusted, strict=True)]


def _dump(row: dict) -> dict:
    return {**row["result"].to_dict(), **{k: v for k, v in row.items() if k != "result"}}


def _parse_pairs(text: str | None) -> set[tuple[str, str]] | None:
    if not text:
        return None
    out = set()
    for item in text.split(","):
        method, sep, base = item.strip().partition("-")
        if not sep or not method or not base:
            raise ValueError(f"--pairs: {item!r} is not METHOD-BASELINE (e.g. saw-grpo)")
        out.add((method, base))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path, nargs="+", help="sweep folder(s); several are pooled (disjoint seeds)")
    parser.add_argument("--baselines", default="grpo,gdpo", help="comma list of baselines (default grpo,gdpo)")
    parser.add_argument("--pairs", default=None, help="comma list METHOD-BASELINE to compare (default: every pair)")
    parser.add_argument(
        "--family",
        default=None,
        help="the claim's pre-registered metrics, comma list (e.g. 'length,all objectives'); Holm runs over these "
        "rows. Default: every row printed",
    )
    parser.add_argument(
        "--out", "--json", dest="json", type=Path, default=None, help="also write the numbers as JSON to this file"
    )
    ns = parser.parse_args(argv)
    try:
        pairs = _parse_pairs(ns.pairs)
        data = load(ns.sweep)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not data["runs"]:
        print(
            f"error: no runs/*/eval.json under {', '.join(map(str, ns.sweep))}: nothing to recompute (per-run results are committed under <sweep>/runs/)",
            file=sys.stderr,
        )
        return 2
    rows = comparisons(data, [b for b in ns.baselines.split(",") if b], pairs)
    family_metrics = [m.strip() for m in ns.family.split(",")] if ns.family else None
    if family_metrics is not None:
        known = {r["measure"] for r in rows}
        unknown = [m for m in family_metrics if m not in known]
        if unknown:
            print(f"error: --family: no such metric {unknown[0]!r}; choose from {sorted(known)}", file=sys.stderr)
            return 2
        family = _adjust([r for r in rows if r["measure"] in family_metrics])
        rest = _adjust([r for r in rows if r["measure"] not in family_metrics])
        stated = f"stated: {', '.join(family_metrics)} over {len(family)} comparisons"
    else:
        family, rest = _adjust(rows), []
        stated = f"default: every row printed ({len(family)} comparisons)"
    print(f"Family (Holm within; established = p_holm < {sig.ALPHA:g}) — {stated}")
    print(sig.table([r["result"] for r in family]))
    if rest:
        print(f"\nOther comparisons (exploratory; Holm over these {len(rest)})")
        print(sig.table([r["result"] for r in rest]))
    report: dict = {
        "command": "python benchmarks/testbed/claims.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "standard": {
            "unit": "seed (own warm start), paired by seed",
            "test": "exact sign-flip on per-seed differences",
            "correction": "Holm within the family",
            "alpha": sig.ALPHA,
            "power_for_mde": sig.POWER,
        },
        "sweeps": [str(p) for p in ns.sweep],
        "family": {"metrics": family_metrics, "pairs": ns.pairs, "size": len(family), "stated": stated},
        "rows": [_dump(r) for r in family],
        "exploratory": [_dump(r) for r in rest],
        "learnability": {},
    }
    print()
    for name, start in data["start"].items():
        best = max(
            statistics.fmean(run["metrics"][name] for run in by_seed.values())
            for by_method in data["runs"].values()
            for by_seed in by_method.values()
        )
        report["learnability"][name] = {"start": start, "best_final": best}
        print(f"learnability {name}: warm start {start:.3f} -> best method mean {best:.3f} (moved {best - start:+.3f})")
    if ns.json:
        ns.json.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
