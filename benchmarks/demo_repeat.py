"""Does `varpo demo`'s conclusion hold on other seeds? Run the full demo N times with disjoint seed sets and compare
each run's verdicts with the conclusion the README states (benchmarks/results/demo_conclusion.json).

The stated conclusion has two parts: ``established`` — per objective, the verdict itself (the better method with
|difference| >= 3 s.e., or "none"), which must come out the same; and ``direction`` — objectives where only the sign
of the difference is claimed (the better method by point estimate), which must not reverse and must never be
established the other way.

    HF_HUB_OFFLINE=1 python benchmarks/demo_repeat.py --repeats 3                  # runs/demo-repeat/<i>/
    HF_HUB_OFFLINE=1 python benchmarks/demo_repeat.py --repeats 3 --out benchmarks/results/demo_repeat.json

A verdict is, per objective, the better method when the paired difference is established (>= 3 s.e.) or "none". Each repeat's table, wall time and verdicts are
written to the summary (``--out``, default ``runs/demo-repeat/summary.json``); the warm start is cached, so only the
first repeat pays for it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATED = ROOT / "benchmarks" / "results" / "demo_conclusion.json"


def agrees(stated: dict, verdicts: dict, diffs: dict) -> bool:
    """``verdicts``: {method: {objective: better method or "none"}}; ``diffs``: {method: {objective: {"mean", ...}}}."""
    for method, per_obj in stated["established"].items():
        if any(verdicts[method][o] != v for o, v in per_obj.items()):
            return False
    for method, per_obj in stated["direction"].items():
        for o, better in per_obj.items():
            other = "grpo" if better == method else method
            sign_better = method if diffs[method][o]["mean"] > 0 else "grpo"
            if sign_better != better or verdicts[method][o] == other:
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds-per-repeat", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=100, help="seed sets start here (the README uses 0,1,2)")
    parser.add_argument("--runs", type=Path, default=Path("runs/demo-repeat"), help="where the demo runs go")
    parser.add_argument("--out", type=Path, default=None, help="summary JSON (default RUNS/summary.json)")
    ns = parser.parse_args(argv)
    from varpo.experiments import demo

    stated = json.loads(STATED.read_text())
    repeats = []
    for i in range(ns.repeats):
        seeds = tuple(ns.first_seed + i * ns.seeds_per_repeat + j for j in range(ns.seeds_per_repeat))
        start = time.perf_counter()
        result = demo.run(ns.runs / f"repeat{i}", seeds=seeds)
        got = result["conclusion"]
        matches = agrees(stated, got, result["summary"]["diffs"])
        repeats.append(
            {
                "seeds": list(seeds),
                "wall_s": round(time.perf_counter() - start, 1),
                "conclusion": got,
                "matches": matches,
                "table": result["summary"]["table"],
                "diffs": result["summary"]["diffs"],
            }
        )
        print(f"repeat {i} seeds {list(seeds)}: {'matches' if matches else 'DIFFERS'}: {got}", flush=True)
    ok = all(r["matches"] for r in repeats)
    out = ns.out or ns.runs / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"stated": stated, "all_match": ok, "repeats": repeats}, indent=2) + "\n")
    print(f"{'all' if ok else 'NOT all'} {len(repeats)} repeats match the stated conclusion; summary: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
