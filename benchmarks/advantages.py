"""Advantage-kernel benchmark: every varpo method vs verl 0.9.1 and TRL's in-trainer formula, side by side.

Usage::

    python benchmarks/advantages.py                       # default grid, writes benchmarks/results/advantages.json
    python benchmarks/advantages.py --n 1000 8000 64000 --k 3 --repeats 7

All contenders run in ONE process on the SAME tensors, interleaved (repeat r times: each contender once), and we
report the median. Ratios are what to read; absolute times on a shared machine are noise.

Contenders (N = P·G samples, K components, groups contiguous as TRL lays them out, ids shuffled for verl since
verl's grouping is by uid and it reorders samples):
* ``floor``: one ``torch.sum`` over the [N, K] reward matrix (a memory-bound lower bound).
* ``varpo/<method>``: :func:`varpo.compute_advantages` incl. its diagnostics (stats), contiguous layout.
* ``varpo/<method>@shuffled``: same with shuffled group ids (general scatter path).
* ``verl/grpo``: ``compute_grpo_outcome_advantage`` (Python loop over a dict of groups), on the summed reward.
* ``verl/grpo_vectorized``: ``compute_grpo_vectorized_outcome_advantage``.
* ``verl/gdpo``: ``compute_gdpo_outcome_advantage`` (loops grpo per component, then token-level whitening).
* ``trl/sum_then_normalize``, ``trl/normalize_then_sum``: the lines of TRL 1.16's
  ``_generate_and_score_completions`` that compute advantages, re-run on the same tensors with TRL's ``nanstd``.
verl estimators get response length T = 1 (their token broadcast then costs nothing extra).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import varpo


def _verl_contenders(rewards: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor) -> dict:
    try:
        from verl.trainer.ppo import core_algos
    except Exception as exc:  # verl is an optional extra
        print(f"(verl not importable, skipping verl rows: {type(exc).__name__}: {exc})")
        return {}
    n, k = rewards.shape
    mask = torch.ones(n, 1)
    index = ids.numpy().astype(object)  # verl passes uid strings/objects in a numpy array
    summed = (rewards @ weights).unsqueeze(1)  # [N, 1] token-level reward at the last (only) token
    keys = [f"r{j}" for j in range(k)]
    non_tensor = {key: rewards[:, j].numpy() for j, key in enumerate(keys)}
    batch = {"prompts": torch.zeros(n, 1, dtype=torch.long), "attention_mask": torch.ones(n, 2, dtype=torch.long)}
    config = {"gdpo_reward_keys": keys, "gdpo_reward_weights": weights.tolist()}
    return {
        "verl/grpo": lambda: core_algos.compute_grpo_outcome_advantage(summed, mask, index),
        "verl/grpo_vectorized": lambda: core_algos.compute_grpo_vectorized_outcome_advantage(summed, mask, index),
        "verl/gdpo": lambda: core_algos.compute_gdpo_outcome_advantage(
            summed, mask, index, config=config, non_tensor_batch=non_tensor, batch=batch
        ),
    }


def _trl_contenders(rewards: torch.Tensor, group_size: int, weights: torch.Tensor) -> dict:
    try:
        from trl.trainer.utils import nanstd
    except Exception as exc:
        print(f"(trl not importable, skipping trl rows: {type(exc).__name__}: {exc})")
        return {}

    def sum_then_normalize():  # TRL 1.16 default: weighted nansum, group mean/std, (r - μ)/(σ + 1e-4)
        r = (rewards * weights.unsqueeze(0)).nansum(dim=1)
        mean = torch.nanmean(r.view(-1, group_size), dim=1).repeat_interleave(group_size)
        std = nanstd(r.view(-1, group_size), dim=1).repeat_interleave(group_size)
        return torch.nan_to_num((r - mean) / (std + 1e-4), nan=0.0)

    def normalize_then_sum():  # TRL 1.16 GDPO branch
        grouped = rewards.view(-1, group_size, rewards.shape[1])
        mean = torch.nanmean(grouped, dim=1, keepdim=True)
        std = nanstd(grouped, dim=1, keepdim=True)
        r = (((grouped - mean) / (std + 1e-4)).view(-1, rewards.shape[1]) * weights).nansum(dim=1)
        return torch.nan_to_num((r - torch.nanmean(r)) / (nanstd(r) + 1e-4), nan=0.0)

    return {"trl/sum_then_normalize": sum_then_normalize, "trl/normalize_then_sum": normalize_then_sum}


def bench_case(n: int, k: int, group_size: int, repeats: int, methods: list[str], seed: int = 0) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    p = n // group_size
    rewards = torch.randint(0, 2, (p * group_size, k), generator=gen).float()
    ids = torch.arange(p).repeat_interleave(group_size)
    perm = torch.randperm(p * group_size, generator=gen)
    weights = torch.full((k,), 1.0 / k)
    contenders = {"floor": lambda: rewards.sum()}
    for m in methods:
        contenders[f"varpo/{m}"] = lambda m=m: varpo.compute_advantages(rewards, ids, method=m)
        contenders[f"varpo/{m}@shuffled"] = lambda m=m: varpo.compute_advantages(rewards[perm], ids[perm], method=m)
    contenders.update(_verl_contenders(rewards[perm], ids[perm], weights))
    contenders.update(_trl_contenders(rewards, group_size, weights))
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up (allocator, lazy imports)
        fn()
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def scaling_table(results: list[dict]) -> dict:
    """time(N_hi)/time(N_lo) per contender and K, N_hi = largest N, N_lo = 4096 when measured (else smallest)."""
    out = {}
    for k in sorted({r["k"] for r in results}):
        by_n = {r["n"]: r["median_s"] for r in results if r["k"] == k}
        hi = max(by_n)
        lo = 4096 if 4096 in by_n and hi > 4096 else min(by_n)
        out[str(k)] = {"n_lo": lo, "n_hi": hi, "ratio": {c: by_n[hi][c] / by_n[lo][c] for c in by_n[hi]}}
    return out


def _git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1024, 4096, 8192, 65536])
    ap.add_argument("--k", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--g", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 = least noisy)")
    ap.add_argument("--methods", nargs="+", default=list(varpo.METHODS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "advantages.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for k in args.k:
        for n in args.n:
            med = bench_case(n, k, args.g, args.repeats, args.methods)
            results.append({"n": n, "k": k, "g": args.g, "median_s": med})
            print(f"\nN={n} K={k} G={args.g}  (median of {args.repeats}; ratio = time / varpo/grpo)")
            base = med["varpo/grpo"]
            for name, t in med.items():
                print(f"  {name:32s} {t * 1e3:10.3f} ms   x{t / base:8.2f}")
    scaling = scaling_table(results)
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "command": "python benchmarks/advantages.py " + " ".join(os.sys.argv[1:]),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "numpy": np.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results, "scaling": scaling}, indent=1))
    for k, s in scaling.items():
        print(f"\nscaling K={k} time(N={s['n_hi']})/time(N={s['n_lo']}) (linear = {s['n_hi'] / s['n_lo']:.0f}):")
        print("  " + ", ".join(f"{c}={r:.1f}" for c, r in s["ratio"].items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
