"""The numbers behind docs/claims.md's testbed rows, recomputed from a published sweep's eval.json files.

    python benchmarks/testbed/claims.py docs/results/testbed-easy_hard
    python benchmarks/testbed/claims.py docs/results/testbed-bottleneck --out runs/bench/claims/bottleneck.json

For each pair (method, baseline) and each metric — every objective's final held-out rate, the worst objective's rate
(min over objectives, per run), the all-objectives rate — it prints the mean over seeds of the per-seed paired
difference with its 95 % t-interval (same seed = same warm start and prompts). With several weight vectors in the
sweep, it does so per weight vector, and also reports each method's hypervolume (2 objectives, reference (0, 0)) over
the weight vectors per seed. Finally, per objective, the largest move from the warm start over methods (learnability).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95 % t half-width over seeds (half-width inf with one seed)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.inf
    return mean, T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def load(sweep: Path) -> dict:
    """{weights: {method: {seed: metrics}}} with metrics = objectives + worst + all, and the step-0 rates."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    start: dict = defaultdict(list)
    for path in sorted(sweep.glob("runs/*/eval.json")):
        d = json.loads(path.read_text())
        cfg = d["config"]
        weights = tuple(round(w, 4) for w in cfg["reward_weights"])
        metrics = dict(d["objectives"])
        metrics["worst objective"] = min(d["objectives"].values())
        metrics["all objectives"] = d["all"]
        out[weights][cfg["advantage_method"]][int(cfg["seed"])] = metrics
        for name, value in d["curve"][0]["objectives"].items():
            start[name].append(value)
    return {"runs": out, "start": {k: statistics.fmean(v) for k, v in start.items()}}


def hypervolume_2d(points: list[tuple[float, float]]) -> float:
    """Area dominated by the points above the reference (0, 0)."""
    area, best_y = 0.0, 0.0
    for x, y in sorted(points, key=lambda p: -p[0]):
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--baselines", default="grpo,gdpo")
    parser.add_argument(
        "--out", "--json", dest="json", type=Path, default=None, help="also write the numbers as JSON to this file"
    )
    ns = parser.parse_args(argv)
    data = load(ns.sweep)
    report: dict = {"pairs": {}, "learnability": {}, "hypervolume": {}}
    if not data["runs"]:
        print(
            f"error: no runs/*/eval.json under {ns.sweep}: nothing to recompute (per-run results are committed under <sweep>/runs/)",
            file=sys.stderr,
        )
        return 2
    for weights, by_method in data["runs"].items():
        methods = list(by_method)
        for base in [b for b in ns.baselines.split(",") if b in by_method]:
            for m in methods:
                if m == base:
                    continue
                seeds = sorted(set(by_method[m]) & set(by_method[base]))
                for metric in by_method[m][seeds[0]]:
                    diffs = [by_method[m][s][metric] - by_method[base][s][metric] for s in seeds]
                    mean, half = interval(diffs)
                    key = f"{'/'.join(f'{w:g}' for w in weights)} {m} - {base} {metric}"
                    report["pairs"][key] = {"mean": mean, "half_width": half, "n": len(seeds)}
                    print(f"{key:70s} {mean:+.3f} ± {half:.3f} (n={len(seeds)})")
    names = list(data["start"])
    for name in names:
        best = max(
            statistics.fmean(seed_metrics[name] for seed_metrics in by_seed.values())
            for by_method in data["runs"].values()
            for by_seed in by_method.values()
        )
        report["learnability"][name] = {"start": data["start"][name], "best_final": best}
        print(f"learnability {name}: warm start {data['start'][name]:.3f} -> best method mean {best:.3f} "
              f"(moved {best - data['start'][name]:+.3f})")  # fmt: skip
    if len(data["runs"]) > 1 and len(names) == 2:
        per_method: dict = defaultdict(dict)
        methods = set.intersection(*(set(bm) for bm in data["runs"].values()))
        for m in sorted(methods):
            seeds = set.intersection(*(set(bm[m]) for bm in data["runs"].values()))
            for s in sorted(seeds):
                pts = [(bm[m][s][names[0]], bm[m][s][names[1]]) for bm in data["runs"].values()]
                per_method[m][s] = hypervolume_2d(pts)
            mean, half = interval(list(per_method[m].values()))
            report["hypervolume"][m] = {"mean": mean, "half_width": half, "per_seed": per_method[m]}
            print(f"hypervolume {m}: {mean:.3f} ± {half:.3f}")
        for base in [b for b in ns.baselines.split(",") if b in per_method]:
            for m in sorted(per_method):
                if m != base:
                    seeds = sorted(set(per_method[m]) & set(per_method[base]))
                    mean, half = interval([per_method[m][s] - per_method[base][s] for s in seeds])
                    report["hypervolume"][f"{m} - {base}"] = {"mean": mean, "half_width": half}
                    print(f"hypervolume {m} - {base}: {mean:+.3f} ± {half:.3f}")
    if ns.json:
        ns.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
