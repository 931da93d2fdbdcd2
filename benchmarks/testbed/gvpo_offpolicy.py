"""GVPO Fig. 4 on the testbed: generated tokens and held-out rates per number h of historical responses per group.

    python benchmarks/testbed/gvpo_offpolicy.py runs/testbed            # reads gvpo_h0, gvpo_h2, gvpo_h4, gvpo_h6

writes ``runs/bench/gvpo_offpolicy/gvpo_offpolicy.json`` unless ``--out`` names another file (the committed one:
``--out docs/results/testbed-gvpo_offpolicy/gvpo_offpolicy.json``).

Per h and seed: completion tokens generated over the run (``offpolicy/generated_tokens`` summed over steps where the
engine logs it; for h = 0, where no group has history, ``completions/mean_length`` x samples per step), the final
held-out rate averaged over the objectives, and the all-objectives rate. Paired against h = 0 (same seed = same warm
start and prompts): token ratio and rate differences, mean ± 95 % t-interval over seeds; and, at equal generated
tokens, the h = 0 curve's rate interpolated at h's token budget (the evaluation curve is sampled every 20 steps).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from claims import interval  # noqa: E402

from varpo.experiments.outdir import add_out_option, out_path, write_result  # noqa: E402

NAME, FILENAME = "gvpo_offpolicy", "gvpo_offpolicy.json"


def _records(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def run_summary(run: Path) -> dict:
    ev = json.loads((run / "eval.json").read_text())
    cfg = ev["config"]
    per_step = cfg["per_device_train_batch_size"] * cfg.get("gradient_accumulation_steps", 1)
    tokens, cumulative = 0.0, {}
    for r in _records(run / "metrics.jsonl"):
        if "step" not in r or "completions/mean_length" not in r:
            continue
        fresh = r.get("offpolicy/generated_tokens")
        tokens += float(fresh) if fresh is not None else float(r["completions/mean_length"]) * per_step
        cumulative[int(r["step"])] = tokens
    curve = [(p["step"], statistics.fmean(p["objectives"].values()), p["all"]) for p in ev["curve"]]
    return {"seed": int(cfg["seed"]), "tokens": tokens, "cumulative": cumulative, "curve": curve}


def rate_at_tokens(base: dict, budget: float) -> float:
    """h = 0's mean held-out rate at ``budget`` generated tokens (linear between its evaluation points)."""
    points = [(base["cumulative"].get(step, 0.0) if step else 0.0, rate) for step, rate, _ in base["curve"]]
    for (t0, r0), (t1, r1) in zip(points, points[1:], strict=False):
        if t0 <= budget <= t1:
            return r0 + (r1 - r0) * (budget - t0) / max(t1 - t0, 1e-9)
    return points[-1][1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="directory holding the gvpo_h<h> sweeps")
    add_out_option(parser, NAME, FILENAME, publish="docs/results/testbed-gvpo_offpolicy/gvpo_offpolicy.json")
    args = parser.parse_args(argv)
    root = args.root
    runs = {
        int(d.name[len("gvpo_h") :]): {s["seed"]: s for s in (run_summary(r) for r in d.glob("runs/*") if (r / "eval.json").exists())}
        for d in sorted(root.glob("gvpo_h*"))
    }  # fmt: skip
    base = runs[0]
    print(f"{'h':>2} {'seeds':>5} {'tokens / h=0':>16} {'mean rate':>12} {'Δ mean rate (equal steps)':>28} "
          f"{'Δ all-objectives':>20} {'Δ mean rate (equal tokens)':>28}")  # fmt: skip
    report = {}
    for h, by_seed in sorted(runs.items()):
        seeds = sorted(set(by_seed) & set(base))
        if not seeds:
            continue  # that sweep has not finished a run yet
        ratio = interval([by_seed[s]["tokens"] / base[s]["tokens"] for s in seeds])
        rate = interval([by_seed[s]["curve"][-1][1] for s in seeds])
        d_rate = interval([by_seed[s]["curve"][-1][1] - base[s]["curve"][-1][1] for s in seeds])
        d_all = interval([by_seed[s]["curve"][-1][2] - base[s]["curve"][-1][2] for s in seeds])
        d_tok = interval([by_seed[s]["curve"][-1][1] - rate_at_tokens(base[s], by_seed[s]["tokens"]) for s in seeds])
        report[h] = {"seeds": seeds, "token_ratio": ratio, "mean_rate": rate, "d_rate_equal_steps": d_rate,
                     "d_all_equal_steps": d_all, "d_rate_equal_tokens": d_tok}  # fmt: skip
        fmt = lambda ci: f"{ci[0]:+.3f} ± {ci[1]:.3f}"  # noqa: E731
        print(f"{h:>2} {len(seeds):>5} {ratio[0]:>9.3f} ± {ratio[1]:.3f} {rate[0]:>12.3f} {fmt(d_rate):>28} "
              f"{fmt(d_all):>20} {fmt(d_tok):>28}")  # fmt: skip
    write_result(out_path(args.out, NAME, FILENAME), json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
