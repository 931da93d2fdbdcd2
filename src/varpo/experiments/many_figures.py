"""Report figures for many objectives (K > :data:`MANY`), where one panel per objective pair (C(16, 2) = 120 PNGs) or
three full-size panels per objective (50 panels at K = 16) stop being readable.

* :func:`small_multiples` — one compact panel per objective on a near-square grid with shared axes, so 16 or 32
  curves are compared by position rather than by reading tick labels; variants keep their colours everywhere.
* :func:`objective_response_figure` — replaces the pairwise Pareto plots: for each objective k, its held-out score
  against its own weight w_k, per variant (seed mean ± 1 std).
* :func:`weight_heatmap` — effective weight of every objective (rows) over optimizer steps (columns), one heat map
  per variant on one colour scale: how dvao / saw / rvpo move the weights, and what a reward-weight schedule did.

Same conventions as :mod:`varpo.experiments.figures`: matplotlib object API on Agg, deterministic output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from varpo.experiments.analysis import NEVER_VARIED_NOTE, FrontierPoint, Panel, used_window
from varpo.experiments.figures import (
    _METADATA,
    _STYLE,
    colors,
    integer_steps,
    markers,
    note,
    point_markers,
    smoothing_text,
)

#: Above this many objectives the report switches to these figures (pairwise plots: C(K, 2) files).
MANY = 4
# Heat-map row labels of never-varied objectives (the panels' no-variance notes are drawn in this colour too).
_NEVER_COLOR = "firebrick"


def _grid(n: int) -> tuple[int, int]:
    ncols = max(1, math.ceil(math.sqrt(n)))
    return -(-n // ncols), ncols


# Fixed margins in inches. No tight_layout / bbox_inches="tight": with 16-32 axes their text-extent passes cost
# most of a report's time, and the layout below is already fixed by the grid.
_TOP, _BOTTOM, _LEFT, _RIGHT = 1.15, 0.55, 0.75, 0.2


def _figure(nrows: int, ncols: int, cell: tuple[float, float]) -> Figure:
    width = cell[0] * ncols + _LEFT + _RIGHT
    height = cell[1] * nrows + _TOP + _BOTTOM
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=_LEFT / width, right=1 - _RIGHT / width, bottom=_BOTTOM / height, top=1 - _TOP / height, hspace=0.5
    )
    return fig


def _header(
    fig: Figure, title: str, variants: Sequence[str], palette: dict, counts: dict | None = None, missing=()
) -> None:
    """Title and the variant legend in the fixed top margin (``missing``: variants without data, listed too)."""
    height = fig.get_figheight()
    fig.suptitle(title, y=1 - 0.08 / height, va="top", fontsize=9)
    label = (lambda v: f"{v} (n={counts[v]})") if counts else str
    style = markers(list(palette))  # palette keys are in grid order: the same marker as every other figure
    handles = [
        Line2D([], [], color=palette[v], lw=2, ls=style[v][1], marker=style[v][0], ms=4, label=label(v))
        for v in variants
    ]
    handles += [
        Line2D([], [], color=palette[v], lw=2, ls=style[v][1], alpha=0.4, label=f"{v} (no data)") for v in missing
    ]
    if handles:
        fig.legend(
            handles=handles, loc="upper center", ncol=min(len(handles), 6), bbox_to_anchor=(0.5, 1 - 0.5 / height)
        )


def _hide_unused(axes, used: int, xlabel: str) -> None:
    """Hide the empty cells of the grid; the lowest visible panel of every column gets x tick labels and label."""
    nrows, ncols = axes.shape
    for i, ax in enumerate(axes.flat):
        if i >= used:
            ax.set_visible(False)
    for c in range(ncols):
        rows = [r for r in range(nrows) if r * ncols + c < used]
        if rows:
            ax = axes[rows[-1], c]
            ax.tick_params(labelbottom=True)
            ax.set_xlabel(xlabel)


def _label(ax, text: str, steps: bool = False) -> None:
    """Panel title as plain axes text (``set_title`` re-measures every tick label to place itself) and few ticks
    (integers on a step axis)."""
    ax.text(0.5, 1.02, text, transform=ax.transAxes, ha="center", va="bottom", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(4, integer=steps))
    ax.yaxis.set_major_locator(MaxNLocator(4))


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata=_METADATA)
    return path


def build_small_multiples(panels: Sequence[Panel], variants: Sequence[str], title: str, ylabel: str = "") -> Figure:
    """One compact panel per entry of ``panels`` (shared x and y), bold = moving average (the curves' own window,
    stated in the title), faint = seed mean; integer step ticks; a panel's ``note`` drawn inside it."""
    palette, style = colors(list(variants)), markers(list(variants))
    nrows, ncols = _grid(len(panels))
    window = used_window(panels)
    with matplotlib.rc_context({**_STYLE, "font.size": 8}):
        fig = _figure(nrows, ncols, (2.3, 1.75))
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        for ax, panel in zip(axes.flat, panels, strict=False):
            for variant, curve in panel.curves.items():
                c, (marker, ls) = palette.get(variant, "k"), style.get(variant, ("o", "-"))
                if curve.window > 1:
                    ax.plot(curve.steps, curve.mean, color=c, alpha=0.25, lw=0.7)
                ax.plot(curve.steps, curve.smooth, color=c, ls=ls, lw=1.4, **point_markers(marker, len(curve.steps)))
            _label(ax, panel.title, steps=True)
            if panel.note:
                note(ax, panel.note)
        _hide_unused(axes, len(panels), "step")
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel)
        present = [v for v in variants if any(v in p.curves for p in panels)]
        runs = {v: next(p.curves[v].n_runs for p in panels if v in p.curves) for v in present}
        missing = [v for v in variants if v not in present]
        _header(fig, f"{title} — {smoothing_text(window)}", present, palette, runs, missing)
        return fig


def small_multiples(panels: Sequence[Panel], variants: Sequence[str], path: Path, title: str, ylabel: str = "") -> Path:
    """Save :func:`build_small_multiples` to ``path``."""
    return _save(build_small_multiples(panels, variants, title, ylabel), path)


def objective_response_figure(
    points: dict[str, list[FrontierPoint]], objectives: Sequence[str], path: Path, never_varied: Sequence[str] = ()
) -> Path:
    """Panel k: held-out score of objective k vs its own weight w_k, per variant (seed mean, bars ±1 std); the
    panel of an objective in ``never_varied`` carries the no-variance note."""
    palette, style = colors(list(points)), markers(list(points))
    nrows, ncols = _grid(len(objectives))
    with matplotlib.rc_context({**_STYLE, "font.size": 8}):
        fig = _figure(nrows, ncols, (2.3, 1.75))
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        for k, (ax, name) in enumerate(zip(axes.flat, objectives, strict=False)):
            for variant, pts in points.items():
                if not pts:
                    continue
                w = np.array([p.weights[k] / max(sum(p.weights), 1e-12) for p in pts])
                y = np.array([p.mean[k] for p in pts])
                err = np.array([p.std[k] for p in pts])
                order = np.argsort(w, kind="stable")
                ax.errorbar(
                    w[order],
                    y[order],
                    yerr=np.where(np.isfinite(err[order]), err[order], 0.0),
                    color=palette[variant],
                    marker=style[variant][0],
                    ls=style[variant][1],
                    ms=3,
                    lw=1.0,
                    capsize=1.5,
                )
            _label(ax, name)
            if name in never_varied:
                note(ax, NEVER_VARIED_NOTE, width=30)
        _hide_unused(axes, len(objectives), "own weight w_k / Σw")
        for ax in axes[:, 0]:
            ax.set_ylabel("held-out score")
        title = "Per objective: held-out score vs its own weight (seed mean, bars ±1 std over seeds)"
        _header(
            fig, title, [v for v, p in points.items() if p], palette, missing=[v for v, p in points.items() if not p]
        )
        return _save(fig, path)


def weight_heatmap(
    panels: Sequence[Panel],
    objectives: Sequence[str],
    variants: Sequence[str],
    path: Path,
    never_varied: Sequence[str] = (),
) -> Path:
    """:func:`build_weight_heatmap`, saved to ``path``."""
    return _save(build_weight_heatmap(panels, objectives, variants, never_varied), path)


def build_weight_heatmap(
    panels: Sequence[Panel], objectives: Sequence[str], variants: Sequence[str], never_varied: Sequence[str] = ()
) -> Figure:
    """Heat maps of effective weight [objective, step], one per variant, one shared colour scale.

    ``panels``: the "effective weight: <objective>" panels of :func:`varpo.experiments.analysis.dynamics`, in
    objective order. Values are the seed means (unsmoothed); steps a variant never logged stay blank. A row of an
    objective in ``never_varied`` is labelled so (its weight is 0 by the no-signal rule, not a method's choice).
    """
    by_objective = {p.title.split(": ", 1)[-1]: p for p in panels}
    present = [v for v in variants if any(v in p.curves for p in panels)]
    maps = {}
    for v in present:
        steps = np.unique(np.concatenate([p.curves[v].steps for p in panels if v in p.curves]))
        grid = np.full((len(objectives), len(steps)), np.nan)
        for i, name in enumerate(objectives):
            panel = by_objective.get(name)
            if panel is not None and v in panel.curves:
                curve = panel.curves[v]
                grid[i, np.searchsorted(steps, curve.steps)] = curve.mean
        maps[v] = (steps, grid)
    finite = np.concatenate([g[np.isfinite(g)] for _, g in maps.values()] or [np.zeros(0)])
    uniform = 1.0 / max(len(objectives), 1)
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 2 * uniform)
    if vmax - vmin < 1e-9:  # constant weights: a visible scale around the value
        vmin, vmax = max(0.0, vmin - uniform / 2), vmax + uniform / 2
    ncols = 1 if len(present) <= 4 else 2
    nrows = max(1, -(-len(present) // ncols))
    height = 0.16 * len(objectives) + 1.0
    with matplotlib.rc_context({**_STYLE, "font.size": 8, "axes.grid": False}):
        fig = _figure(nrows, ncols, (6.2, height))
        fig.subplots_adjust(right=1 - 1.3 / fig.get_figwidth(), left=1.0 / fig.get_figwidth(), wspace=0.35)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        image = None
        for ax, v in zip(axes.flat, present, strict=False):
            steps, grid = maps[v]
            extent = (steps[0] - 0.5, steps[-1] + 0.5, len(objectives) - 0.5, -0.5)
            image = ax.imshow(
                grid, aspect="auto", interpolation="nearest", cmap="viridis", vmin=vmin, vmax=vmax, extent=extent
            )
            labels = [f"{o} — never varied" if o in never_varied else o for o in objectives]
            ax.set_yticks(range(len(objectives)), labels, fontsize=max(5, 9 - len(objectives) // 8))
            for tick, name in zip(ax.get_yticklabels(), objectives, strict=True):
                if name in never_varied:
                    tick.set_color(_NEVER_COLOR)
            ax.set_title(v, fontsize=9)
            ax.set_xlabel("step")
            integer_steps(ax)
        for ax in list(axes.flat)[len(present) :]:
            ax.set_visible(False)
        if image is not None:
            width = fig.get_figwidth()
            cax = fig.add_axes((1 - 1.05 / width, 0.2, 0.18 / width, 0.6))
            fig.colorbar(image, cax=cax, label="effective weight")
        height = fig.get_figheight()
        fig.suptitle(
            f"Effective weight per objective over training (seed mean; uniform = 1/K = {1 / len(objectives):.3g})",
            y=1 - 0.08 / height,
            va="top",
            fontsize=9,
        )
        return fig
