"""Does `varpo demo`'s pre-registered conclusion hold on fresh seeds? Run the full demo on disjoint seed sets (each
seed its own SFT warm start, as in the demo) and check each set's verdicts against the stated conclusion
(benchmarks/results/demo_conclusion.json; docs/claims.md, DM3).

The stated conclusion has two parts: ``established`` — per method and objective, the verdict itself (the better
method when the pre-registered test establishes it — Holm-adjusted exact p < 0.05 within the demo's family — or
"none"), which must come out the same; and ``direction`` — objectives where only the sign of the difference is
claimed, which must not reverse and must never be established the other way (empty for DM3).

    HF_HUB_OFFLINE=1 python benchmarks/demo_repeat.py --repeats 3 --first-seed 700 --set-stride 10 \\
        --out benchmarks/results/demo_repeat_fair.json          # seeds 700-703, 710-713, 720-723

Set i uses seeds ``first_seed + i * set_stride + j`` for j < ``seeds_per_repeat``. Resumable: each set's runs live in
``RUNS/set<first seed>/`` (the demo's sweep skips finished runs; a set whose results.json exists for the same seeds is
read, not rerun). The summary (``--out``) holds every set's verdict, table, per-seed rates, wall time, and, as a
pre-registered secondary analysis (DM3b), the pooled per-seed lost counts over all sets with Fisher's exact test.
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
    """``verdicts``: {method: {objective: better method or "none"}}; ``diffs``: {method: {objective: {"estimate",
    ...}}} (results.json's summary)."""
    for method, per_obj in stated["established"].items():
        if any(verdicts[method][o] != v for o, v in per_obj.items()):
            return False
    for method, per_obj in stated["direction"].items():
        for o, better in per_obj.items():
            other = "grpo" if better == method else method
            sign_better = method if diffs[method][o]["estimate"] > 0 else "grpo"
            if sign_better != better or verdicts[method][o] == other:
                return False
    return True


def seed_sets(repeats: int, first_seed: int, stride: int, per_set: int) -> list[tuple[int, ...]]:
    if stride < per_set:
        raise ValueError(f"--set-stride {stride} < --seeds-per-repeat {per_set}: the seed sets would overlap")
    return [tuple(first_seed + i * stride + j for j in range(per_set)) for i in range(repeats)]


def pooled_lost(repeats: list[dict], objective: str = "length") -> dict:
    """Per method, seeds that lost ``objective`` over all sets, and Fisher's exact p of saw vs grpo (descriptive
    unless pre-registered: DM3b)."""
    from varpo import significance as sig

    counts = {}
    for method in ("grpo", "saw"):
        lost = sum(r["table"][method][objective]["lost"] for r in repeats)
        n = sum(len(r["seeds"]) for r in repeats)
        counts[method] = {"lost": lost, "n": n, "ci95": list(sig.clopper_pearson(lost, n)) if n else None}
    g, s = counts["grpo"], counts["saw"]
    p = sig.fisher_exact(g["lost"], g["n"], s["lost"], s["n"]) if g["n"] and s["n"] else 1.0
    return {"objective": objective, "counts": counts, "test": "Fisher exact (two-sided)", "p": p}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds-per-repeat", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=700, help="the first set's first seed (the demo uses 0-3)")
    parser.add_argument("--set-stride", type=int, default=10, help="seed offset between consecutive sets")
    parser.add_argument("--runs", type=Path, default=Path("runs/demo-repeat"), help="where the demo runs go")
    parser.add_argument("--out", type=Path, default=None, help="summary JSON (default RUNS/summary.json)")
    ns = parser.parse_args(argv)
    from varpo.experiments import demo

    stated = json.loads(STATED.read_text())
    repeats = []
    for seeds in seed_sets(ns.repeats, ns.first_seed, ns.set_stride, ns.seeds_per_repeat):
        out = ns.runs / f"set{seeds[0]}"
        cached = out / "results.json"
        start = time.perf_counter()
        result = json.loads(cached.read_text()) if cached.is_file() else None
        if result is None or result["config"]["seeds"] != list(seeds):
            result = demo.run(out, seeds=seeds)
            result = json.loads(json.dumps(result, default=str))  # as results.json holds it (string seed keys)
        summary = result["summary"]
        got = result["conclusion"]
        matches = agrees(stated, got, summary["diffs"])
        repeats.append(
            {
                "seeds": list(seeds),
                "wall_s": result["seconds"]["total"],
                "driver_wall_s": round(time.perf_counter() - start, 1),
                "conclusion": got,
                "matches": matches,
                "primary": {m: {o: summary["diffs"][m][o] for o in summary["primary"]} for m in summary["diffs"]},
                "table": summary["table"],
                "per_seed": summary["per_seed"],
                "diffs": summary["diffs"],
            }
        )
        length = summary["diffs"]["saw"]["length"]
        print(
            f"set {list(seeds)}: {'matches' if matches else 'DIFFERS'}: length saw - grpo {length['estimate']:+.3f} "
            f"[{length['low']:+.3f}, {length['high']:+.3f}], p = {length['p']:.3g}; lost: grpo "
            f"{summary['table']['grpo']['length']['lost']}/{len(seeds)}, saw {summary['table']['saw']['length']['lost']}"
            f"/{len(seeds)}",
            flush=True,
        )
    ok = all(r["matches"] for r in repeats)
    pooled = pooled_lost(repeats)
    out = ns.out or ns.runs / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"stated": stated, "all_match": ok, "pooled_lost": pooled, "repeats": repeats},
                              indent=2) + "\n")  # fmt: skip
    c = pooled["counts"]
    print(
        f"{'all' if ok else 'NOT all'} {len(repeats)} sets match the stated conclusion; pooled length lost: grpo "
        f"{c['grpo']['lost']}/{c['grpo']['n']}, saw {c['saw']['lost']}/{c['saw']['n']} (Fisher p = {pooled['p']:.3g})"
        f"; summary: {out}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
