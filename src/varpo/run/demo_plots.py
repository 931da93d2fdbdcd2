"""The demo's picture: each objective's held-out rate over training per method (mean over seeds ± s.e. band), and
each method's effective reward weights over training (mean over seeds, moving average)."""

from __future__ import annotations

import math
from pathlib import Path

from varpo.trl.metrics import read_metrics


def _weight_key(record: dict, objective: str) -> str | None:
    """The effective-weight key of ``objective`` in a metrics record (``adv/weight/<name>`` or ``weight/<name>``)."""
    suffix = f"weight/{objective}"
    return next((k for k in record if k.endswith(suffix) and isinstance(record[k], (int, float))), None)


def _moving_average(values: list[float], window: int) -> list[float]:
    half = max(window, 1) // 2
    return [sum(c) / len(c) for c in (values[max(0, i - half) : i + half + 1] for i in range(len(values)))]


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
    from matplotlib.ticker import MaxNLocator

    methods = list(runs)
    colours = dict(zip(methods, ["#7f7f7f", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"], strict=False))
    panels = [*objectives, "all objectives"]
    cols = max(len(panels), len(methods))
    fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 6.4), squeeze=False)
    for ax, obj in zip(axes[0], panels, strict=False):
        for method in methods:
            curves = [p["curve"] for p in runs[method].values()]
            steps = [pt["step"] for pt in curves[0]]
            values = [
                [(pt["all"] if obj == "all objectives" else pt["objectives"][obj]) for pt in c] for c in curves
            ]  # [seed][eval point]
            if any(len(v) != len(steps) for v in values):
                continue
            mean = [sum(col) / len(col) for col in zip(*values, strict=True)]
            se = [
                math.sqrt(sum((x - m) ** 2 for x in col) / (len(col) - 1) / len(col)) if len(col) > 1 else 0.0
                for col, m in zip(zip(*values, strict=True), mean, strict=True)
            ]
            ax.plot(steps, mean, marker="o", color=colours[method], label=method, linewidth=2)
            ax.fill_between(
                steps, [m - s for m, s in zip(mean, se, strict=True)], [m + s for m, s in zip(mean, se, strict=True)],
                color=colours[method], alpha=0.2,
            )  # fmt: skip
        ax.set_title(f"{obj}: held-out rate")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best")
    for ax, method in zip(axes[1], methods, strict=False):
        per_seed = [read_metrics(d) for d in run_dirs[method].values()]
        for obj in objectives:
            series: dict[int, list[float]] = {}
            for records in per_seed:
                for r in records:
                    key = _weight_key(r, obj)
                    if key is not None and "step" in r:
                        series.setdefault(int(r["step"]), []).append(float(r[key]))
            if not series:
                continue
            steps = sorted(series)
            mean = [sum(series[s]) / len(series[s]) for s in steps]
            ax.plot(steps, _moving_average(mean, max(1, len(steps) // 10)), label=obj, linewidth=1.8)
        ax.set_title(f"{method}: effective weights")
        ax.set_xlabel("RL step")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    for row, used in ((axes[0], len(panels)), (axes[1], len(methods))):
        for ax in row[used:]:
            ax.set_visible(False)
        for ax in row[:used]:  # steps are whole numbers: no 2.5 ticks on a short run
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig
