"""The report's PNGs, drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch, so
importing this module never changes a user's matplotlib state). Output is deterministic: fixed colours per variant
(grid order), no timestamps or version strings in the PNG metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from varpo.experiments.analysis import FrontierPoint, HypervolumeRow, Panel
from varpo.experiments.grid import format_weight
from varpo.experiments.pareto import non_dominated

_STYLE = {"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8, "svg.hashsalt": "varpo"}
_METADATA = {"Software": None}


def colors(variants: Sequence[str]) -> dict[str, tuple]:
    """Stable colour per variant: tab10 (tab20 beyond 10 variants) in grid order."""
    cmap = matplotlib.colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata=_METADATA, bbox_inches="tight")
    return path


def pareto_figure(
    points: dict[str, list[FrontierPoint]],
    objectives: Sequence[str],
    pair: tuple[int, int],
    path: Path,
    reference: Sequence[float] | None = None,
) -> Path:
    """Objective ``pair[0]`` (x) vs ``pair[1]`` (y): per variant the seed-mean score at each weight (labelled with
    its w1) with ±1 std error bars over seeds, and the variant's non-dominated staircase (the boundary of the region
    its points dominate: what the hypervolume measures)."""
    i, j = pair
    palette = colors(list(points))
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(6.0, 4.6))
        ax = fig.add_subplot()
        for variant, pts in points.items():
            if not pts:
                continue
            c = palette[variant]
            xy = np.array([[p.mean[i], p.mean[j]] for p in pts])
            err = np.array([[p.std[i], p.std[j]] for p in pts])
            err = np.where(np.isfinite(err), err, 0.0)
            ax.errorbar(
                xy[:, 0],
                xy[:, 1],
                xerr=err[:, 0],
                yerr=err[:, 1],
                fmt="o",
                color=c,
                ms=4,
                capsize=2,
                lw=0.8,
                label=variant,
            )
            for p, (x, y) in zip(pts, xy):
                ax.annotate(
                    format_weight(p.weights[0]), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, color=c
                )
            front = xy[non_dominated(xy)]
            front = front[np.lexsort((-front[:, 1], front[:, 0]))]
            ax.plot(front[:, 0], front[:, 1], drawstyle="steps-pre", color=c, lw=1.4, alpha=0.9)
        ax.set_xlabel(f"{objectives[i]} (held-out)")
        ax.set_ylabel(f"{objectives[j]} (held-out)")
        title = f"Pareto frontier: {objectives[i]} vs {objectives[j]} (labels: w1; bars: ±1 std over seeds)"
        if reference is not None:
            title += f"\nreference point ({reference[i]:g}, {reference[j]:g})"
        ax.set_title(title, fontsize=9)
        ax.legend(loc="best")
        return _save(fig, path)


def hypervolume_figure(rows: Sequence[HypervolumeRow], reference: Sequence[float], path: Path) -> Path:
    """Bar = mean hypervolume over seeds, error bar = its t-CI, dots = the individual seeds."""
    palette = colors([r.variant for r in rows])
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(max(4.0, 0.9 * len(rows) + 2), 3.8))
        ax = fig.add_subplot()
        for x, row in enumerate(rows):
            c = palette[row.variant]
            if row.ci.n:
                err = row.ci.half_width if np.isfinite(row.ci.half_width) else 0.0
                ax.bar(x, row.ci.mean, color=c, alpha=0.6, yerr=err, capsize=4)
            else:
                ax.text(x, 0, "no finished run", rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
            seeds = list(row.per_seed.values())
            ax.plot([x] * len(seeds), seeds, "o", color="k", ms=3)
        ax.set_xticks(range(len(rows)), [r.variant for r in rows], rotation=30, ha="right")
        ax.set_ylabel("hypervolume")
        conf = rows[0].ci.confidence if rows else 0.95
        ref = ", ".join(f"{v:g}" for v in reference)
        ax.set_title(
            f"Hypervolume per method: mean ± {conf:.0%} t-CI over seeds (dots: seeds); ref ({ref})", fontsize=9
        )
        return _save(fig, path)


def panels_figure(panels: Sequence[Panel], variants: Sequence[str], path: Path, title: str, window: int = 15) -> Path:
    """Grid of line plots: per variant the seed-mean series (faint) and its centered moving average (bold)."""
    palette = colors(list(variants))
    ncols = min(4, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(3.6 * ncols, 2.7 * nrows))
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax, panel in zip(axes.flat, panels):
            for variant, curve in panel.curves.items():
                c = palette.get(variant, "k")
                ax.plot(curve.steps, curve.mean, color=c, alpha=0.25, lw=0.8)
                ax.plot(curve.steps, curve.smooth, color=c, lw=1.6)
            ax.set_title(panel.title, fontsize=9)
            ax.set_xlabel("step")
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        present = [v for v in variants if any(v in p.curves for p in panels)]
        runs = {v: next(p.curves[v].n_runs for p in panels if v in p.curves) for v in present}
        handles = [Line2D([], [], color=palette[v], lw=1.6, label=f"{v} (n={runs[v]})") for v in present]
        if handles:
            fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), bbox_to_anchor=(0.5, 1.0))
        fig.suptitle(f"{title} — faint: mean over seeds; bold: centered moving average, window {window}", y=1.04)
        fig.tight_layout()
        return _save(fig, path)
