"""``varpo report SWEEP_DIR``: ``report.md`` + PNGs from a sweep directory — every run, every method, with intervals.

Honesty is structural here, not left to the reader: every variant in the grid gets a row (also one whose runs all
failed), unfinished runs are listed with their error, each number comes with its n and interval, the reference
point is printed next to every hypervolume, and the header records the exact commands and commits of the sweep
and of the report. Rows keep the grid's order (the order given to ``--methods``), never a ranking by score. An
objective whose reward never varied within a group in training (so no method could learn from it) is flagged in
the header, in its figures and in ``report.json`` (the report's machine-readable flags).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

from varpo.experiments import analysis, figures, many_figures
from varpo.experiments.grid import format_weight
from varpo.experiments.pareto import MC_DELTA, MC_SAMPLES, exact_method
from varpo.experiments.records import git_commit, write_json, write_text
from varpo.experiments.results import SCORES, MetricKeys, Sweep, load_sweep
from varpo.experiments.summary import MeanCI

REPORT_FILE = "report.md"
REPORT_JSON = "report.json"


def default_reference(objectives: Sequence[str]) -> list[float]:
    """0 per objective: the worst value of a success rate / avg@k score, so the hypervolume is the area (volume)
    of the score region a method's sweep attains, comparable across sweeps and papers."""
    return [0.0] * len(objectives)


def write_report(
    sweep_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    reference: Sequence[float] | None = None,
    confidence: float = 0.95,
    window: int = 15,
    keys: MetricKeys = MetricKeys(),
    score: str = "objectives",
    argv: Sequence[str] | None = None,
) -> Path:
    """Write ``report.md``, ``report.json`` and the figures into ``out_dir`` (default: the sweep directory); return
    the path of ``report.md``.

    Args:
        sweep_dir: a directory written by :func:`varpo.experiments.sweep.run_sweep`.
        reference: hypervolume reference point, one value per objective (default 0 each; must be a point every
            useful result exceeds, i.e. the worst acceptable score).
        confidence: level of the t-intervals over seeds.
        window: centered moving-average window of the curves (the papers use 15), capped at a quarter of the series
            (``varpo.experiments.summary.smoothing_window``: a 4-step run is drawn unsmoothed).
        keys: where the training metrics live in ``metrics.jsonl``.
        score: which held-out score is compared (``varpo.experiments.results.SCORES``): ``objectives`` (avg@k,
            the default), ``mean_reward`` (partial credit; state a ``reference`` below every reward when rewards can
            be negative) or ``pass_at_k``.
        argv: the command that produced the report (recorded in its header).
    """
    sweep = load_sweep(sweep_dir, score)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    objectives = sweep.objectives
    lines = _header(sweep, argv)
    lines.append(f'- Score compared (`--score {score}`): {SCORES[score]}; "all" is always the all-objectives rate.')
    checks = analysis.no_variance(sweep, objectives, keys)
    lines += _variance_warnings(checks, keys)
    summary = _json_summary(sweep, score, checks)
    if not objectives:
        lines += ["", "**No run has finished yet**, so there is nothing to compare.", ""]
        lines += _unfinished(sweep)
        write_json(out / REPORT_JSON, summary)
        return write_text(out / REPORT_FILE, "\n".join(lines) + "\n")
    ref = list(reference) if reference is not None else default_reference(objectives)
    if len(ref) != len(objectives):
        raise ValueError(f"reference point has {len(ref)} values but the task has {len(objectives)} objectives")
    main_w = sweep.main_weights
    never = summary["never_varied"]
    lines += _hypervolume_section(sweep, objectives, ref, confidence, out)
    lines += _frontier_section(sweep, objectives, ref, out, never)
    lines += _score_section(sweep, objectives, main_w, confidence)
    lines += _dynamics_section(sweep, objectives, main_w, keys, window, out, never, summary)
    lines += _monotonicity_section(sweep, objectives, main_w, confidence, out, window, never, summary)
    lines += _unfinished(sweep)
    write_json(out / REPORT_JSON, summary)
    return write_text(out / REPORT_FILE, "\n".join(lines) + "\n")


def never_varied(report_dir: str | os.PathLike) -> list[str]:
    """The objectives a written report flagged as never varying within a group (from its ``report.json``)."""
    try:
        return list(json.loads((Path(report_dir) / REPORT_JSON).read_text()).get("never_varied", []))
    except (FileNotFoundError, ValueError):
        return []


def _json_summary(sweep: Sweep, score: str, checks: dict[str, analysis.VarianceCheck]) -> dict:
    """``report.json``: what a script needs without parsing markdown (deterministic: no commit, no time)."""
    return {
        "sweep": sweep.dir.name,
        "score": score,
        "objectives": list(checks),
        "variants": sweep.variants,
        "runs": {"finished": len(sweep.finished), "total": len(sweep.runs)},
        "never_varied": [o for o, c in checks.items() if c.never_varied],
        "within_group_variance": {o: c.to_dict() for o, c in checks.items()},
        "smoothing_window": {},
    }


def _variance_warnings(checks: dict[str, analysis.VarianceCheck], keys: MetricKeys) -> list[str]:
    """Header lines for objectives whose reward never varied within a group (all runs, or some runs)."""
    key = keys.group_std[0].replace("{name}", "<objective>")
    lines = []
    never = [c for c in checks.values() if c.never_varied]
    if never:
        names = ", ".join(f"`{c.objective}`" for c in never)
        runs = max(len(c.runs_constant) for c in never)
        lines.append(
            f"- **Warning: objective(s) {names} never varied within a group in training** (within-group reward std "
            f"`{key}` = 0 at every logged step of every run that logged it, {runs} run(s)): no method got a gradient "
            "from them, so a difference between methods in their held-out scores is a side effect of the other "
            "objectives, not learning. Typical causes: the reward is constant for this task and model (always 0 or "
            "always full marks), or it was missing."
        )
    for c in checks.values():
        if c.runs_constant and c.runs_varied:
            shown = ", ".join(f"`{n}`" for n in sorted(c.runs_constant)[:10])
            more = " …" if len(c.runs_constant) > 10 else ""
            lines.append(
                f"- Objective `{c.objective}` never varied within a group in {len(c.runs_constant)} of "
                f"{len(c.runs_constant) + len(c.runs_varied)} run(s) ({shown}{more}): those runs got no signal from it."
            )
    return lines


# ------------------------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------------------------


def _header(sweep: Sweep, argv: Sequence[str] | None) -> list[str]:
    m = sweep.manifest
    n_done, n_all = len(sweep.finished), len(sweep.runs)
    lines = [
        f"# Sweep report: `{sweep.dir.name}`",
        "",
        f"- Runs: **{n_done} of {n_all} finished** ({n_all - n_done} not finished, listed at the end).",
        f"- Variants (grid order): {', '.join(f'`{v}`' for v in sweep.variants)}.",
        f"- Weights: {', '.join(_w(w) for w in sweep.weights)}; seeds: {', '.join(map(str, sweep.seeds))}.",
        f"- Config: `config.yaml` in the sweep directory (sha256 `{str(m.get('config_sha256', '?'))[:16]}`, "
        f"from `{m.get('config_source', '?')}`).",
        "- Sweep commands (each invocation; a resumed sweep has several):",
    ]
    for inv in m.get("invocations", []):
        cmd = " ".join(inv["argv"]) if inv.get("argv") else "(Python API)"
        overrides = " ".join(inv.get("overrides") or [])
        machine = inv.get("machine", {})
        lines.append(
            f"  - `{cmd}` — commit `{inv.get('commit')}`, started {inv.get('started')}, "
            f"jobs {inv.get('jobs')} × {inv.get('threads_per_run')} thread(s), "
            f"{machine.get('cpus', '?')} CPUs, torch {machine.get('torch', '?')}"
            + (f"; overrides `{overrides}`" if overrides else "")
        )
    report_cmd = " ".join(argv) if argv else f"varpo report {sweep.dir}"
    lines.append(f"- Report: `{report_cmd}` at commit `{git_commit()}`.")
    if sweep.unreadable:
        lines.append(
            f"- **Warning: {len(sweep.unreadable)} run(s) have an unreadable eval.json** (empty, truncated, wrong "
            "schema or a non-finite score; reason per run at the end): they count as not finished and are left "
            "out of every number. Re-running the sweep redoes them."
        )
    return lines


def _hypervolume_section(sweep, objectives, ref, confidence, out) -> list[str]:
    rows = analysis.hypervolumes(sweep, objectives, ref, confidence)
    figures.hypervolume_figure(rows, ref, out / "hypervolume.png")
    method = exact_method(len(sweep.weights), len(objectives))
    ref_text = "(" + ", ".join(f"{o} = {v:g}" for o, v in zip(objectives, ref)) + ")"
    lines = [
        "",
        f"## Hypervolume ({len(objectives)}-D)",
        "",
        f"Reference point {ref_text}. Per seed, the hypervolume of that seed's points over all weights (one point per "
        f"weight vector, every objective maximized); mean ± {confidence:.0%} t-interval over seeds. "
        '"of seed means" is the hypervolume of the seed-averaged points drawn in the frontier figure. '
        f"Δ vs `{rows[0].variant}`: the paired difference over the seeds both finished (runs of one seed share the "
        "start model and the evaluation prompts), mean ± t-interval; an interval that excludes 0 establishes a "
        "difference. "
        + (
            f"Computed exactly ({method}, `varpo.experiments.pareto`)."
            if method
            else f"K = {len(objectives)} with {len(sweep.weights)} points is beyond the exact budget: Monte-Carlo "
            f"estimate, {MC_SAMPLES} samples, |error| <= V·{math.sqrt(math.log(2 / MC_DELTA) / (2 * MC_SAMPLES)):.4f} "
            f"with probability {1 - MC_DELTA:.0%} (V = volume of the box between the reference and the best scores)."
        ),
        "",
        f"| variant | hypervolume | Δ vs `{rows[0].variant}` | per seed | weights per seed | of seed means |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_seed = ", ".join(f"s{s}: {v:.4f}" for s, v in r.per_seed.items()) or "—"
        counts = ", ".join(f"{c}/{len(sweep.weights)}" for c in r.runs_per_seed.values())
        delta = "—" if r is rows[0] else _ci(analysis.paired_difference(r, rows[0], confidence), 4)
        lines.append(f"| `{r.variant}` | {_ci(r.ci, 4)} | {delta} | {per_seed} | {counts} | {_num(r.of_means, 4)} |")
    lines += ["", _hv_reading(rows, confidence)]
    below = analysis.below_reference(sweep, objectives, ref)
    if below:
        lines += [
            "",
            f"**Warning**: {len(below)} run score(s) lie below the reference point and add no hypervolume "
            "(pass a lower `--reference`): " + "; ".join(below[:20]) + (" …" if len(below) > 20 else ""),
        ]
    lines += ["", "![hypervolume](hypervolume.png)"]
    return lines


def _hv_reading(rows, confidence) -> str:
    scored = [r for r in rows if r.ci.n]
    if not scored:
        return "No variant has a finished run."
    best = max(scored, key=lambda r: r.ci.mean)
    tied = [r.variant for r in scored if r.ci.mean == best.ci.mean]
    if len(tied) > 1:
        return f"The highest mean hypervolume ({best.ci.mean:.4f}) is shared by {', '.join(f'`{v}`' for v in tied)}."
    if best.ci.n < 2:
        return f"Highest mean: `{best.variant}`; with one seed there are no intervals, so no difference is established."
    overlap = [r.variant for r in scored if r is not best and r.ci.n >= 2 and r.ci.high >= best.ci.low]
    text = f"Highest mean: `{best.variant}` ({_ci(best.ci, 4)})."
    if overlap:
        text += (
            f" Its {confidence:.0%} interval overlaps {', '.join(f'`{v}`' for v in overlap)}: by the marginal intervals "
            "those differences are not established at this number of seeds (the paired Δ column is the sharper test)."
        )
    else:
        text += f" Its {confidence:.0%} interval overlaps no other variant's."
    return text


def _frontier_section(sweep, objectives, ref, out, never=()) -> list[str]:
    points = analysis.frontier_points(sweep, objectives)
    lines = ["", "## Pareto frontiers", ""]
    lines.append(
        "Each dot: one variant at one weight vector (label: w1), mean over seeds, error bars ±1 std over seeds; the "
        "line is the variant's non-dominated staircase. Points several variants share are drawn side by side (the "
        "figure title names them; the table below has the exact values). For K > 2 objectives every pair is drawn; "
        "the hypervolume above is K-dimensional."
    )
    if len(objectives) > many_figures.MANY:  # C(K, 2) pair plots are unreadable: one panel per objective instead
        many_figures.objective_response_figure(points, objectives, out / "objectives.png", never)
        lines += [
            "",
            f"With K = {len(objectives)} objectives the {len(objectives) * (len(objectives) - 1) // 2} pairwise "
            "plots are replaced by one panel per objective: its held-out score against its own weight.",
            "",
            "![per-objective response](objectives.png)",
        ]
    for i, j in combinations(range(len(objectives)), 2) if len(objectives) <= many_figures.MANY else ():
        name = f"pareto_{_slug(objectives[i])}__{_slug(objectives[j])}.png"
        figures.pareto_figure(points, objectives, (i, j), out / name, ref, never)
        lines += ["", f"![{objectives[i]} vs {objectives[j]}]({name})"]
    lines += [
        "",
        "| variant | weights | " + " | ".join(objectives) + " | seeds |",
        "|---|---|" + "---|" * len(objectives) + "---|",
    ]
    for variant, pts in points.items():
        for p in pts:
            cells = " | ".join(f"{m:.3f} ± {s:.3f}" if math.isfinite(s) else f"{m:.3f}" for m, s in zip(p.mean, p.std))
            lines.append(f"| `{variant}` | {_w(p.weights)} | {cells} | {p.n} |")
    return lines


def _score_section(sweep, objectives, main_w, confidence) -> list[str]:
    columns = analysis.table_columns(objectives)
    lines = [
        "",
        f"## Held-out scores at weights {_w(main_w)} (Table 1/2 style)",
        "",
        f'Mean ± {confidence:.0%} t-interval over seeds of the final held-out score: "all", the fraction of samples '
        'that meet every objective at once; "worst", the lowest objective\'s score of the run; then each objective.',
        "",
        "| | " + " | ".join(columns) + " | n |",
        "|---|" + "---|" * len(columns) + "---|",
    ]
    for row in analysis.score_table(sweep, objectives, main_w, confidence):
        lines.append(f"| `{row.label}` | " + " | ".join(_ci(row.cells[c]) for c in columns) + f" | {row.n} |")
    return lines


def _dynamics_section(sweep, objectives, main_w, keys, window, out, never=(), summary=None) -> list[str]:
    panels = analysis.dynamics(sweep, objectives, main_w, keys, window)
    analysis.flag_panels(panels, never)
    used = analysis.used_window(panels)
    if summary is not None:
        summary["smoothing_window"]["dynamics"] = used
    lines = ["", f"## Training dynamics at weights {_w(main_w)}", ""]
    if not panels:
        return lines + ["No run logged training metrics (metrics.jsonl) under the expected keys."]
    if len(objectives) > many_figures.MANY:
        return lines + _many_dynamics(panels, sweep, objectives, used, out, never)
    figures.panels_figure(panels, sweep.variants, out / "dynamics.png", "Training dynamics")
    lines.append(
        f"Per-objective reward mean and std over the rollout batch, completion length, effective weight of each "
        f"objective (the weight each method actually applied), and mean |advantage|, vs optimizer step; "
        f"{_smoothing(used, window)}, as DVAO Fig. 1–2."
    )
    return lines + ["", "![dynamics](dynamics.png)"]


def _smoothing(used: int, requested: int) -> str:
    """How the curves were smoothed, in words (the window is capped at a quarter of the series)."""
    if used > 1:
        cap = f" (`--window {requested}` capped at a quarter of the logged steps)" if used < requested else ""
        return f"mean over seeds (faint) and its centered moving average, window {used}{cap} (bold)"
    return "mean over seeds, unsmoothed (the window is at most a quarter of the logged steps: too few for one)"


def _many_dynamics(panels, sweep, objectives, window, out, never=()) -> list[str]:
    """K > MANY: per-objective small multiples (reward mean, reward std), a heat map of effective weights, and the
    shared series (length, E|A|) on their own."""

    def kind(prefix: str) -> list:
        return [
            analysis.Panel(p.title.split(": ", 1)[1], p.curves, p.note)
            for p in panels
            if p.title.startswith(prefix + ": ")
        ]

    lines = [
        f"K = {len(objectives)} objectives: one small panel per objective (shared axes), {_smoothing(window, window)}; "
        "effective weights as a heat map (rows: objectives)."
    ]
    for prefix, name in (("reward mean", "dynamics_reward_mean.png"), ("reward std", "dynamics_reward_std.png")):
        chosen = kind(prefix)
        if chosen:
            many_figures.small_multiples(chosen, sweep.variants, out / name, f"Rollout {prefix} per objective")
            lines += ["", f"![{prefix}]({name})"]
    weights = [p for p in panels if p.title.startswith("effective weight: ")]
    if weights:
        many_figures.weight_heatmap(weights, objectives, sweep.variants, out / "effective_weights.png", never)
        lines += ["", "![effective weights](effective_weights.png)"]
    shared = [p for p in panels if ": " not in p.title or p.title.startswith("advantage")]
    if shared:
        figures.panels_figure(shared, sweep.variants, out / "dynamics.png", "Training dynamics")
        lines += ["", "![dynamics](dynamics.png)"]
    return lines


def _monotonicity_section(sweep, objectives, main_w, confidence, out, window=15, never=(), summary=None) -> list[str]:
    columns = analysis.table_columns(objectives)
    rows = analysis.monotonicity_table(sweep, objectives, confidence)
    lines = [
        "",
        "## Monotonicity (VL Norm Table 5)",
        "",
        "Per run, the Pearson correlation between the evaluation index {0, 1, 2, …} and the held-out score at each "
        f"evaluation during training (+1: steady improvement); mean ± {confidence:.0%} t-interval over all runs of the "
        "variant (every weight and seed). Runs with fewer than 3 evaluations or a constant score are left out.",
        "",
        "| variant | " + " | ".join(columns) + " | evals per run |",
        "|---|" + "---|" * len(columns) + "---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row.variant}` | " + " | ".join(_ci(row.cells[c]) for c in columns) + f" | {row.evals_per_run} |"
        )
    panels = analysis.eval_curves(sweep, objectives, main_w, window)
    analysis.flag_panels(panels, never)
    if summary is not None:
        summary["smoothing_window"]["eval_curves"] = analysis.used_window(panels)
    if panels and len(objectives) > many_figures.MANY:
        many_figures.small_multiples(
            panels, sweep.variants, out / "eval_curves.png", f"Held-out scores at {_w(main_w)}"
        )
    elif panels:
        figures.panels_figure(panels, sweep.variants, out / "eval_curves.png", f"Held-out scores at {_w(main_w)}")
        lines += ["", "![eval curves](eval_curves.png)"]
    return lines


def _unfinished(sweep: Sweep) -> list[str]:
    runs = sweep.unfinished
    lines = ["", "## Runs not finished", ""]
    if not runs:
        return lines + ["None: every run of the grid finished."]
    entries = sweep.manifest.get("runs", {})
    lines += ["| run | status | error |", "|---|---|---|"]
    for r in runs:
        error = (entries.get(r.point.name, {}).get("error") or "").replace("|", "/")
        lines.append(f"| `{r.point.name}` | {r.status} | {error} |")
    return lines


# ------------------------------------------------------------------------------------------------------------------
# Formatting
# ------------------------------------------------------------------------------------------------------------------


def _ci(ci: MeanCI, digits: int = 3) -> str:
    return ci.format(digits)


def _num(x: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(x) else f"{x:.{digits}f}"


def _w(w: tuple[float, ...] | None) -> str:
    if w is not None and len(w) > 4 and len(set(w)) == 1:  # many objectives, equal weights: say so briefly
        return f"({format_weight(w[0])} × {len(w)})"
    return "—" if w is None else "(" + ", ".join(format_weight(x) for x in w) + ")"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
