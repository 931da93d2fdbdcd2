"""The lab's pre-registered experiments (docs/claims.md, "Lab claims"): one function per claim.

Each function takes ``seeds`` (and ``steps`` where it trains) and returns a :class:`ClaimResult`: rows of
(comparison, metric, expected direction, per-seed values), curves for the figures, and the exact configuration.
Seeds are paired by index (seed i of every method starts from the same generator state). Every method that was run
is reported, whichever wins.

Statistics: `varpo.significance`, the project's one standard (docs/claims.md, "How claims are decided"). Each row is
a `significance.paired` Result over seeds (a seed is a lab world's independent replicate); `decide` applies Holm
within the claim's family — its directional rows (expected ``>0`` / ``<0``), the pre-registered hypotheses of the
claim — and reads every row's verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

import varpo
from varpo import significance as sig
from varpo.lab import metrics as M
from varpo.lab.scenarios import scenario
from varpo.lab.train import History, LabConfig, Trainer, gradient_draws, objective_gradient, train

AGG_LABELS = {
    "token_mean": "token_mean (DAPO)",
    "seq_mean_token_mean": "seq_mean_token_mean (GRPO)",
    "seq_mean_token_sum_norm": "seq_mean_token_sum_norm (Dr. GRPO)",
    "vl_norm": "vl_norm",
}

DIRECTIONAL = (">0", "<0")


@dataclass
class Row:
    """One pre-registered comparison: ``result`` is its `significance.Result` (``metric`` = "comparison: metric")."""

    comparison: str
    metric: str
    expected: str
    result: sig.Result
    verdict: str = ""

    def cells(self) -> list[str]:
        """``comparison``, ``expected``, then the standard `Result.FIELDS` cells with this row's verdict."""
        return [self.comparison, self.expected, *self.result.cells()[:-1], self.verdict]

    def to_dict(self) -> dict:
        return dict(
            comparison=self.comparison,
            expected=self.expected,
            **{**self.result.to_dict(), "metric": self.metric, "verdict": self.verdict},
        )


FIELDS = ("comparison", "expected", *sig.Result.FIELDS)


@dataclass
class ClaimResult:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)  # per-method summaries (every method run)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # figure -> label -> values
    config: dict = field(default_factory=dict)
    seconds: float = 0.0
    values: dict[str, list] = field(default_factory=dict)  # row label -> per-seed values [worlds][seeds]


def _verdict(r: sig.Result, expected: str) -> str:
    """A row's reading under the standard; ``r`` carries the Holm-adjusted p of its family.

    ``expected``: '>0' / '<0' (directional: established when p_holm < ALPHA and the estimate has the expected sign,
    refuted (reverse) when p_holm < ALPHA with the other sign); '~0:margin' (equivalence: the 95 % interval lies in
    ±margin, i.e. two one-sided tests at 2.5 %); '<=x' (a bound: the interval's upper end <= x).
    """
    if expected.startswith("~0"):
        margin = float(expected.split(":")[1])
        if r.low >= -margin and r.high <= margin:
            return f"established (equivalent within ±{margin:g})"
        return "not established"
    if expected.startswith("<="):
        return "established" if r.high <= float(expected[2:]) else "not established"
    if expected not in DIRECTIONAL:
        raise ValueError(f"unknown expected direction {expected!r}")
    if r.p_holm < sig.ALPHA and math.isfinite(r.estimate) and r.estimate != 0:
        return "established" if (r.estimate > 0) == (expected == ">0") else "refuted (reverse)"
    return f"not established (MDE {r.mde:.3g})" if math.isfinite(r.mde) else "not established"


def decide(rows: list[Row]) -> list[Row]:
    """Holm within the claim's family (its directional rows), then every row's verdict; in place, idempotent."""
    family = [r for r in rows if r.expected in DIRECTIONAL]
    for r, adjusted in zip(family, sig.holm_family([r.result for r in family]), strict=True):
        r.result = adjusted
    for r in rows:
        if r.expected not in DIRECTIONAL:  # a bound or an equivalence: its own test, not in the Holm family
            r.result = replace(r.result, p_holm=r.result.p, family=1)
        r.verdict = _verdict(r.result, r.expected)
    return rows


def _row(comparison: str, metric: str, expected: str, values, worlds: int = 1) -> Row:
    """A row before `decide`: the paired Result over the per-seed ``values`` (differences, or a per-seed score).

    Non-finite entries (a seed whose score is undefined, e.g. ρ of a constant curve) are left out; ``n`` counts the
    rest. With ``worlds`` > 1, ``values`` are world-major ``[worlds·seeds]`` and the unit is the world: the Result
    is over the world means, with each world's within s.e. (s.d. over its seeds / √seeds) as ``within_se`` — see
    :func:`world_means`.
    """
    if not (expected in DIRECTIONAL or expected.startswith(("~0:", "<="))):
        raise ValueError(f"unknown expected direction {expected!r}")
    name = f"{comparison}: {metric}"
    if worlds > 1:
        per_world = np.asarray(values, dtype=np.float64).reshape(worlds, -1)
        within = per_world.std(1, ddof=1) / math.sqrt(per_world.shape[1]) if per_world.shape[1] > 1 else None
        wm = world_means(values, worlds)
        return Row(
            comparison, metric, expected, sig.paired(name, wm.tolist(), None if within is None else within.tolist())
        )
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    flat = arr[np.isfinite(arr)].tolist()
    return Row(comparison, metric, expected, sig.paired(name, flat))


def world_means(values, worlds: int) -> np.ndarray:
    """``[worlds]`` means of world-major per-seed ``values [worlds·seeds]``.

    Each synthetic world (env seed) is one replicate and its seeds are nested within it: the test and interval over
    the world means are the cluster-robust ones with equal cluster sizes (s.e. = max(s.d. of the cluster means / √W,
    pooled within-world s.e.), W − 1 degrees of freedom, exact sign-flip over the W worlds), so the variation
    between worlds is in the interval, not only the RL noise.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if worlds < 1 or v.size % worlds:
        raise ValueError(f"{v.size} per-seed values cannot be split into {worlds} worlds of equal size")
    return v.reshape(worlds, -1).mean(1)


#: The lab's Adam step size (the L3d / explore-adam value); with ``optimizer="adam"`` a claim trains with it.
ADAM_LR = 0.05


def _optimizer_kw(optimizer: str | None) -> dict:
    """Training overrides for a claim's ``optimizer``: None keeps the scenario's (SGD lr 10); "adam" uses lr
    :data:`ADAM_LR`, whose per-parameter normalization removes most of an estimator's overall advantage scale."""
    if optimizer is None or optimizer == "sgd":
        return {}
    if optimizer == "adam":
        return dict(optimizer="adam", lr=ADAM_LR)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")


def _stack(histories: list[History]) -> History:
    """One History of the worlds' seeds side by side (world-major seed axis); per-step diagnostics averaged."""
    if len(histories) == 1:
        return histories[0]
    h0 = histories[0]
    return replace(
        h0,
        reward=np.concatenate([h.reward for h in histories], 1),
        satisfied=np.concatenate([h.satisfied for h in histories], 1),
        all_rate=np.concatenate([h.all_rate for h in histories], 1),
        weights=np.mean([h.weights for h in histories], 0),
        adv_sq=np.mean([h.adv_sq for h in histories], 0),
        adv_max=np.max([h.adv_max for h in histories], 0),
        seconds=sum(h.seconds for h in histories),
    )


def _summary(label: str, h: History, names) -> dict:
    sat = h.satisfied[-1]  # [S, K]
    out = dict(method=label, all_rate=float(h.all_rate[-1].mean()), worst=float(sat.min(1).mean()))
    out["mean_reward"] = float(h.reward[-1].mean())
    for j, n in enumerate(names):
        out[f"sat/{n}"] = float(sat[:, j].mean())
        out[f"weight/{n}"] = float(np.nanmean(h.weights[:, j]))
    out["adv_sq"] = float(np.nanmean(h.adv_sq))
    return out


def _config(spec_name: str, cfgs: dict[str, LabConfig], **extra) -> dict:
    return dict(scenario=spec_name, configs={k: repr(v) for k, v in cfgs.items()}, **extra)


# ------------------------------------------------------------------------------------------------------------
# (a) GVPO Thm 3.1
# ------------------------------------------------------------------------------------------------------------


def gvpo_thm31(seeds: int = 32, steps: int = 400) -> ClaimResult:
    """GVPO Thm 3.1: minimizing the shared ``policy_loss("gvpo")`` with π_s = π_θ' = π_ref converges to
    π* = π_ref·e^{R/β}/Z. Metric: max over prompts of TV(π_θ, π*) per seed after ``steps``."""
    res = ClaimResult("gvpo_thm31", "GVPO Thm 3.1: convergence to π_ref·exp(R/β)/Z")
    for beta in (0.5, 1.0, 2.0):
        spec, cfg = scenario("single", steps=steps, lr=100.0 / beta**2, loss_options=dict(gvpo_beta=beta))
        target = torch.softmax(spec.init_logits + spec.rewards[..., 0] / beta, -1)  # [P, Y]
        tr = Trainer(spec, cfg, seeds, seed=0)
        curve = []
        for i in range(steps):
            tr.step()
            if (i + 1) % 20 == 0:
                curve.append(float(M.total_variation(tr.policy.probs(), target).max()))
        tv = M.total_variation(tr.policy.probs(), target).amax(-1).numpy()  # [S]
        res.rows.append(_row(f"β={beta}", f"max_x TV(π_θ, π*) after {steps} steps", "<=0.001", tv))
        res.curves.setdefault("tv", {})[f"β={beta}"] = curve
        res.table.append(dict(method=f"gvpo β={beta}", tv_max=float(tv.max()), tv_mean=float(tv.mean())))
        res.config[f"beta={beta}"] = repr(cfg)
    res.config["scenario"] = "single"
    return res


# ------------------------------------------------------------------------------------------------------------
# (b) DVAO Prop. 1-2
# ------------------------------------------------------------------------------------------------------------


def dvao_bounds(seeds: int = 64, steps: int = 60, scenario_name: str = "scales") -> ClaimResult:
    """DVAO Prop. 1 (per group: mean A_grpo² >= mean A_ac²) and Prop. 2 (per sample |A_dvao| <= |A_grpo|) on every
    batch of a dvao training run, recomputed with the shared ``compute_advantages``; plus mean A² during training
    of grpo / gdpo / dvao / ac (paired by seed)."""
    res = ClaimResult("dvao_bounds", "DVAO Prop. 1-2: bounded advantage magnitude during training")
    spec, base = scenario(scenario_name, steps=steps)
    _, k = spec.shape[0], spec.shape[2]
    g = base.group_size
    counts = dict(p2_viol=0, p2_n=0, p1_viol=0, p1_n=0, p1_degenerate=0, p2_ratio_max=0.0)
    per_seed_p2 = np.zeros(seeds)

    def check(step, rewards, local, adv):
        s, n, _ = rewards.shape
        flat = rewards.reshape(s * n, k)
        ids = (torch.arange(s).unsqueeze(1) * (n // g) + local).reshape(-1)
        a = {
            m: varpo.compute_advantages(flat, ids, m, stats=False).advantages.double().reshape(s, n // g, g)
            for m in ("grpo", "ac", "dvao")
        }
        tol = 1e-5
        v2 = a["dvao"].abs() > a["grpo"].abs() + tol  # [S, P, G]
        counts["p2_viol"] += int(v2.sum())
        counts["p2_n"] += v2.numel()
        per_seed_p2[:] += v2.reshape(s, -1).float().mean(1).numpy() / steps
        ratio = a["dvao"].abs() / a["grpo"].abs().clamp_min(1e-12)
        counts["p2_ratio_max"] = max(counts["p2_ratio_max"], float(ratio[a["grpo"].abs() > 1e-9].max()))
        sq_grpo, sq_ac = (a["grpo"] ** 2).mean(-1), (a["ac"] ** 2).mean(-1)  # [S, P]
        degenerate = sq_grpo < 1e-12  # σ_sum = 0: the proof divides by it
        counts["p1_degenerate"] += int((degenerate & (sq_ac > 1e-12)).sum())
        ok = ~degenerate
        counts["p1_viol"] += int(((sq_ac > sq_grpo + tol) & ok).sum())
        counts["p1_n"] += int(ok.sum())

    methods = ("grpo", "gdpo", "dvao", "ac")
    sq: dict[str, np.ndarray] = {}
    for m in methods:
        acc = np.zeros(seeds)

        def hook(step, rewards, local, adv, acc=acc, m=m):
            if m == "dvao":
                check(step, rewards, local, adv)
            acc[:] += (adv**2).mean(1).numpy() / steps

        h = train(spec, replace(base, method=m), seeds=seeds, hook=hook)
        sq[m] = acc
        res.table.append(_summary(m, h, spec.names) | dict(adv_sq_seed_mean=float(acc.mean())))
        res.curves.setdefault("adv_sq", {})[m] = h.adv_sq.tolist()
    res.rows.append(
        _row("Prop. 2 on dvao's batches", "fraction of samples with |A_dvao| > |A_grpo|", "<=0.0", per_seed_p2)
    )
    res.rows.append(_row("dvao − grpo", "mean A² over training", "<0", sq["dvao"] - sq["grpo"]))
    res.rows.append(_row("dvao − gdpo", "mean A² over training", "<0", sq["dvao"] - sq["gdpo"]))
    res.rows.append(_row("ac − grpo", "mean A² over training (Prop. 1)", "<0", sq["ac"] - sq["grpo"]))
    res.config = _config(scenario_name, {m: replace(base, method=m) for m in methods}, checks=counts)
    return res


# ------------------------------------------------------------------------------------------------------------
# (c) VL Norm: gradient variance at equal bias, monotonicity
# ------------------------------------------------------------------------------------------------------------


def vl_norm_variance(seeds: int = 16, draws: int = 128, steps: int = 60, train_seeds: int = 16) -> ClaimResult:
    """Repeated one-batch gradient estimates on the same (initial) policy: CV = √E‖g-ḡ‖²/‖ḡ‖ and cos(ḡ, ∇J) per
    aggregation (advantage dr_grpo, so the aggregation is the only source of bias); ``seeds`` blocks of ``draws``
    estimates, paired by block. Then monotonicity (VL Norm Table 5): Pearson ρ(step, expected reward) per seed,
    training with Adam (scale-free, so the modes' different constant normalizers do not act as learning rates)."""
    res = ClaimResult("vl_norm", "VL Norm: gradient-estimate variance at equal bias, and monotonicity")
    spec, base = scenario("lengths")
    true = objective_gradient(spec)
    cv: dict[str, list[float]] = {a: [] for a in AGG_LABELS}
    cos: dict[str, list[float]] = {a: [] for a in AGG_LABELS}
    for block in range(seeds):
        for agg in AGG_LABELS:
            st = M.gradient_stats(gradient_draws(spec, replace(base, aggregation=agg), draws, seed=block), true)
            cv[agg].append(st.cv)
            cos[agg].append(st.cosine)
    for agg in AGG_LABELS:
        res.table.append(dict(method=AGG_LABELS[agg], cv=float(np.mean(cv[agg])), cosine=float(np.mean(cos[agg]))))
    v = np.asarray
    res.rows.append(
        _row(
            "vl_norm − Dr. GRPO (both unbiased)",
            "CV of gradient estimate",
            "<0",
            v(cv["vl_norm"]) - v(cv["seq_mean_token_sum_norm"]),
        )
    )
    res.rows.append(
        _row("vl_norm − token_mean", "CV of gradient estimate", "<0", v(cv["vl_norm"]) - v(cv["token_mean"]))
    )
    res.rows.append(
        _row(
            "vl_norm − seq_mean_token_mean",
            "CV of gradient estimate (Table 1: equal)",
            "~0:0.02",
            v(cv["vl_norm"]) - v(cv["seq_mean_token_mean"]),
        )
    )
    res.rows.append(
        _row(
            "vl_norm − seq_mean_token_mean",
            "cos(E g, ∇J) (bias)",
            ">0",
            v(cos["vl_norm"]) - v(cos["seq_mean_token_mean"]),
        )
    )
    res.rows.append(_row("vl_norm − token_mean", "cos(E g, ∇J) (bias)", ">0", v(cos["vl_norm"]) - v(cos["token_mean"])))
    mono: dict[str, np.ndarray] = {}
    cfgs = {}
    for agg in AGG_LABELS:
        cfg = replace(base, aggregation=agg, optimizer="adam", lr=0.05, steps=steps, record_every=10)
        cfgs[agg] = cfg
        h = train(spec, cfg, seeds=train_seeds)
        mono[agg] = M.monotonicity(h.reward[..., 0])
        res.curves.setdefault("reward", {})[AGG_LABELS[agg]] = h.reward[..., 0].mean(1).tolist()
        res.table.append(
            dict(
                method=f"train {AGG_LABELS[agg]}",
                final_reward=float(h.reward[-1, :, 0].mean()),
                monotonicity=float(np.nanmean(mono[agg])),
            )
        )
    for agg in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"):
        res.rows.append(_row(f"vl_norm − {agg}", "monotonicity ρ (Table 5)", ">0", mono["vl_norm"] - mono[agg]))
    indep, _ = scenario("lengths_indep")
    true_indep = objective_gradient(indep)
    for agg in AGG_LABELS:  # lengths independent of the reward: where the paper's unbiasedness premise holds
        cs = [
            M.gradient_stats(gradient_draws(indep, replace(base, aggregation=agg), draws, seed=b), true_indep).cosine
            for b in range(4)
        ]
        res.table.append(dict(method=f"{AGG_LABELS[agg]}, lengths independent of reward", cosine=float(np.mean(cs))))
    res.config = _config("lengths", cfgs, draws=draws, blocks=seeds, train_seeds=train_seeds)
    return res


# ------------------------------------------------------------------------------------------------------------
# (d) GVPO stability across β
# ------------------------------------------------------------------------------------------------------------

BETAS = (0.02, 0.05, 0.1, 0.2, 0.5)


def gvpo_beta(seeds: int = 32, steps: int = 30) -> ClaimResult:
    """GVPO Fig. 2 analogue: spread (max − min over β) of the final all-objectives rate per seed, GVPO
    (gvpo_beta=β, centered-reward advantages) vs GRPO (ppo_clip with KL coefficient β to the initial policy),
    4 updates per batch (with one on-policy update GVPO's gradient is β·Dr. GRPO's and β only rescales it) and
    Adam as the engines."""
    res = ClaimResult("gvpo_beta", "GVPO stability across β vs GRPO")
    spec, base = scenario("easy_hard", steps=steps, optimizer="adam", lr=0.1, updates_per_batch=4, record_every=steps)
    finals: dict[str, list[np.ndarray]] = {"gvpo": [], "grpo": []}
    cfgs = {}
    for beta in BETAS:
        for name, cfg in (
            ("gvpo", replace(base, method="dr_grpo", policy_loss="gvpo", loss_options=dict(gvpo_beta=beta))),
            ("grpo", replace(base, method="grpo", loss_options=dict(beta=beta))),
        ):
            h = train(spec, cfg, seeds=seeds)
            final = h.all_rate[-1]  # [S]
            finals[name].append(final)
            cfgs[f"{name} β={beta}"] = cfg
            res.table.append(_summary(f"{name} β={beta}", h, spec.names))
            res.curves.setdefault("final_all_rate", {}).setdefault(name, []).append(float(final.mean()))
    spread = {k: np.ptp(np.stack(v), axis=0) for k, v in finals.items()}  # [S]
    mean = {k: np.stack(v).mean(0) for k, v in finals.items()}
    res.rows.append(
        _row("gvpo − grpo", "spread over β of the final all-objectives rate", "<0", spread["gvpo"] - spread["grpo"])
    )
    res.rows.append(_row("gvpo − grpo", "final all-objectives rate, mean over β", ">0", mean["gvpo"] - mean["grpo"]))
    res.config = _config("easy_hard", cfgs, betas=BETAS)
    return res


# ------------------------------------------------------------------------------------------------------------
# (e) SAW, (f) RVPO, (g) DVAO
# ------------------------------------------------------------------------------------------------------------


def _methods(
    spec_name: str,
    methods: dict[str, dict],
    seeds: int,
    steps: int,
    worlds: int = 1,
    first_world: int = 0,
    optimizer: str | None = None,
    **train_kw,
) -> tuple[dict[str, History], dict]:
    """Train every method on ``worlds`` synthetic worlds (env seeds ``first_world`` …) × ``seeds`` seeds each.

    Seeds are paired by index within a world (the same training generator for every method); the returned
    Histories stack the worlds along the seed axis, world-major. ``worlds=1, first_world=0`` is the single world
    of the original claims.
    """
    train_kw = {**train_kw, **_optimizer_kw(optimizer)}
    runs: dict[str, list[History]] = {label: [] for label in methods}
    cfgs = {}
    for w in range(first_world, first_world + worlds):
        spec, base = scenario(spec_name, world=w, steps=steps, **train_kw)
        for label, kw in methods.items():
            cfgs[label] = replace(base, **kw)
            runs[label].append(train(spec, cfgs[label], seeds=seeds, seed=w))
    return {label: _stack(hs) for label, hs in runs.items()}, cfgs


def _per_world(values, worlds: int) -> list[list[float]]:
    """World-major per-seed ``values`` as ``[worlds][seeds]`` lists (for ``result.json``)."""
    return np.asarray(values, dtype=np.float64).reshape(worlds, -1).tolist()


def _design(worlds: int, first_world: int, optimizer: str | None) -> dict:
    return dict(worlds=list(range(first_world, first_world + worlds)), optimizer=optimizer or "sgd")


def saw_lagging(
    seeds: int = 64, steps: int = 60, worlds: int = 1, first_world: int = 0, optimizer: str | None = None
) -> ClaimResult:
    """SAW: the lagging objective is learned faster once the easy one saturates (CV weights shift to it).
    ``worlds``/``first_world``/``optimizer``: see :func:`_methods` and :func:`_optimizer_kw`."""
    res = ClaimResult("saw", "SAW: lagging objective learned faster as the easy one saturates")
    runs, cfgs = _methods(
        "saturating",
        {m: dict(method=m) for m in ("saw", "grpo", "gdpo", "dvao", "ac")},
        seeds,
        steps,
        worlds,
        first_world,
        optimizer,
        record_every=5,
    )
    names = runs["saw"].names
    for label, h in runs.items():
        res.table.append(_summary(label, h, names))
        res.curves.setdefault("lagging", {})[label] = h.satisfied[:, :, 0].mean(1).tolist()
        res.curves.setdefault("weight_lagging", {})[label] = h.weights[:, 0].tolist()
    lag = {k: h.satisfied[-1, :, 0] for k, h in runs.items()}
    auc = {k: h.satisfied[:, :, 0].mean(0) for k, h in runs.items()}
    for other in ("grpo", "gdpo"):
        res.rows.append(
            _row(f"saw − {other}", "lagging satisfaction at the end", ">0", lag["saw"] - lag[other], worlds)
        )
        res.rows.append(
            _row(f"saw − {other}", "lagging satisfaction, mean over training", ">0", auc["saw"] - auc[other], worlds)
        )
        res.values[f"saw − {other}: lagging at the end"] = _per_world(lag["saw"] - lag[other], worlds)
    w = runs["saw"].weights[:, 0]
    q = max(1, steps // 4)
    res.config = _config(
        "saturating",
        cfgs,
        **_design(worlds, first_world, optimizer),
        saw_weight_lagging_first_quarter=float(np.mean(w[:q])),
        saw_weight_lagging_last_quarter=float(np.mean(w[-q:])),
    )
    return res


def rvpo_bottleneck(
    seeds: int = 64, steps: int = 60, worlds: int = 1, first_world: int = 0, optimizer: str | None = None
) -> ClaimResult:
    """RVPO: with K=8 and one bottleneck objective, worst-objective and all-objectives rate vs gdpo and grpo;
    k -> 0 behaves as gdpo. ``worlds``/``first_world``/``optimizer``: see :func:`_methods`."""
    res = ClaimResult("rvpo", "RVPO: constraint neglect with K=8 and one bottleneck")
    methods = {
        "rvpo": dict(method="rvpo"),
        "rvpo k=2": dict(method="rvpo", options=dict(rvpo_k=2.0)),
        "rvpo k=1e-3": dict(method="rvpo", options=dict(rvpo_k=1e-3)),
        "gdpo": dict(method="gdpo"),
        "grpo": dict(method="grpo"),
        "dvao": dict(method="dvao"),
    }
    runs, cfgs = _methods("bottleneck8", methods, seeds, steps, worlds, first_world, optimizer, record_every=5)
    names = runs["rvpo"].names
    for label, h in runs.items():
        res.table.append(_summary(label, h, names))
        res.curves.setdefault("worst", {})[label] = h.satisfied.min(2).mean(1).tolist()
    worst = {k: h.satisfied[-1].min(1) for k, h in runs.items()}
    every = {k: h.all_rate[-1] for k, h in runs.items()}
    mean = {k: h.reward[-1].mean(1) for k, h in runs.items()}
    for label in ("rvpo", "rvpo k=2"):
        for other in ("gdpo", "grpo"):
            d = worst[label] - worst[other]
            res.rows.append(_row(f"{label} − {other}", "worst-objective satisfaction", ">0", d, worlds))
            res.values[f"{label} − {other}: worst objective"] = _per_world(d, worlds)
            d = every[label] - every[other]
            res.rows.append(_row(f"{label} − {other}", "all-objectives rate", ">0", d, worlds))
            d = mean[label] - mean[other]
            res.rows.append(_row(f"{label} − {other}", "mean reward (similar expected)", "~0:0.02", d, worlds))
    d = every["rvpo k=1e-3"] - every["gdpo"]
    res.rows.append(_row("rvpo(k=1e-3) − gdpo", "all-objectives rate", "~0:0.01", d, worlds))
    res.config = _config("bottleneck8", cfgs, **_design(worlds, first_world, optimizer))
    return res


def dvao_easy_hard(
    seeds: int = 64, steps: int = 60, worlds: int = 1, first_world: int = 0, optimizer: str | None = None
) -> ClaimResult:
    """DVAO Table 1 analogue: the hard objective (accuracy) next to an easy one (length compliance).
    ``worlds``/``first_world``/``optimizer``: see :func:`_methods` (under SGD dvao's smaller advantages are also a
    smaller step; Adam removes most of that confound)."""
    res = ClaimResult("dvao_easy_hard", "DVAO vs GDPO: hard accuracy next to easy length compliance")
    runs, cfgs = _methods(
        "length_conflict",
        {m: dict(method=m) for m in ("dvao", "gdpo", "grpo", "ac")},
        seeds,
        steps,
        worlds,
        first_world,
        optimizer,
        record_every=5,
    )
    names = runs["dvao"].names
    for label, h in runs.items():
        res.table.append(_summary(label, h, names))
        res.curves.setdefault("accuracy", {})[label] = h.satisfied[:, :, 0].mean(1).tolist()
        res.curves.setdefault("length", {})[label] = h.satisfied[:, :, 1].mean(1).tolist()
    acc = {k: h.satisfied[-1, :, 0] for k, h in runs.items()}
    ln = {k: h.satisfied[-1, :, 1] for k, h in runs.items()}
    for other in ("gdpo", "grpo"):
        res.rows.append(_row(f"dvao − {other}", "accuracy satisfaction", ">0", acc["dvao"] - acc[other], worlds))
        res.rows.append(_row(f"dvao − {other}", "length compliance", "~0:0.02", ln["dvao"] - ln[other], worlds))
        res.values[f"dvao − {other}: accuracy"] = _per_world(acc["dvao"] - acc[other], worlds)
        res.values[f"dvao − {other}: length"] = _per_world(ln["dvao"] - ln[other], worlds)
    res.config = _config("length_conflict", cfgs, **_design(worlds, first_world, optimizer))
    return res


W1 = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def hypervolume_2d(points: np.ndarray) -> float:
    """Area dominated by ``points [n, 2]`` (maximization) above the reference (0, 0)."""
    pts = points[np.argsort(-points[:, 0])]
    area, best_y = 0.0, 0.0
    for x, y in pts:  # n <= 9 points
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area


def dvao_frontier(
    seeds: int = 32, steps: int = 40, worlds: int = 1, first_world: int = 0, optimizer: str | None = None
) -> ClaimResult:
    """DVAO Fig. 3 analogue: frontier over w1 ∈ {0.1..0.9} on two conflicting objectives; hypervolume per seed.
    ``worlds``/``first_world``/``optimizer``: see :func:`_methods`."""
    res = ClaimResult("dvao_frontier", "DVAO frontier over w1 vs grpo / ac / gdpo")
    methods = ("dvao", "grpo", "ac", "gdpo")
    n = worlds * seeds
    pts = {m: np.zeros((n, len(W1), 2)) for m in methods}  # world-major seed axis
    cfgs = {}
    for k, w in enumerate(range(first_world, first_world + worlds)):
        spec, base = scenario("frontier", world=w, steps=steps, record_every=steps, **_optimizer_kw(optimizer))
        for m in methods:
            for i, w1 in enumerate(W1):
                cfg = replace(base, method=m, weights=(w1, 1.0 - w1))
                cfgs[f"{m} w1={w1}"] = cfg
                pts[m][k * seeds : (k + 1) * seeds, i] = train(spec, cfg, seeds=seeds, seed=w).satisfied[-1]
    for m in methods:
        res.curves.setdefault("frontier", {})[m] = pts[m].mean(0).reshape(-1).tolist()
    hv = {m: np.array([hypervolume_2d(pts[m][s]) for s in range(n)]) for m in methods}
    for m in methods:
        res.table.append(dict(method=m, hypervolume=float(hv[m].mean())))
    for other in ("grpo", "ac", "gdpo"):
        d = hv["dvao"] - hv[other]
        res.rows.append(_row(f"dvao − {other}", "hypervolume of the w1 frontier", ">0", d, worlds))
        res.values[f"dvao − {other}: hypervolume"] = _per_world(d, worlds)
    res.config = _config("frontier", cfgs, w1=W1, **_design(worlds, first_world, optimizer))
    return res


CLAIMS: dict[str, Callable[..., ClaimResult]] = {
    "gvpo_thm31": gvpo_thm31,
    "dvao_bounds": dvao_bounds,
    "vl_norm": vl_norm_variance,
    "gvpo_beta": gvpo_beta,
    "saw": saw_lagging,
    "rvpo": rvpo_bottleneck,
    "dvao_easy_hard": dvao_easy_hard,
    "dvao_frontier": dvao_frontier,
}
