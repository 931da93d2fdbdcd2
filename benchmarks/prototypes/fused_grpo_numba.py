"""Decision evidence for issue 17 (blocked): what a fused compiled kernel would buy. NOT a production path.

Issue 17 asks every estimator, diagnostics included, to run at most 1.0x TRL's ``sum_then_normalize`` lines.
Eager PyTorch cannot get there (benchmarks/README.md, round 4): a call is ~170 tensor ops plus fresh buffers. This
script measures the alternative the owners would have to accept — a compiled kernel (numba; ``pip install numba``,
not a varpo dependency) — on the simplest estimator, ``grpo``, with the same float64 statistics and the same
diagnostics as ``varpo.compute_advantages`` (per-component group mean/std with the constant-group rule, combined
σ, the advantage, pooled batch mean/std, group_std_mean, frac_zero_std_groups, adv_* statistics), contiguous
layout only (equal groups; shuffled ids would add a scatter or a counting sort).

    pip install numba && python benchmarks/prototypes/fused_grpo_numba.py --out benchmarks/results/prototype_fused_grpo.json

It checks the kernel against ``varpo.compute_advantages(..., "grpo")`` (advantages to float32 rounding, the
diagnostics to 1e-9) before timing, then prints fused ÷ TRL and varpo ÷ TRL per cell (CPU time, 1 thread, median
of interleaved repeats, binary rewards as in ``benchmarks/advantages.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ (advantages.py's TRL lines)

import varpo  # noqa: E402
from varpo.experiments.outdir import add_out_option, out_path, write_result  # noqa: E402

try:
    import numba
except ImportError:  # evidence script: say what it needs
    sys.exit("this prototype needs numba: pip install numba")


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _grpo_fused(r, g, w, ddof, eps, adv, std_sum, mean_sum, ss_sum, mean_sq_sum):  # pragma: no cover - compiled
    """One pass over whole groups (a group's [G, K] block stays in L1 for its second and third reads).
    ``reassoc``/``contract`` let LLVM vectorize the sums over components (a different summation order than
    torch's: results agree to float64 rounding, checked in :func:`_check`); no ``nnan``/``ninf``.

    Returns (signal groups, Σa, Σa², Σ|a|, max|a|); per-component accumulators are filled in place."""
    n, k = r.shape
    p = n // g
    mean = np.empty(k)
    sd = np.empty(k)
    keep = np.empty(k)
    c = np.empty(g)
    signal = 0
    a_sum = 0.0
    a_sq = 0.0
    a_abs = 0.0
    a_max = 0.0
    for grp in range(p):
        b = grp * g
        for j in range(k):
            mean[j] = 0.0
            sd[j] = 0.0
        for i in range(b, b + g):
            for j in range(k):
                mean[j] += r[i, j]
        for j in range(k):
            mean[j] /= g
        for i in range(b, b + g):
            for j in range(k):
                d = r[i, j] - mean[j]
                sd[j] += d * d
        any_signal = False
        for j in range(k):
            ss = sd[j]
            s = math.sqrt(ss / (g - ddof)) if g > ddof else 0.0
            if s <= 1e-12 * abs(mean[j]):  # varpo's constant-group rule
                s = 0.0
                ss = 0.0
            keep[j] = 1.0 if s > 0.0 else 0.0
            any_signal = any_signal or s > 0.0
            std_sum[j] += s
            mean_sum[j] += mean[j]
            mean_sq_sum[j] += mean[j] * mean[j]
            ss_sum[j] += ss
        if any_signal:
            signal += 1
        css = 0.0
        for i in range(g):
            acc = 0.0
            for j in range(k):
                acc += w[j] * keep[j] * (r[b + i, j] - mean[j])
            c[i] = acc
            css += acc * acc
        sigma = math.sqrt(css / (g - ddof)) if g > ddof else 0.0
        den = sigma + eps
        inv = 1.0 / den if den > 0.0 else 0.0
        for i in range(g):
            a = c[i] * inv
            adv[b + i] = a
            a_sum += a
            a_sq += a * a
            a_abs += abs(a)
            if abs(a) > a_max:
                a_max = abs(a)
    return signal, a_sum, a_sq, a_abs, a_max


def fused_grpo(rewards: torch.Tensor, g: int, weights: np.ndarray, ddof: int = 1, eps: float = 1e-6):
    """Advantages [N] float32 and varpo's grpo diagnostics, from the compiled kernel (contiguous equal groups)."""
    r = rewards.numpy()
    n, k = r.shape
    p = n // g
    adv = np.empty(n, dtype=np.float32)
    std_sum, mean_sum, ss_sum, mean_sq_sum = (np.zeros(k) for _ in range(4))
    signal, a_sum, a_sq, a_abs, a_max = _grpo_fused(
        r, g, weights, ddof, eps, adv, std_sum, mean_sum, ss_sum, mean_sq_sum
    )
    mu = mean_sum / p
    pooled_ss = ss_sum + g * np.maximum(mean_sq_sum - p * mu * mu, 0.0)  # Σ_g [SS_g + G (μ_g - μ)²]
    stats = {
        "frac_zero_std_groups": 1.0 - signal / p,
        "adv_abs_mean": a_abs / n,
        "adv_sq_mean": a_sq / n,
        "adv_max_abs": a_max,
        "adv_mean": a_sum / n,
        "adv_std": math.sqrt(max(a_sq / n - (a_sum / n) ** 2, 0.0)),
    }
    for j in range(k):
        stats[f"reward_mean/{j}"] = mu[j]
        stats[f"reward_std/{j}"] = math.sqrt(pooled_ss[j] / (n - ddof))
        stats[f"group_std_mean/{j}"] = std_sum[j] / p
    return torch.from_numpy(adv), stats


def _trl(rewards: torch.Tensor, g: int, weights: torch.Tensor):
    from trl.trainer.utils import nanstd

    r = (rewards * weights.unsqueeze(0)).nansum(dim=1)
    mean = torch.nanmean(r.view(-1, g), dim=1).repeat_interleave(g)
    std = nanstd(r.view(-1, g), dim=1).repeat_interleave(g)
    return torch.nan_to_num((r - mean) / (std + 1e-4), nan=0.0)


def _check(rewards: torch.Tensor, g: int) -> None:
    k = rewards.shape[1]
    w = np.full(k, 1.0 / k)
    ids = torch.arange(rewards.shape[0] // g).repeat_interleave(g)
    want = varpo.compute_advantages(rewards, ids, "grpo")
    got, stats = fused_grpo(rewards, g, w)
    torch.testing.assert_close(got, want.advantages, rtol=2e-6, atol=2e-6)
    for key, value in stats.items():
        assert math.isclose(value, want.stats[key], rel_tol=1e-9, abs_tol=1e-12), (key, value, want.stats[key])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[65536, 1048576])
    ap.add_argument("--k", type=int, nargs="+", default=[2, 3, 8, 32])
    ap.add_argument("--g", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--repeats", type=int, default=7)
    add_out_option(
        ap, "prototype_fused_grpo", "prototype_fused_grpo.json", publish="benchmarks/results/prototype_fused_grpo.json"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    _check(torch.randint(0, 2, (96, 3), generator=gen).float(), 4)
    _check((torch.randn(4096, 5, generator=gen) * 3 + 1).float(), 16)
    rows = []
    for n in args.n:
        for k in args.k:
            for g in args.g:
                if n > 1 << 19 and k == 32 and g != 16:
                    continue  # as benchmarks/advantages.py's 1M grid
                rewards = torch.randint(0, 2, (n, k), generator=gen).float()
                ids = torch.arange(n // g).repeat_interleave(g)
                wt = torch.full((k,), 1.0 / k)
                w = np.full(k, 1.0 / k)
                contenders = {
                    "fused/grpo": lambda r=rewards, g=g, w=w: fused_grpo(r, g, w),
                    "varpo/grpo": lambda r=rewards, ids=ids: varpo.compute_advantages(r, ids, "grpo"),
                    "trl/sum_then_normalize": lambda r=rewards, g=g, wt=wt: _trl(r, g, wt),
                }
                times: dict[str, list[float]] = {name: [] for name in contenders}
                for fn in contenders.values():
                    fn()
                for _ in range(args.repeats if n < 1 << 19 else max(3, args.repeats // 2)):
                    for name, fn in contenders.items():
                        t0 = time.process_time()
                        fn()
                        times[name].append(time.process_time() - t0)
                med = {name: statistics.median(ts) for name, ts in times.items()}
                trl = med["trl/sum_then_normalize"]
                row = {"n": n, "k": k, "g": g, "median_s": med}
                row["fused / trl"] = med["fused/grpo"] / trl
                row["varpo / trl"] = med["varpo/grpo"] / trl
                rows.append(row)
                print(
                    f"N={n} K={k} G={g}: TRL {trl * 1e3:.2f} ms, fused ÷ TRL {row['fused / trl']:.2f}, "
                    f"varpo ÷ TRL {row['varpo / trl']:.2f}",
                    flush=True,
                )
    path = out_path(args.out, "prototype_fused_grpo", "prototype_fused_grpo.json")
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python", *sys.argv]),
        "numba": numba.__version__,
        "torch": torch.__version__,
        "threads": 1,
        "clock": "cpu",
    }
    write_result(path, json.dumps({"results": rows, "meta": meta}, indent=1))


if __name__ == "__main__":
    main()
