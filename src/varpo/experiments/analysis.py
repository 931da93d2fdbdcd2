"""The numbers of a sweep report, computed from a :class:`~varpo.experiments.results.Sweep` (numpy only, no I/O).

* :func:`frontier_points` — per variant and weight vector, the mean (and std) over seeds of the held-out scores: the
  dots and error bars of DVAO Fig. 3.
* :func:`hypervolumes` — per variant and seed, the hypervolume of that seed's weight sweep (one point per weight) in
  all K objectives; mean ± t-CI over seeds. Seeds are the unit of replication: each seed is a complete, independent
  sweep over the weights, so the seed-to-seed spread is exactly the uncertainty of "this method's frontier".
* :func:`score_table` — the papers' Table 1/2: per variant (at one weight vector) mean ± CI over seeds of each
  objective and of the all-objectives rate.
* :func:`monotonicity_table` — VL Norm Table 5: per run, the Pearson correlation of the held-out score with the
  evaluation index; mean ± CI over the variant's runs.
* :func:`dynamics` — per variant at one weight vector, each training series averaged over seeds step by step, and
  its centered moving average (window 15, capped by the run length: :func:`~varpo.experiments.summary.smoothing_window`).
* :func:`no_variance` — objectives whose reward never varied within a group during training (no learning signal for
  any method), from the logged within-group std.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from varpo.experiments.pareto import hypervolume
from varpo.experiments.results import MetricKeys, Run, Sweep, series
from varpo.experiments.summary import MeanCI, mean_ci, monotonicity, moving_average, smoothing_window


@dataclass
class FrontierPoint:
    """One dot of a frontier figure: a variant at one weight vector, aggregated over its finished seeds."""

    variant: str
    weights: tuple[float, ...]
    mean: np.ndarray  # [K]
    std: np.ndarray  # [K], NaN with one seed
    n: int


def frontier_points(sweep: Sweep, objectives: Sequence[str]) -> dict[str, list[FrontierPoint]]:
    """``{variant: [FrontierPoint per weight vector with ≥ 1 finished run]}`` in grid order."""
    out: dict[str, list[FrontierPoint]] = {}
    for variant in sweep.variants:
        pts = []
        for w in sweep.weights:
            runs = sweep.select(variant, w)
            if not runs:
                continue
            scores = np.array([[r.score(o) for o in objectives] for r in runs])  # [n, K]
            ok = np.isfinite(scores).all(axis=1)
            if not ok.any():
                continue
            scores = scores[ok]
            std = scores.std(axis=0, ddof=1) if len(scores) > 1 else np.full(len(objectives), np.nan)
            pts.append(FrontierPoint(variant, w, scores.mean(axis=0), std, len(scores)))
        out[variant] = pts
    return out


@dataclass
class HypervolumeRow:
    """Hypervolume of one variant: per seed, and mean ± CI over seeds."""

    variant: str
    per_seed: dict[int, float]
    runs_per_seed: dict[int, int]  # finished weight points that went into each seed's hypervolume
    ci: MeanCI
    of_means: float  # hypervolume of the seed-averaged points (the frontier drawn in the figure)


def hypervolumes(
    sweep: Sweep, objectives: Sequence[str], reference: Sequence[float], confidence: float = 0.95
) -> list[HypervolumeRow]:
    """One row per variant (grid order). A seed with no finished run has no hypervolume (not a zero): it is left
    out of the mean and shows in ``runs_per_seed``."""
    ref = np.asarray(reference, dtype=np.float64)
    means = frontier_points(sweep, objectives)
    rows = []
    for variant in sweep.variants:
        per_seed, counts = {}, {}
        for seed in sweep.seeds:
            runs = [r for r in sweep.select(variant) if r.point.seed == seed]
            pts = np.array([[r.score(o) for o in objectives] for r in runs]).reshape(-1, len(objectives))
            pts = pts[np.isfinite(pts).all(axis=1)]
            counts[seed] = len(pts)
            if len(pts):
                per_seed[seed] = hypervolume(pts, ref)
        mean_pts = np.array([p.mean for p in means[variant]]).reshape(-1, len(objectives))
        rows.append(
            HypervolumeRow(
                variant,
                per_seed,
                counts,
                mean_ci(list(per_seed.values()), confidence),
                hypervolume(mean_pts, ref) if len(mean_pts) else math.nan,
            )
        )
    return rows


def paired_difference(row: HypervolumeRow, baseline: HypervolumeRow, confidence: float = 0.95) -> MeanCI:
    """Mean ± t-CI over the seeds both variants finished of HV_row(s) − HV_baseline(s).

    Runs of one seed share the start model (warm start) and the evaluation prompts and sampling seed, so per-seed
    differences remove that shared variation: a paired interval that excludes 0 establishes a difference that two
    overlapping marginal intervals cannot show.
    """
    seeds = [s for s in row.per_seed if s in baseline.per_seed]
    return mean_ci([row.per_seed[s] - baseline.per_seed[s] for s in seeds], confidence)


#: First-class summary columns of every table: the all-objectives rate (a sample meets every objective) and the
#: worst-objective rate (min over objectives of the per-objective score); at K = 16 the per-objective columns follow.
SUMMARY_COLUMNS = ("all", "worst")


def table_columns(objectives: Sequence[str]) -> list[str]:
    return [*SUMMARY_COLUMNS, *objectives]


@dataclass
class ScoreRow:
    """One row of the Table 1/2-like table."""

    label: str
    cells: dict[str, MeanCI]  # objective name or "all" -> mean ± CI over runs
    n: int


def score_table(
    sweep: Sweep, objectives: Sequence[str], weights: tuple[float, ...] | None, confidence: float = 0.95
) -> list[ScoreRow]:
    """Per variant at ``weights`` (None: all weights pooled): mean ± CI over runs of each objective and "all".

    A first row "start (step 0)" holds the starting model's score (eval curve step 0, one value per seed) when the
    runs recorded one, so each method can be read against where it began.
    """
    columns = table_columns(objectives)
    rows = []
    start = _start_scores(sweep.finished, columns)
    if start is not None:
        rows.append(ScoreRow("start (step 0)", {c: mean_ci(start[c], confidence) for c in columns}, len(start["all"])))
    for variant in sweep.variants:
        runs = sweep.select(variant, weights)
        cells = {c: mean_ci([r.score(c) for r in runs], confidence) for c in columns}
        rows.append(ScoreRow(variant, cells, len(runs)))
    return rows


def _start_scores(runs: Sequence[Run], columns: Sequence[str]) -> dict[str, list[float]] | None:
    """Step-0 eval per seed (runs of one seed start from the same model and share the evaluation prompts and
    sampling seed, so they are one measurement, not replicates): the first run of each seed that recorded one."""
    found: dict[str, dict[int, float]] = {c: {} for c in columns}
    for r in runs:
        for c in columns:
            steps, scores = r.curve_scores(c)
            if len(steps) and steps[0] == 0:
                found[c].setdefault(r.point.seed, float(scores[0]))
    if not any(found.values()):
        return None
    return {c: list(v.values()) for c, v in found.items()}


@dataclass
class MonotonicityRow:
    variant: str
    cells: dict[str, MeanCI]  # objective or "all" -> mean ± CI over runs of the per-run Pearson score
    evals_per_run: int  # median number of eval points per run


def monotonicity_table(sweep: Sweep, objectives: Sequence[str], confidence: float = 0.95) -> list[MonotonicityRow]:
    """Per variant, over all its finished runs (every weight and seed): mean ± CI of the monotonicity score.
    Runs with fewer than 3 eval points or a constant score contribute nothing (Pearson undefined/degenerate)."""
    columns = table_columns(objectives)
    rows = []
    for variant in sweep.variants:
        runs = sweep.select(variant)
        cells = {}
        for c in columns:
            values = []
            for r in runs:
                _, scores = r.curve_scores(c)
                if len(scores) >= 3:
                    values.append(monotonicity(scores))
            cells[c] = mean_ci(values, confidence)
        lengths = [len(r.curve_scores("all")[0]) or len(r.curve) for r in runs]
        rows.append(MonotonicityRow(variant, cells, int(np.median(lengths)) if lengths else 0))
    return rows


@dataclass
class Curve:
    """A training series of one variant averaged over seeds; ``smooth`` = centered moving average of ``mean`` with
    ``window`` points (1: unsmoothed)."""

    steps: np.ndarray
    mean: np.ndarray
    smooth: np.ndarray
    n_runs: int
    window: int = 1


@dataclass
class Panel:
    """One subplot of the dynamics figure: a title, one curve per variant, and a warning drawn in the panel
    (``note``, e.g. an objective that never varied)."""

    title: str
    curves: dict[str, Curve] = field(default_factory=dict)
    note: str = ""


def average_curves(runs: Sequence[Run], candidates: Sequence[str], name: str = "", window: int = 15) -> Curve | None:
    """Mean over runs at each step (steps any run logged; NaN-free mean of the runs that have the step), smoothed
    with ``smoothing_window(len(steps), window)``."""
    per_run = [series(r.metrics, candidates, name) for r in runs]
    per_run = [(s, v) for s, v in per_run if len(s)]
    if not per_run:
        return None
    steps, mean = _mean_over_runs(per_run)
    w = smoothing_window(len(steps), window)
    return Curve(steps, mean, moving_average(mean, w), len(per_run), w)


def smooth_panels(panels: Sequence[Panel], window: int = 15) -> int:
    """Re-smooth every curve of ``panels`` with ONE window, ``smoothing_window`` of the longest curve, so all curves
    of a figure are averaged alike (the figure states that window); returns it."""
    lengths = [len(c.steps) for p in panels for c in p.curves.values()]
    w = smoothing_window(max(lengths, default=0), window)
    for p in panels:
        for c in p.curves.values():
            c.smooth, c.window = moving_average(c.mean, w), w
    return w


def used_window(panels: Sequence[Panel]) -> int:
    """The largest smoothing window among the curves of ``panels`` (1 when none is smoothed): the one to state."""
    return max((c.window for p in panels for c in p.curves.values()), default=1)


def _mean_over_runs(per_run: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Union of the runs' steps and, at each, the mean over the runs that logged it (steps unique per run)."""
    steps = np.unique(np.concatenate([s for s, _ in per_run]))
    stacked = np.full((len(per_run), len(steps)), np.nan)
    for i, (s, v) in enumerate(per_run):
        stacked[i, np.searchsorted(steps, s)] = v
    counts = np.isfinite(stacked).sum(axis=0)
    mean = np.divide(np.nansum(stacked, axis=0), counts, out=np.full(len(steps), np.nan), where=counts > 0)
    return steps, mean


def dynamics(
    sweep: Sweep,
    objectives: Sequence[str],
    weights: tuple[float, ...] | None,
    keys: MetricKeys = MetricKeys(),
    window: int = 15,
) -> list[Panel]:
    """Panels in order: reward mean per objective, reward std per objective, completion length, effective weight per
    objective, advantage magnitude E|A|. Panels no run logged are omitted. Every curve is smoothed with the same
    window, ``smoothing_window(longest series, window)``."""
    spec: list[tuple[str, Sequence[str], str]] = []
    spec += [(f"reward mean: {o}", keys.reward_mean, o) for o in objectives]
    spec += [(f"reward std: {o}", keys.reward_std, o) for o in objectives]
    spec += [("completion length (tokens)", keys.length, "")]
    spec += [(f"effective weight: {o}", keys.weight, o) for o in objectives]
    spec += [("advantage magnitude E|A|", keys.adv_magnitude, "")]
    panels = []
    for title, candidates, name in spec:
        panel = Panel(title)
        for variant in sweep.variants:
            curve = average_curves(sweep.select(variant, weights), candidates, name, window)
            if curve is not None:
                panel.curves[variant] = curve
        if panel.curves:
            panels.append(panel)
    smooth_panels(panels, window)
    return panels


def below_reference(sweep: Sweep, objectives: Sequence[str], reference: Sequence[float]) -> list[str]:
    """Runs scoring below the reference in some objective (the reference is then not a worst case and such runs add
    no hypervolume): named in the report so a badly chosen reference point cannot hide silently."""
    out = []
    for r in sweep.finished:
        for o, ref in zip(objectives, reference):
            if r.score(o) < ref:
                out.append(f"{r.point.name} ({o} = {r.score(o):.3g} < {ref:g})")
    return out


def eval_curves(
    sweep: Sweep, objectives: Sequence[str], weights: tuple[float, ...] | None, window: int = 15
) -> list[Panel]:
    """Held-out score vs step per objective and "all", averaged over the variant's runs at ``weights``; smoothed by
    the same rule as the training curves (``smoothing_window``: a few evaluations stay unsmoothed). These are the
    curves the monotonicity score summarises (on the raw scores)."""
    panels = []
    titles = {"all": "held-out: all objectives", "worst": "held-out: worst objective"}
    for column in [*objectives, *SUMMARY_COLUMNS]:
        panel = Panel(titles.get(column, f"held-out {column}"))
        for variant in sweep.variants:
            per_run = [r.curve_scores(column) for r in sweep.select(variant, weights)]
            per_run = [(s, v) for s, v in per_run if len(s)]
            if not per_run:
                continue
            steps, mean = _mean_over_runs(per_run)
            panel.curves[variant] = Curve(steps, mean, mean, len(per_run))
        if panel.curves:
            panels.append(panel)
    smooth_panels(panels, window)
    return panels


#: A within-group std at or below this is zero (a constant group's deviations are exact zeros up to rounding).
ZERO_STD = 1e-12


@dataclass
class VarianceCheck:
    """Did objective ``objective``'s reward ever vary within a group during training?

    Per finished run: "varied" when its logged within-group std (``MetricKeys.group_std``, mean over groups of the
    per-group std) is > 0 at some step; "constant" when it is 0 at every logged step (or, without that metric, when
    the batch reward std is 0 at every step: a constant batch has constant groups); "unknown" otherwise.
    """

    objective: str
    runs_varied: list[str] = field(default_factory=list)
    runs_constant: list[str] = field(default_factory=list)
    runs_unknown: list[str] = field(default_factory=list)

    @property
    def never_varied(self) -> bool:
        """Constant in every run that could be checked (and at least one could): no method got a gradient from it."""
        return bool(self.runs_constant) and not self.runs_varied

    def to_dict(self) -> dict:
        return {
            "never_varied": self.never_varied,
            "runs_varied": len(self.runs_varied),
            "runs_constant": sorted(self.runs_constant),
            "runs_unknown": sorted(self.runs_unknown),
        }


def run_variance(metrics: Sequence[dict], objective: str, keys: MetricKeys = MetricKeys()) -> str:
    """One run's verdict for ``objective`` ("varied", "constant" or "unknown"), by the rule of :class:`VarianceCheck`."""
    _, group_std = series(metrics, keys.group_std, objective)
    if len(group_std):
        return "varied" if (np.abs(group_std) > ZERO_STD).any() else "constant"
    _, batch_std = series(metrics, keys.reward_std, objective)
    return "constant" if len(batch_std) and not (np.abs(batch_std) > ZERO_STD).any() else "unknown"


def variance_checks(
    runs: Iterable[tuple[str, Sequence[dict]]], objectives: Sequence[str], keys: MetricKeys = MetricKeys()
) -> dict[str, VarianceCheck]:
    """``{objective: VarianceCheck}`` over ``runs`` (``(name, metrics records)`` pairs)."""
    out = {o: VarianceCheck(o) for o in objectives}
    for name, metrics in runs:
        for o in objectives:
            getattr(out[o], f"runs_{run_variance(metrics, o, keys)}").append(name)
    return out


def no_variance(sweep: Sweep, objectives: Sequence[str], keys: MetricKeys = MetricKeys()) -> dict[str, VarianceCheck]:
    """``{objective: VarianceCheck}`` over every finished run of the sweep (all variants, weights, seeds)."""
    return variance_checks(((run.point.name, run.metrics) for run in sweep.finished), objectives, keys)


NEVER_VARIED_NOTE = "never varied within a group in training: no method could learn it"


def flag_panels(panels: Sequence[Panel], never_varied: Sequence[str]) -> None:
    """Put :data:`NEVER_VARIED_NOTE` on every panel of an objective that never varied (title ends in ": <name>" or
    "held-out <name>")."""
    for p in panels:
        name = p.title.split(": ", 1)[1] if ": " in p.title else p.title.removeprefix("held-out ")
        if name in never_varied:
            p.note = NEVER_VARIED_NOTE
