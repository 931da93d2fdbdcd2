"""Dynamic sampling on the testbed: generated-token cost and effect on held-out scores, against a sweep without it.

    python benchmarks/testbed/dynamic_sampling.py runs/testbed/easy_hard runs/testbed/easy_hard_ds

Both sweeps must share the config apart from ``dynamic_sampling*`` (same seeds = same warm start and prompts). Per
method and metric (each objective's final held-out rate, the worst objective, the all-objectives rate) it prints
the mean over seeds of the per-seed paired difference (dynamic sampling − baseline) with its 95 % t-interval, and
the generation cost per run: TRL's ``num_tokens`` at the last step (prompt + completion tokens of every generation
call, refill rounds included) and, for the dynamic-sampling sweep, the completion tokens generated per trained
(kept) sample and the mean number of extra rounds per step.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from claims import interval, load  # noqa: E402


def cost(sweep: Path) -> dict[tuple[str, int], dict[str, float]]:
    """{(method, seed): {"num_tokens", "tokens_per_kept", "extra_rounds", "frac_filtered"}} from metrics.jsonl."""
    out = {}
    for path in sorted(sweep.glob("runs/*/metrics.jsonl")):
        cfg = (
            json.loads((path.parent / "eval.json").read_text())["config"]
            if (path.parent / "eval.json").exists()
            else None
        )
        if cfg is None:
            continue
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        steps = [r for r in records if "loss" in r]
        if not steps:
            continue
        ds = [r for r in steps if "dynamic_sampling/generated_tokens" in r]
        kept = sum(r["dynamic_sampling/groups_kept"] for r in ds)
        generated = sum(r["dynamic_sampling/generated_tokens"] for r in ds)
        group = int(cfg.get("num_generations", 8))
        out[(cfg["advantage_method"], int(cfg["seed"]))] = {
            "num_tokens": float(steps[-1].get("num_tokens", math.nan)),
            "tokens_per_kept": generated / (kept * group) if kept else math.nan,
            "extra_rounds": statistics.fmean(r["dynamic_sampling/extra_rounds"] for r in ds) if ds else math.nan,
            "frac_filtered": statistics.fmean(r["dynamic_sampling/frac_filtered"] for r in ds) if ds else math.nan,
        }
    return out


def _fmt(mean: float, half: float) -> str:
    return f"{mean:+.3f} ± {half:.3f}" if math.isfinite(half) else f"{mean:+.3f} (1 seed)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("dynamic", type=Path)
    args = parser.parse_args(argv)
    base, dyn = load(args.baseline)["runs"], load(args.dynamic)["runs"]
    base_cost, dyn_cost = cost(args.baseline), cost(args.dynamic)
    for weights in sorted(set(base) & set(dyn)):
        print(f"weights {weights}")
        for method in sorted(set(base[weights]) & set(dyn[weights])):
            seeds = sorted(set(base[weights][method]) & set(dyn[weights][method]))
            if not seeds:
                continue
            print(f"  {method} ({len(seeds)} paired seeds): dynamic sampling − baseline, mean ± 95% t-interval")
            for metric in base[weights][method][seeds[0]]["metrics"]:
                diffs = [
                    dyn[weights][method][s]["metrics"][metric] - base[weights][method][s]["metrics"][metric]
                    for s in seeds
                ]
                print(f"    {metric:18s} {_fmt(*interval(diffs))}")
            b = [base_cost[(method, s)]["num_tokens"] for s in seeds if (method, s) in base_cost]
            d = [dyn_cost[(method, s)] for s in seeds if (method, s) in dyn_cost]
            if b and d:
                ratio = statistics.fmean(x["num_tokens"] for x in d) / statistics.fmean(b)
                print(
                    f"    cost: num_tokens {statistics.fmean(b):.0f} -> {statistics.fmean(x['num_tokens'] for x in d):.0f} "
                    f"(x{ratio:.2f}); completion tokens per kept sample "
                    f"{statistics.fmean(x['tokens_per_kept'] for x in d):.1f}; extra rounds/step "
                    f"{statistics.fmean(x['extra_rounds'] for x in d):.2f}; filtered "
                    f"{statistics.fmean(x['frac_filtered'] for x in d):.0%} of generated groups"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
