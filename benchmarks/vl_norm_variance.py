"""VL Norm's variance and bias claims measured on the real ``builtin:tiny`` model (docs/claims.md, rows V1–V6).

He et al. 2025 (ΔL / VL Norm) write every aggregation as ĝ = Σ_i x_i g_i over a group of G responses, where
g_i = Σ_t A_i ∇_θ log π_θ(o_it | q, o_i<t) is response i's *unnormalized* policy gradient (§2.1) and x_i the
aggregation's weight (§2.3, Table 1):

    token_mean (DAPO)                    x_i = 1 / Σ_j L_j
    seq_mean_token_mean (GRPO)           x_i = 1 / (G L_i)
    seq_mean_token_sum_norm (Dr. GRPO)   x_i = 1 / (G M)
    vl_norm (α = 1)                      x_i = L_i^-α / (M Σ_j L_j^-α)

The weights are not re-typed here: they are read off ``varpo.aggregation.aggregate_loss`` by autograd
(:func:`aggregation_weights`), so this measures the shipped code. Variance is the paper's total variance
Var(ĝ) = E‖ĝ − Eĝ‖² (footnote 1), CV(ĝ) = √Var(ĝ) / ‖Eĝ‖ (§2.3). "Unbiased" in the paper means E ĝ = ∇J / M
(§3, Problem Definition), which holds for Dr. GRPO by construction (it is the plain Monte-Carlo mean of the g_i, up
to the constant 1/M) and for VL Norm *if* E[g_i | L_i] = ∇J for every length (the paper's premise). So the reference
for bias is Dr. GRPO's expectation: ρ_m = E ĝ_m · E ĝ_dr / ‖E ĝ_dr‖² (1 = the unbiased magnitude along the
unbiased direction), and its dependence on length: γ_m(T) = Σ_{r∈T} ĝ_{r,m}·u / Σ_{r∈T} ĝ_{r,dr}·u over the groups
r of a length tertile T (u = E ĝ_dr / ‖E ĝ_dr‖).

Design: the warm-started testbed policy (``benchmarks/testbed/easy_hard.yaml``: SFT seed 0, T = 1, M = 16 new
tokens, rewards = the sum of the task's four rule rewards, GRPO advantages (r − mean) / (std + 1e-4), std with
ddof = 1 as TRL). For each of ``--prompts`` held-out-free train prompts, ``--groups`` independent groups of ``--g``
completions are sampled; every g_i is computed by its own backward pass (all 843 904 parameters), and every
statistic comes from the per-prompt Gram matrix K_ij = g_i · g_j (float64), so nothing of size groups × parameters
is kept twice. Per prompt, with R groups:

    μ_m = (1/R) Σ_r ĝ_{r,m};   Var_m = (1/(R−1)) Σ_r ‖ĝ_{r,m} − μ_m‖²   (unbiased)
    ‖E ĝ_m‖² ≈ ‖μ_m‖² − Var_m / R   (removes the noise floor Var/R of ‖μ‖²; the plain ‖μ‖² is also reported)
    E ĝ_m · E ĝ_dr ≈ μ_m · μ_dr − C_m,dr / R   (C = trace of the sample cross-covariance, ddof = 1)

A prompt is the replicate (its own ∇J); intervals are 95 % t over prompts of the per-prompt statistic (paired
across aggregations: the same draws serve all four). A length L_i counts the completion's tokens up to and including
its EOS, as TRL's completion mask does (a truncated completion has L_i = M).

    python benchmarks/vl_norm_variance.py --prompts 16 --groups 32 --out benchmarks/results/vl_norm_variance.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from varpo import significance as sig
from varpo.aggregation import AGGREGATIONS, aggregate_loss
from varpo.experiments.outdir import out_path

LABELS = {
    "token_mean": "token_mean (DAPO)",
    "seq_mean_token_mean": "seq_mean_token_mean (GRPO)",
    "seq_mean_token_sum_norm": "seq_mean_token_sum_norm (Dr. GRPO)",
    "vl_norm": "vl_norm (α = 1)",
}
REFERENCE = "seq_mean_token_sum_norm"  # Dr. GRPO: E ĝ = ∇J / M exactly


def aggregation_weights(lengths: torch.Tensor, mode: str, max_length: int, alpha: float = 1.0) -> torch.Tensor:
    """x_i ``[G]`` of ``mode`` for a group with ``lengths [G]``: ∂ aggregate_loss / ∂ l_it (constant over a row's
    unmasked tokens for every built-in mode), read off varpo's own aggregation by autograd."""
    lengths = lengths.to(torch.long)
    width = int(lengths.max())
    mask = torch.arange(width)[None, :] < lengths[:, None]
    per_token = torch.zeros(mask.shape, dtype=torch.float64, requires_grad=True)
    aggregate_loss(per_token, mask, mode, max_length=max_length, alpha=alpha).backward()
    return per_token.grad[:, 0].clone()  # every row has L_i >= 1


def completion_lengths(completion_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """``[N]`` tokens up to and including the first EOS (the whole width if there is none), as TRL masks them."""
    is_eos = completion_ids == eos_id
    width = torch.full((is_eos.shape[0],), is_eos.shape[1], dtype=torch.long)
    return torch.where(is_eos.any(1), is_eos.long().argmax(1) + 1, width)


def per_sample_gradients(
    model, prompt_ids: torch.Tensor, completion_ids: torch.Tensor, lengths: torch.Tensor, advantages: torch.Tensor
) -> torch.Tensor:
    """``[N, D]`` float32: row i = g_i = ∇_θ Σ_{t<L_i} A_i log π_θ(o_it | q, o_i<t) (ascent direction), one backward
    pass per response (``prompt_ids [P]`` shared, ``completion_ids [N, T]``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = torch.empty(len(completion_ids), sum(p.numel() for p in params))
    for i in range(len(completion_ids)):
        seq = torch.cat([prompt_ids, completion_ids[i, : lengths[i]]])[None]
        logits = model(input_ids=seq).logits[0, len(prompt_ids) - 1 : -1].float()
        logp = torch.log_softmax(logits, -1).gather(1, seq[0, len(prompt_ids) :, None]).squeeze(1)
        grads = torch.autograd.grad(advantages[i] * logp.sum(), params, allow_unused=True)
        out[i] = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])
    return out


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO advantages per group: ``rewards [R, G]`` -> (r − mean) / (std + eps), std with ddof = 1 (TRL)."""
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + eps)


def prompt_statistics(gram: np.ndarray, weights: dict[str, np.ndarray], groups: int) -> dict:
    """Per-prompt statistics of each aggregation from the per-sample Gram matrix.

    Args:
        gram: ``[N, N]`` float64, K_ij = g_i · g_j, samples ordered group by group (N = groups · G).
        weights: mode -> ``[N]`` weights x_i (each group's weights from its own lengths).
    Returns: mode -> {var, mean_sq_naive, mean_sq, cv, rho, proj_per_group [R]} (see module docstring).
    """
    n = gram.shape[0]
    g = n // groups
    modes = list(weights)
    # X [N, R·modes]: column (m, r) holds mode m's weights on group r's rows, so ĝ_{r,m} = Σ_i X_i,(m,r) g_i.
    cols = []
    for m in modes:
        x = np.zeros((n, groups))
        for r in range(groups):
            x[r * g : (r + 1) * g, r] = weights[m][r * g : (r + 1) * g]
        cols.append(x)
    X = np.concatenate(cols, 1)
    E = X.T @ gram @ X  # Gram of the estimators, [(m, r), (m', r')]
    blocks = {
        (a, b): E[i * groups : (i + 1) * groups, j * groups : (j + 1) * groups]
        for i, a in enumerate(modes)
        for j, b in enumerate(modes)
    }
    centre = np.eye(groups) - 1.0 / groups

    def mean_dot(a, b):
        return float(blocks[a, b].sum()) / groups**2

    def cov_trace(a, b):  # (1/(R-1)) Σ_r (ĝ_ra − μ_a)·(ĝ_rb − μ_b)
        return float(np.trace(centre @ blocks[a, b] @ centre)) / (groups - 1)

    ref = REFERENCE
    ref_sq = mean_dot(ref, ref) - cov_trace(ref, ref) / groups
    ref_sq_pos = max(ref_sq, 1e-300)
    out = {}
    for m in modes:
        var = cov_trace(m, m)
        naive = mean_dot(m, m)
        mean_sq = naive - var / groups
        dot_ref = mean_dot(m, ref) - cov_trace(m, ref) / groups
        # ĝ_{r,m} · u with u = μ_dr / ‖μ_dr‖ (the sample direction; used only for ratios over tertiles)
        proj = blocks[m, ref].sum(1) / groups / math.sqrt(max(mean_dot(ref, ref), 1e-300))
        out[m] = dict(
            var=var,
            mean_sq_naive=naive,
            mean_sq=mean_sq,
            cv=math.sqrt(var / mean_sq) if mean_sq > 0 else math.inf,
            cv_naive=math.sqrt(var / naive) if naive > 0 else math.inf,
            rho=dot_ref / ref_sq_pos,
            proj_per_group=proj.tolist(),
        )
    out["_ref_mean_sq"] = ref_sq
    return out


def length_profile(gram: np.ndarray, lengths: np.ndarray) -> dict:
    """Per-sample premise checks (§2.2): for each length L, n, mean ‖g_i − ḡ‖² (Var(g_i) ≈ V·L) and
    E[g_i · ḡ | L] / ‖ḡ‖² (the premise E[g_i | L] = ∇J makes it 1 at every L); ḡ = mean of all g_i of the prompt."""
    n = len(lengths)
    mean_dot_i = gram.mean(1)  # g_i · ḡ
    gbar_sq = float(gram.mean())
    dev = np.diag(gram) - 2 * mean_dot_i + gbar_sq
    out = {}
    for L in np.unique(lengths):
        sel = lengths == L
        out[int(L)] = dict(
            n=int(sel.sum()),
            dev_sq=float(dev[sel].mean()),
            proj=float(mean_dot_i[sel].mean() / gbar_sq) if gbar_sq > 0 else math.nan,
        )
    assert n == len(dev)
    return out


def unit_stat(metric: str, values) -> dict:
    """The project's standard over prompts (``varpo.significance.paired``: mean ± s.e., t interval, exact sign-flip
    p, MDE at 80 % power) of per-prompt ``values``, plus their s.d. (ddof = 1) for sizing later runs."""
    v = [float(x) for x in values]
    return sig.paired(metric, v).to_dict() | dict(sd=float(np.std(v, ddof=1)) if len(v) > 1 else math.nan)


def tertile_gain(proj: dict[str, np.ndarray], mean_len: np.ndarray) -> dict[str, dict[str, float]]:
    """γ_m(T) = Σ_{r∈T} ĝ_{r,m}·u / Σ_{r∈T} ĝ_{r,dr}·u for the shortest and longest third of groups (by mean L)."""
    order = np.argsort(mean_len, kind="stable")
    k = len(order) // 3
    short, long_ = order[:k], order[-k:]
    out = {}
    for m, p in proj.items():
        ps = p[short].sum() / proj[REFERENCE][short].sum()
        pl = p[long_].sum() / proj[REFERENCE][long_].sum()
        out[m] = dict(short=float(ps), long=float(pl), long_minus_short=float(pl - ps))
    return out


def run(args) -> dict:
    from varpo import models
    from varpo.run import data, sft
    from varpo.run.spec import load_config

    torch.set_num_threads(args.threads)
    resolved = load_config(args.config)
    spec = resolved.spec
    max_len = int(resolved.train["max_completion_length"])
    start = sft.warm_start(spec, seed=args.sft_seed) if args.warm_start else Path(sft.base_model(spec))
    model, tok = models.load(str(start))
    model.eval()  # no dropout: g_i is the gradient of the sampled log-probabilities
    task = data.task_of(spec)
    prompts = data.train_data(spec)
    rows = [prompts[i] for i in range(args.prompt_offset, args.prompt_offset + args.prompts)]
    results, profiles = [], []
    t0 = time.time()
    for p_index, row in enumerate(rows):
        prompt_ids = torch.tensor(tok(row["prompt"], add_special_tokens=False)["input_ids"])
        n = args.groups * args.g
        torch.manual_seed(args.seed * 100_003 + args.prompt_offset + p_index)
        with torch.no_grad():
            out = model.generate(
                input_ids=prompt_ids[None].repeat(n, 1),
                attention_mask=torch.ones(n, len(prompt_ids), dtype=torch.long),
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_len,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        comp = out[:, len(prompt_ids) :]
        if comp.shape[1] < max_len:  # generate stops early when every row has ended: pad to M for the masks
            comp = torch.cat([comp, torch.full((n, max_len - comp.shape[1]), tok.pad_token_id)], 1)
        lengths = completion_lengths(comp, tok.eos_token_id)
        texts = tok.batch_decode(comp, skip_special_tokens=True)
        extra = {k: v for k, v in row.items() if k != "prompt"}
        rewards = torch.tensor(
            [sum(v or 0.0 for v in task.score(t, **extra).values()) for t in texts], dtype=torch.float64
        ).view(args.groups, args.g)
        adv = group_advantages(rewards).reshape(-1).float()
        grads = per_sample_gradients(model, prompt_ids, comp, lengths, adv)
        gram = (grads.double() @ grads.double().T).numpy()
        del grads
        weights = {
            m: torch.cat(
                [aggregation_weights(lengths[r * args.g : (r + 1) * args.g], m, max_len) for r in range(args.groups)]
            ).numpy()
            for m in AGGREGATIONS
        }
        st = prompt_statistics(gram, weights, args.groups)
        mean_len = lengths.view(args.groups, args.g).double().mean(1).numpy()
        proj = {m: np.asarray(st[m].pop("proj_per_group")) for m in AGGREGATIONS}
        tert = tertile_gain(proj, mean_len)
        prof = length_profile(gram, lengths.numpy())
        # Var(g_i) ∝ L (§2.2): least-squares slope of ‖g_i − ḡ‖² on L_i, relative to the mean deviation
        dev = np.diag(gram) - 2 * gram.mean(1) + gram.mean()
        lf = lengths.numpy().astype(float)
        slope = float(np.polyfit(lf, dev, 1)[0] / dev.mean()) if lf.std() > 0 else math.nan
        results.append(
            dict(
                prompt=row["prompt"],
                lengths_mean=float(lf.mean()),
                lengths_sd=float(lf.std()),
                reward_mean=float(rewards.mean()),
                groups_with_signal=int((rewards.std(1) > 0).sum()),
                modes={m: st[m] for m in AGGREGATIONS},
                tertiles=tert,
                var_slope_per_token=slope,
            )
        )
        profiles.append(prof)
        cv = " ".join(f"{m.split('_')[0][:5]}={st[m]['cv']:.2f}" for m in AGGREGATIONS)
        print(
            f"[{p_index + 1}/{len(rows)}] L {lf.mean():.1f}±{lf.std():.1f} reward {float(rewards.mean()):.2f} "
            f"signal {results[-1]['groups_with_signal']}/{args.groups} CV {cv} ({time.time() - t0:.0f}s)",
            flush=True,
        )
    return dict(per_prompt=results, length_profiles=profiles, seconds=time.time() - t0, start_model=str(start))


def summarize(per_prompt: list[dict], length_profiles: list[dict] | None = None, premise: dict | None = None) -> dict:
    """Claims V1–V6 and descriptive statistics over prompts (the replicate); Holm over the directional rows (V1, V2,
    V4, V6a, V6b), equivalence rows (V3, V5, V6c) read from their 95 % interval. ``premise`` (a previous summary's
    per-length table) is reused when the per-sample ``length_profiles`` are not at hand (``--summarize``)."""
    pp = per_prompt
    ok = [p for p in pp if all(p["modes"][m]["mean_sq"] > 0 for m in AGGREGATIONS)]

    def stat(key, m):
        return [p["modes"][m][key] for p in ok]

    def rel(a, b, key="cv"):
        return [p["modes"][a][key] / p["modes"][b][key] - 1 for p in ok]

    vl, dr, tm, gr = "vl_norm", "seq_mean_token_sum_norm", "token_mean", "seq_mean_token_mean"
    rows = {
        "V1 CV(vl_norm)/CV(Dr. GRPO) - 1": (rel(vl, dr), "<0"),
        "V2 CV(vl_norm)/CV(token_mean) - 1": (rel(vl, tm), "<0"),
        "V3 CV(vl_norm)/CV(GRPO) - 1": (rel(vl, gr), "~0:0.05"),
        "V4 Var(vl_norm)/Var(Dr. GRPO) - 1": (rel(vl, dr, "var"), "<0"),
        "V5 rho(vl_norm) - 1": ([r - 1 for r in stat("rho", vl)], "~0:0.1"),
        "V6a gain long-short tertile: GRPO - Dr. GRPO": (
            [p["tertiles"][gr]["long_minus_short"] for p in ok],
            "<0",
        ),
        "V6b gain long-short tertile: token_mean - Dr. GRPO": (
            [p["tertiles"][tm]["long_minus_short"] for p in ok],
            "<0",
        ),
        "V6c gain long-short tertile: vl_norm - Dr. GRPO": (
            [p["tertiles"][vl]["long_minus_short"] for p in ok],
            "~0:0.1",
        ),
    }
    results = {name: sig.paired(name, [float(x) for x in values]) for name, (values, _) in rows.items()}
    family = [n for n, (_, e) in rows.items() if e in ("<0", ">0")]
    for n, r in zip(family, sig.holm_family([results[n] for n in family]), strict=True):
        results[n] = r
    out = {}
    for name, (values, expected) in rows.items():
        r = results[name]
        if name not in family:
            r = replace(r, p_holm=r.p, family=1)
        out[name] = r.to_dict() | dict(
            expected=expected, sd=float(np.std(values, ddof=1)), verdict=verdict(r, expected)
        )
    per_mode = {
        m: dict(
            cv=unit_stat(f"CV({m})", stat("cv", m)),
            cv_naive=unit_stat(f"CV({m}), noise floor kept", stat("cv_naive", m)),
            rho=unit_stat(f"rho({m})", stat("rho", m)),
            tertile_short=unit_stat(f"gain({m}), shortest third", [p["tertiles"][m]["short"] for p in ok]),
            tertile_long=unit_stat(f"gain({m}), longest third", [p["tertiles"][m]["long"] for p in ok]),
        )
        for m in AGGREGATIONS
    }
    # pooled §2.2 premise: per length, mean over prompts of (dev²(L) / mean dev²) and proj(L)
    pooled: dict[int, dict[str, list[float]]] = {}
    for prof in length_profiles or []:
        mean_dev = sum(v["dev_sq"] * v["n"] for v in prof.values()) / sum(v["n"] for v in prof.values())
        for L, v in prof.items():
            d = pooled.setdefault(int(L), {"dev_rel": [], "proj": [], "n": []})
            d["dev_rel"].append(v["dev_sq"] / mean_dev)
            d["proj"].append(v["proj"])
            d["n"].append(v["n"])
    premise = {
        L: dict(
            n=int(sum(d["n"])),
            prompts=len(d["n"]),
            dev_rel=float(np.mean(d["dev_rel"])),
            proj=float(np.mean(d["proj"])),
        )
        for L, d in sorted(pooled.items())
    } or (premise or {})
    return dict(
        claims=out,
        per_mode=per_mode,
        var_slope_per_token=unit_stat("Var(g_i) slope per token / mean", [p["var_slope_per_token"] for p in pp]),
        premise_by_length=premise,
        prompts_used=len(ok),
        prompts_dropped=[p["prompt"] for p in pp if p not in ok],
    )


def verdict(r: sig.Result, expected: str) -> str:
    """'<0' / '>0': established when p_holm < ALPHA with the expected sign, refuted (reverse) with the other sign;
    '~0:margin': equivalent when the 95 % interval lies within ±margin."""
    if expected.startswith("~0"):
        margin = float(expected.split(":")[1])
        return f"equivalent within ±{margin:g}" if -margin <= r.low and r.high <= margin else "not established"
    if r.p_holm < sig.ALPHA and r.estimate != 0:
        return "established" if (r.estimate > 0) == (expected == ">0") else "refuted (reverse)"
    return f"not established (MDE {r.mde:.3g})"


def rows_of(summary: dict) -> list[dict]:
    """The claims as a list with an ``id`` (V1, V6a, ...) per row: what docs/results/claims_index.yaml selects."""
    return [dict(id=name.split()[0], name=name, **c) for name, c in summary["claims"].items()]


def _print(summary: dict) -> None:
    for name, c in summary["claims"].items():
        print(
            f"{name}: {c['estimate']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] n {c['n']} p {c['p']:.3g} "
            f"p_holm {c['p_holm']:.3g} (family {c['family']}) MDE {c['mde']:.4f} (expected {c['expected']}: "
            f"{c['verdict']})"
        )
    for m, d in summary["per_mode"].items():
        print(
            f"{LABELS[m]}: CV {d['cv']['estimate']:.3f} (noise floor kept {d['cv_naive']['estimate']:.3f}) "
            f"rho {d['rho']['estimate']:.3f} gain short {d['tertile_short']['estimate']:.3f} "
            f"long {d['tertile_long']['estimate']:.3f}"
        )
    print("Var(g_i) slope per token / mean:", f"{summary['var_slope_per_token']['estimate']:+.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="benchmarks/testbed/easy_hard.yaml")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument(
        "--prompt-offset", type=int, default=0, help="first train prompt (pilot and main use disjoint ones)"
    )
    ap.add_argument("--groups", type=int, default=32, help="independent groups per prompt (draws of ĝ)")
    ap.add_argument("--g", type=int, default=8, help="completions per group")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sft-seed", type=int, default=0)
    ap.add_argument("--no-warm-start", dest="warm_start", action="store_false")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="result file (default: a run directory under runs/bench/)")
    ap.add_argument("--summarize", metavar="JSON", help="recompute the statistics of a saved result (no sampling)")
    args = ap.parse_args(argv)
    if args.summarize:
        saved = json.loads(Path(args.summarize).read_text())
        saved["summary"] = summarize(saved["per_prompt"], premise=saved["summary"].get("premise_by_length"))
        saved["rows"] = rows_of(saved["summary"])
        saved["meta"]["summarized_by"] = " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
        _print(saved["summary"])
        path = Path(args.out or args.summarize)
        path.write_text(json.dumps(saved, indent=1, default=float) + "\n")
        print("wrote", path)
        return 0
    if args.groups < 6 or args.g < 2 or args.prompts < 2:
        ap.error("need --groups >= 6 (tertiles), --g >= 2 and --prompts >= 2")
    # the code that samples: read before the run (a commit made while it runs must not be recorded instead)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    res = run(args)
    summary = summarize(res["per_prompt"], res["length_profiles"])
    _print(summary)
    meta = dict(
        command=" ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        commit=commit,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        machine=f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)",
        args=vars(args),
        seconds=res["seconds"],
        start_model=Path(res["start_model"]).name,
    )
    per_prompt = [
        {k: v for k, v in p.items() if k != "prompt"} | {"prompt": p["prompt"].strip()} for p in res["per_prompt"]
    ]
    path = out_path(args.out, "vl_norm_variance", "vl_norm_variance.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(meta=meta, rows=rows_of(summary), summary=summary, per_prompt=per_prompt)
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
