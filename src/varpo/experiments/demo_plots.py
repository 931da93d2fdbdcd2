"""The demo's picture: each objective's held-out rate over training per method (mean over seeds ± s.e. band), and
each method's effective reward weights over training (mean over seeds, centred moving average).

The figure rules are the report's (``varpo.experiments.figures``): one smoothing rule
(:func:`varpo.experiments.summary.smoothing_window`), a marker and line style per method besides its colour (hollow
markers, so equal curves stay visible on top of each other), whole-number step ticks, every method in the legend
(one whose seeds' curves differ in length is listed as such, not dropped), and a note on the panel of an objective
that never varied within a group in any run (no method could learn it)."""

from __future__ import annotations

import math
from pathlib import Path

from varpo.trl.metrics import read_metrics

ALL = "all objectives"


def _weight_key(record: dict, objective: str) -> str | None:
    """The effective-weight key of ``objective`` in a metrics record (``adv/weight/<name>`` or ``weight/<name>``)."""
    suffix = f"weight/{objective}"
    return next((k for k in record if k.endswith(suffix) and isinstance(record[k], (int, float))), None)


def never_varied(metrics: list[list[dict]], objectives: list[str]) -> list[str]:
    """Objectives that never varied within a group in any run (``metrics``: one record list per run), by the
    report's rule (:class:`varpo.experiments.analysis.VarianceCheck`): constant in every run that logged it, and
    logged by at least one. The picture claims only what the logs show."""
    from varpo.experiments.analysis import variance_checks

    checks = variance_checks(((str(i), records) for i, records in enumerate(metrics)), objectives)
    return [o for o in objectives if checks[o].never_varied]


def plot(runs: dict[str, dict[int, dict]], run_dirs: dict[str, dict[int, Path]], objectives: list[str], path: Path):
    """Draw :func:`figure` to ``path`` (PNG); returns ``path``."""
    import matplotlib.pyplot as plt

    fig = figure(runs, run_dirs, objectives)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def figure(runs: dict[str, dict[int, dict]], run_dirs: dict[str, dict[int, Path]], objectives: list[str]):
    """One figure: top row, held-out rate per objective (+ all objectives) vs step; bottom row, effective weights
    per method. ``runs``: {method: {seed: eval.json payload}}; ``run_dirs``: {method: {seed: run directory}}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from varpo.experiments import figures
    from varpo.experiments.analysis import NEVER_VARIED_NOTE
    from varpo.experiments.summary import moving_average, smoothing_window

    methods = list(runs)
    colours = dict(zip(methods, ["#7f7f7f", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"], strict=False))
    styles = figures.markers(methods)
    metrics = {m: [read_metrics(d) for d in run_dirs[m].values()] for m in methods}
    flat = never_varied([records for per_seed in metrics.values() for records in per_seed], objectives)
    panels = [*objectives, ALL]
    cols = max(len(panels), len(methods))
    fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 6.4), squeeze=False)
    ragged: list[str] = []
    for ax, obj in zip(axes[0], panels, strict=False):
        for method in methods:
            curves = [p["curve"] for p in runs[method].values()]
            steps = [pt["step"] for pt in curves[0]]
            values = [[(pt["all"] if obj == ALL else pt["objectives"][obj]) for pt in c] for c in curves]  # [seed][t]
            if any(len(v) != len(steps) for v in values):
                if method not in ragged:
                    ragged.append(method)
                continue
            mean = [sum(col) / len(col) for col in zip(*values, strict=True)]
            se = [
                math.sqrt(sum((x - m) ** 2 for x in col) / (len(col) - 1) / len(col)) if len(col) > 1 else 0.0
                for col, m in zip(zip(*values, strict=True), mean, strict=True)
            ]
            marker, style = styles[method]
            ax.plot(
                steps, mean, color=colours[method], label=method, linewidth=2, linestyle=style,
                **figures.point_markers(marker, len(steps)),
            )  # fmt: skip
            ax.fill_between(
                steps, [m - s for m, s in zip(mean, se, strict=True)], [m + s for m, s in zip(mean, se, strict=True)],
                color=colours[method], alpha=0.2,
            )  # fmt: skip
        ax.set_title(f"{obj}: held-out rate")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
        if obj in flat:
            figures.note(ax, NEVER_VARIED_NOTE)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for method in ragged:  # every method in the legend, even one that could not be drawn
        handles.append(Line2D([], [], color=colours[method], linestyle=styles[method][1]))
        labels.append(f"{method} (curves differ in length)")
    axes[0][0].legend(handles, labels, loc="best", fontsize=8)
    for ax, method in zip(axes[1], methods, strict=False):
        for obj in objectives:
            series: dict[int, list[float]] = {}
            for records in metrics[method]:
                for r in records:
                    key = _weight_key(r, obj)
                    if key is not None and "step" in r:
                        series.setdefault(int(r["step"]), []).append(float(r[key]))
            if not series:
                continue
            steps = sorted(series)
            mean = [sum(series[s]) / len(series[s]) for s in steps]
            window = smoothing_window(len(steps))
            ax.plot(steps, moving_average(mean, window), label=obj, linewidth=1.8)
        ax.set_title(f"{method}: effective weights")
        ax.set_xlabel("RL step")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8, loc="best")
    for row, used in ((axes[0], len(panels)), (axes[1], len(methods))):
        for ax in row[used:]:
            ax.set_visible(False)
        for ax in row[:used]:
            figures.integer_steps(ax)  # steps are whole numbers: no 0.5 ticks on a short run
    fig.tight_layout()
    return fig
