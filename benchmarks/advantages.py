"""Advantage and loss benchmark: every varpo method vs verl 0.9.1 and TRL's in-trainer formula, side by side.

Usage::

    python benchmarks/advantages.py --n 65536                  # one N, K in {2,3,8,32}, G in {4,16,64}
    python benchmarks/advantages.py --n 65536 --out benchmarks/results/advantages_64k.json
    python benchmarks/advantages.py --losses-only --out benchmarks/results/losses.json
    python benchmarks/advantages.py --memory                   # peak RSS per call, one subprocess each
    python benchmarks/advantages.py --table benchmarks/results/advantages_64k_r4.json ...   # the benchmarks/README.md summary table

Without ``--out`` results go to the run directory, ``runs/bench/advantages/advantages.json`` (untracked, see
:mod:`varpo.experiments.outdir`); ``--out`` names the file to write (committed results use
``--out benchmarks/results/...``).

All contenders of one case run in ONE process on the SAME tensors, interleaved (repeat r times: each contender
once), and we report the median. The clock is the process CPU time by default (``--clock cpu``): on a shared
machine wall time also counts the time other processes hold the core, CPU time does not; one torch thread
(``--threads 1``) so CPU time is the work. Ratios are what to read.

Contenders (N = P·G samples, K components, binary rewards; groups contiguous as TRL lays them out, ids shuffled
for verl since verl groups by uid and reorders samples):
* ``floor``: one ``torch.sum`` over the [N, K] reward matrix; ``index_add``: one segment sum of the shuffled
  [N, K] matrix into [P, K] (the stretch reference for dvao).
* ``floor/f64_group_sums`` (contiguous) and ``floor/f64_segment_sums@shuffled``: per-group, per-component sums
  of the [N, K] rewards accumulated in float64 — the least work any estimator with float64-grade statistics and
  per-component diagnostics must do (read every reward once, reduce once) — each as one torch call and as a tiled
  loop (`` tiled`` rows); the floor ratios take the faster. Where this floor alone exceeds the reference, the
  <= 1.0 target is out of reach for a float64 implementation in eager PyTorch.
* ``varpo/<method>``: :func:`varpo.compute_advantages` incl. all its diagnostics (stats), contiguous layout;
  ``varpo/<method>@shuffled``: same with shuffled group ids (the scatter path); ``... stats=False``: the same
  calls without diagnostics (``compute_advantages(stats=False)``), i.e. the advantages alone. Every varpo call
  passes one ``varpo.Workspace`` per case, as a training run keeps one across steps (without it each call pages
  in its tile buffers afresh).
* ``verl/grpo_vectorized``: ``compute_grpo_vectorized_outcome_advantage`` on the pre-summed reward Σ_k w_k r_k
  (as in verl, where the reward function combines components before the estimator); ``verl/grpo_vectorized+sum``
  includes that weighted sum of the [N, K] matrix in the timed call (what varpo's input requires).
* ``verl/grpo``, ``verl/gdpo`` (Python loops over groups): only for N <= ``--verl-loops-max-n``.
* ``trl/sum_then_normalize``, ``trl/normalize_then_sum``: the lines of TRL 1.16's
  ``_generate_and_score_completions`` that compute advantages, re-run on the same tensors with TRL's ``nanstd``.
verl estimators get response length T = 1 (their token broadcast then costs nothing extra).

Loss rows (``--losses``): B sequences x T tokens, forward + backward. ``varpo/ppo_clip/<agg>`` =
``check_mask`` once (the float 0/1 mask of the step, in the timed call) + ``policy_loss("ppo_clip") +
aggregate_loss(agg)`` on the bool mask, as a trainer that converts its mask once per step does, vs ``trl/<loss_type>``, TRL 1.16's ``_compute_loss`` lines for
the matching ``loss_type`` (token_mean = dapo/bnpo, seq_mean_token_mean = grpo, seq_mean_token_sum_norm =
dr_grpo; vl_norm has no TRL counterpart and is compared with dr_grpo, the loss it generalises);
``varpo/gvpo`` (no TRL counterpart) is compared with TRL's grpo loss, the loss a TRL user would run instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

import varpo
from varpo.aggregation import check_mask
from varpo.experiments.outdir import add_out_option, out_path, write_result


def _clock(kind: str):
    return time.process_time if kind == "cpu" else time.perf_counter


def _verl_contenders(rewards: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor, loops: bool) -> dict:
    try:
        from verl.trainer.ppo import core_algos
    except Exception as exc:  # verl is an optional extra
        print(f"(verl not importable, skipping verl rows: {type(exc).__name__}: {exc})")
        return {}
    n, k = rewards.shape
    mask = torch.ones(n, 1)
    index = ids.numpy().astype(object)  # verl passes uid strings/objects in a numpy array
    summed = (rewards @ weights).unsqueeze(1)  # [N, 1] token-level reward at the last (only) token
    out = {
        "verl/grpo_vectorized": lambda: core_algos.compute_grpo_vectorized_outcome_advantage(summed, mask, index),
        "verl/grpo_vectorized+sum": lambda: core_algos.compute_grpo_vectorized_outcome_advantage(
            (rewards @ weights).unsqueeze(1), mask, index
        ),
    }
    if loops:
        keys = [f"r{j}" for j in range(k)]
        non_tensor = {key: rewards[:, j].numpy() for j, key in enumerate(keys)}
        batch = {"prompts": torch.zeros(n, 1, dtype=torch.long), "attention_mask": torch.ones(n, 2, dtype=torch.long)}
        config = {"gdpo_reward_keys": keys, "gdpo_reward_weights": weights.tolist()}
        out["verl/grpo"] = lambda: core_algos.compute_grpo_outcome_advantage(summed, mask, index)
        out["verl/gdpo"] = lambda: core_algos.compute_gdpo_outcome_advantage(
            summed, mask, index, config=config, non_tensor_batch=non_tensor, batch=batch
        )
    return out


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


def _interleaved(contenders: dict, repeats: int, clock) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up (allocator, lazy imports, workspaces)
        fn()
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


_FLOOR_BUF = torch.empty(1 << 18, dtype=torch.float64)


def _f64_sums_tiled(rewards: torch.Tensor, ids: torch.Tensor | None, p: int, g: int) -> torch.Tensor:
    """Per-group float64 sums of ``rewards [N, K]``: 2 MiB float64 tiles (component-major for K <= 8, as varpo's
    fast path), summed over whole groups (``ids=None``, contiguous) or scattered by ``index_add_`` (shuffled)."""
    n, k = rewards.shape
    kmajor = k <= 8
    out = torch.zeros((k, p) if kmajor else (p, k), dtype=torch.float64)
    step = max(g, (1 << 18) // k // g * g)
    for r0 in range(0, n, step):
        x = rewards[r0 : r0 + step]
        if kmajor:
            t = _FLOOR_BUF[: x.numel()].view(k, -1).copy_(x.T)
            if ids is None:
                out[:, r0 // g : (r0 + x.shape[0]) // g] = t.view(k, -1, g).sum(-1)
            else:
                out.index_add_(1, ids[r0 : r0 + step], t)
        else:
            t = _FLOOR_BUF[: x.numel()].view(x.shape).copy_(x)
            if ids is None:
                out[r0 // g : (r0 + x.shape[0]) // g] = t.view(-1, g, k).sum(1)
            else:
                out.index_add_(0, ids[r0 : r0 + step], t)
    return out


def bench_case(
    n: int, k: int, group_size: int, repeats: int, methods: list[str], clock, loops: bool, stats_false: bool = True
) -> dict:
    gen = torch.Generator().manual_seed(0)
    p = n // group_size
    rewards = torch.randint(0, 2, (p * group_size, k), generator=gen).float()
    ids = torch.arange(p).repeat_interleave(group_size)
    perm = torch.randperm(p * group_size, generator=gen)
    rewards_s, ids_s = rewards[perm].contiguous(), ids[perm].contiguous()
    weights = torch.full((k,), 1.0 / k)
    contenders = {
        "floor": lambda: rewards.sum(),
        "index_add": lambda: torch.zeros(p, k).index_add_(0, ids_s, rewards_s),
        # The float64 floor: per-group, per-component sums accumulated in float64 (the least work any estimator with
        # float64-grade statistics and per-component diagnostics does: one read of every reward, one reduction),
        # each as one torch call and tiled through a cached buffer; the ratios take the faster of the two.
        "floor/f64_group_sums": lambda: rewards.view(p, group_size, k).sum(1, dtype=torch.float64),
        "floor/f64_group_sums tiled": lambda: _f64_sums_tiled(rewards, None, p, group_size),
        "floor/f64_segment_sums@shuffled": lambda: torch.zeros(p, k, dtype=torch.float64).index_add_(
            0, ids_s, rewards_s.double()
        ),
        "floor/f64_segment_sums@shuffled tiled": lambda: _f64_sums_tiled(rewards_s, ids_s, p, group_size),
    }
    ws = varpo.Workspace()  # the tile buffers a training run keeps across steps (compute_advantages(workspace=))
    for m in methods:
        contenders[f"varpo/{m}"] = lambda m=m: varpo.compute_advantages(rewards, ids, method=m, workspace=ws)
        contenders[f"varpo/{m}@shuffled"] = lambda m=m: varpo.compute_advantages(
            rewards_s, ids_s, method=m, workspace=ws
        )
        if stats_false:
            contenders[f"varpo/{m} stats=False"] = lambda m=m: varpo.compute_advantages(
                rewards, ids, method=m, stats=False, workspace=ws
            )
            contenders[f"varpo/{m}@shuffled stats=False"] = lambda m=m: varpo.compute_advantages(
                rewards_s, ids_s, method=m, stats=False, workspace=ws
            )
    contenders.update(_verl_contenders(rewards_s, ids_s, weights, loops))
    contenders.update(_trl_contenders(rewards, group_size, weights))
    return _interleaved(contenders, repeats, clock)


def _trl_loss(logp, old, adv, mask, loss_type: str, max_len: int, eps_low=0.2, eps_high=0.2):
    """TRL 1.16 ``GRPOTrainer._compute_loss`` lines (token-level IS, beta = 0) for ``loss_type``."""
    log_ratio = logp - old
    coef_1 = torch.exp(log_ratio)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    a = adv.unsqueeze(1)
    per_token_loss = -torch.min(coef_1 * a, coef_2 * a)
    if loss_type == "grpo":
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    else:  # dr_grpo
        loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_len)
    # TRL's clip metrics (masked means of the clipped regions)
    with torch.no_grad():
        low = (coef_1 < 1 - eps_low) & (a < 0)
        high = (coef_1 > 1 + eps_high) & (a > 0)
        m = mask.sum().clamp(min=1.0)
        metrics = torch.stack([(low * mask).sum() / m, (high * mask).sum() / m, ((low | high) * mask).sum() / m])
        metrics.tolist()
    return loss


TRL_LOSS_FOR = {
    "token_mean": "bnpo",
    "seq_mean_token_mean": "grpo",
    "seq_mean_token_sum_norm": "dr_grpo",
    "vl_norm": "dr_grpo",
}


def bench_losses(b: int, t: int, group_size: int, repeats: int, clock) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1)
    old = -torch.rand(b, t, generator=gen) * 3
    logp0 = old + 0.1 * torch.randn(b, t, generator=gen)
    lengths = torch.randint(t // 4, t + 1, (b,), generator=gen)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).float()
    adv = torch.randn(b, generator=gen)
    ids = torch.arange(b // group_size).repeat_interleave(group_size)
    contenders = {}

    def step(fn):
        def run():
            logp = logp0.clone().requires_grad_(True)
            fn(logp).backward()

        return run

    def ppo_step(lp, agg):
        # the step's mask is checked once (a float 0/1 mask, as TRL's) and handed on as bool, as a trainer would
        checked = check_mask(mask)
        loss = varpo.policy_loss("ppo_clip", logprobs=lp, old_logprobs=old, advantages=adv, mask=checked)[0]
        return varpo.aggregate_loss(loss, checked, agg, max_length=t)

    for agg in varpo.AGGREGATIONS:
        contenders[f"varpo/ppo_clip/{agg}"] = step(lambda lp, agg=agg: ppo_step(lp, agg))
    contenders["varpo/gvpo/token_mean"] = step(
        lambda lp: (lambda loss: varpo.aggregate_loss(loss, torch.ones_like(loss), "token_mean"))(
            varpo.policy_loss("gvpo", logprobs=lp, old_logprobs=old, advantages=adv, mask=mask, group_ids=ids)[0]
        )
    )
    for loss_type in ("bnpo", "grpo", "dr_grpo"):
        contenders[f"trl/{loss_type}"] = step(lambda lp, lt=loss_type: _trl_loss(lp, old, adv, mask, lt, t))
    return _interleaved(contenders, repeats, clock)


def scaling_table(results: list[dict]) -> dict:
    """time(N_hi)/time(N_lo) per contender, K and G (N_hi = largest N, N_lo = smallest)."""
    out = {}
    for k in sorted({r["k"] for r in results}):
        for g in sorted({r["g"] for r in results}):
            by_n = {r["n"]: r["median_s"] for r in results if r["k"] == k and r["g"] == g}
            if len(by_n) < 2:
                continue
            hi, lo = max(by_n), min(by_n)
            out[f"k={k},g={g}"] = {"n_lo": lo, "n_hi": hi, "ratio": {c: by_n[hi][c] / by_n[lo][c] for c in by_n[hi]}}
    return out


def ratios(med: dict[str, float]) -> dict[str, float]:
    """The issue-17 ratios: contiguous varpo rows / TRL sum_then_normalize, shuffled rows / verl vectorized."""
    out = {}
    trl = med.get("trl/sum_then_normalize")
    verl = med.get("verl/grpo_vectorized")
    verl_sum = med.get("verl/grpo_vectorized+sum")
    floors = {
        "floor/f64_group_sums": ("floor/f64_group_sums", "floor/f64_group_sums tiled"),
        "floor/f64_segment_sums@shuffled": ("floor/f64_segment_sums@shuffled", "floor/f64_segment_sums@shuffled tiled"),
    }
    for name, variants in floors.items():
        times = [med[v] for v in variants if v in med]
        if times and "@shuffled" in name and verl:
            out[f"{name} / verl"] = min(times) / verl
        elif times and "@shuffled" not in name and trl:
            out[f"{name} / trl"] = min(times) / trl
    for name, t in med.items():
        if not name.startswith("varpo/"):
            continue
        if "@shuffled" in name:
            if verl:
                out[f"{name} / verl"] = t / verl
            if verl_sum:
                out[f"{name} / verl+sum"] = t / verl_sum
            if name.startswith("varpo/dvao@shuffled"):
                out[f"{name} / index_add"] = t / med["index_add"]
        elif trl:
            out[f"{name} / trl"] = t / trl
    return out


def memory_rows(ns: list[int], ks: list[int], g: int, methods: list[str]) -> list[dict]:
    """Peak RSS of one compute_advantages call (fresh subprocess each, Linux): the peak mark is reset right before
    the call (``/proc/self/clear_refs``), so the row is what the call itself adds on top of its inputs."""
    code = (
        "import sys, torch, varpo\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key):\n"
        "            return int(line.split()[1]) * 1024\n"
        "torch.set_num_threads(1)\n"
        "n, k, g, m, shuffle = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == '1'\n"
        "r = torch.randint(0, 2, (n, k)).float(); ids = torch.arange(n // g).repeat_interleave(g)\n"
        "if shuffle:\n    p = torch.randperm(n); r, ids = r[p].contiguous(), ids[p].contiguous(); del p\n"
        "varpo.compute_advantages(r[:64], ids[:64] * 0, method=m)\n"
        "open('/proc/self/clear_refs', 'w').write('5')  # reset the peak-RSS mark (VmHWM) to the current RSS\n"
        "before = status('VmRSS:')\n"
        "varpo.compute_advantages(r, ids, method=m)\n"
        "print(status('VmHWM:') - before)\n"
    )
    rows = []
    for m in methods:
        for shuffle in ("0", "1"):
            for k in ks:
                for n in ns:
                    out = subprocess.run(
                        [sys.executable, "-c", code, str(n), str(k), str(g), m, shuffle],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    peak = int(out.stdout.strip().splitlines()[-1])  # bytes above the RSS before the call
                    rows.append(
                        {
                            "method": m,
                            "shuffled": shuffle == "1",
                            "n": n,
                            "k": k,
                            "g": g,
                            "peak_rss_bytes": peak,
                            "per_reward_matrix": peak / (n * k * 4),
                        }
                    )
                    print(
                        f"  memory {m:8s} shuffled={shuffle} N={n:8d} K={k:3d}  peak +{peak / 2**20:8.1f} MiB"
                        f"  = {peak / (n * k * 4):5.2f} x float32 reward matrix"
                    )
    return rows


def _git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown_table(paths: list[str]) -> str:
    """The benchmarks/README.md table from committed result files: per cell, each method's ``÷ TRL · ÷ verl``
    (both <= 1.0 is issue 17's target), the float64 floor's same two ratios, and dvao@shuffled ÷ index_add."""
    rows = []
    for path in paths:
        with open(path) as f:
            rows += json.load(f).get("results", [])
    methods = [m for m in varpo.METHODS if any(f"varpo/{m} / trl" in r["ratios"] for r in rows)]
    head = ["N", "K", "G", "TRL / verl ms", *[f"`{m}`" for m in methods], "f64 floor", "`dvao@shuffled` ÷ index_add"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["n"], r["k"], r["g"])):
        rat, med = r["ratios"], r["median_s"]
        n = f"{r['n'] // 1024}k" if r["n"] < 1 << 20 else f"{r['n'] // (1 << 20)}M"
        ref = f"{med.get('trl/sum_then_normalize', float('nan')) * 1e3:.1f} / {med.get('verl/grpo_vectorized', float('nan')) * 1e3:.1f}"
        cells = [
            f"{_fmt(rat.get(f'varpo/{m} / trl'))} · {_fmt(rat.get(f'varpo/{m}@shuffled / verl'))}" for m in methods
        ]
        floor = (
            f"{_fmt(rat.get('floor/f64_group_sums / trl'))} · {_fmt(rat.get('floor/f64_segment_sums@shuffled / verl'))}"
        )
        lines.append(
            f"| {n} | {r['k']} | {r['g']} | {ref} | " + " | ".join(cells) + f" | {floor} | "
            f"{_fmt(rat.get('varpo/dvao@shuffled / index_add'))} |"
        )
    scaling = scaling_table(rows)
    if scaling:
        cols = ["varpo/grpo", "varpo/grpo@shuffled", "varpo/dvao", "varpo/dvao@shuffled", "varpo/rvpo"]
        cols += ["trl/sum_then_normalize", "verl/grpo_vectorized"]
        lines += [
            "",
            "time(N_hi) / time(N_lo):",
            "",
            "| K, G | N_hi / N_lo | " + " | ".join(f"`{c}`" for c in cols) + " |",
        ]
        lines.append("|" + "---|" * (len(cols) + 2))
        for key, row in scaling.items():
            vals = " | ".join(_fmt(row["ratio"].get(c)) for c in cols)
            lines.append(f"| {key} | {row['n_hi'] / row['n_lo']:.0f} | {vals} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--table":  # python benchmarks/advantages.py --table a.json b.json
        print(markdown_table(sys.argv[2:]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[65536])
    ap.add_argument("--k", type=int, nargs="+", default=[2, 3, 8, 32])
    ap.add_argument("--g", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 = least noisy)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--methods", nargs="+", default=list(varpo.METHODS))
    ap.add_argument("--verl-loops-max-n", type=int, default=16384, help="verl grpo/gdpo Python loops only up to N")
    ap.add_argument("--no-stats-false", action="store_true", help="leave out the `<method> stats=False` rows")
    ap.add_argument("--losses", action="store_true", help="also the loss rows (B=--loss-b, T=--loss-t)")
    ap.add_argument("--losses-only", action="store_true")
    ap.add_argument("--loss-b", type=int, default=256)
    ap.add_argument("--loss-t", type=int, default=1024)
    ap.add_argument("--memory", action="store_true", help="peak-RSS rows (subprocess per call) instead of timings")
    add_out_option(ap, "advantages", "advantages.json", publish="benchmarks/results/advantages_64k.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = _clock(args.clock)
    stamp = dt.datetime.now(dt.timezone.utc)
    path = out_path(args.out, "advantages", "advantages.json")
    payload: dict = {}
    if args.memory:
        payload["memory"] = memory_rows(args.n, args.k, args.g[0], args.methods)
    elif not args.losses_only:
        results = []
        for k in args.k:
            for g in args.g:
                for n in args.n:
                    loops = n <= args.verl_loops_max_n
                    med = bench_case(n, k, g, args.repeats, args.methods, clock, loops, not args.no_stats_false)
                    rat = ratios(med)
                    results.append({"n": n, "k": k, "g": g, "median_s": med, "ratios": rat})
                    print(f"\nN={n} K={k} G={g}  (median of {args.repeats}, {args.clock} clock)")
                    for name, t in med.items():
                        print(f"  {name:32s} {t * 1e3:10.3f} ms")
                    worst = max(
                        (v, key)
                        for key, v in rat.items()
                        if "index_add" not in key and "verl+sum" not in key and not key.startswith("floor/")
                    )
                    print(f"  worst ratio: {worst[1]} = {worst[0]:.2f}")
        payload["results"] = results
        payload["scaling"] = scaling_table(results)
    if args.losses or args.losses_only:
        med = bench_losses(args.loss_b, args.loss_t, 16, max(args.repeats, 5), clock)
        rat = {}
        for name, t in med.items():
            if name.startswith("varpo/"):
                agg = name.split("/")[-1]
                ref = "grpo" if name.startswith("varpo/gvpo") else TRL_LOSS_FOR[agg]
                rat[f"{name} / trl/{ref}"] = t / med[f"trl/{ref}"]
        payload["losses"] = {"b": args.loss_b, "t": args.loss_t, "median_s": med, "ratios": rat}
        print(f"\nlosses B={args.loss_b} T={args.loss_t}, forward+backward:")
        for name, r in rat.items():
            print(f"  {name:48s} x{r:.2f}")
    payload["meta"] = {
        "date": stamp.isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "command": "python benchmarks/advantages.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "clock": args.clock,
        "numpy": np.__version__,
        "peak_rss_process_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    write_result(path, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
