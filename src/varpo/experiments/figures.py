"""The report's PNGs, drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch, so
importing this module never changes a user's matplotlib state). Output is deterministic: fixed colours per variant
(grid order), no timestamps or version strings in the PNG metadata.

Readability rules every figure follows: step axes have integer ticks; every method is in the legend (also one with
no finished run, marked so); methods get distinct markers and line styles as well as colours, and points several
methods share are drawn side by side (:mod:`varpo.experiments.placement`), so no method can hide behind another;
point labels are placed so they do not overlap; a panel of an objective that never varied in training says so.
The ``build_*`` functions return the :class:`~matplotlib.figure.Figure` (for tests and callers that add to it), the
``*_figure`` functions save it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import offset_copy

from varpo.experiments.analysis import FrontierPoint, HypervolumeRow, Panel, used_window
from varpo.experiments.grid import format_weight
from varpo.experiments.pareto import non_dominated
from varpo.experiments.placement import coincident_offsets, place_labels

_STYLE = {"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8, "svg.hashsalt": "varpo"}
_METADATA = {"Software": None}


def colors(variants: Sequence[str]) -> dict[str, tuple]:
    """Stable colour per variant: tab10 (tab20 beyond 10 variants) in grid order."""
    cmap = matplotlib.colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES = ("-", "--", ":", "-.")


def markers(variants: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Stable (marker, line style) per variant in grid order: a second cue next to colour."""
    return {v: (MARKERS[i % len(MARKERS)], LINESTYLES[i % len(LINESTYLES)]) for i, v in enumerate(variants)}


def integer_steps(ax) -> None:
    """Optimizer steps are integers: never a tick at step 1.5."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def point_markers(marker: str, n_points: int) -> dict:
    """Hollow per-variant markers on a short series (every point is a measurement worth seeing; hollow, so markers of
    variants with equal values stay visible on top of each other); none on a long one."""
    return {"marker": marker, "ms": 5, "markerfacecolor": "none"} if n_points < 12 else {}


def smoothing_text(window: int) -> str:
    """What the lines of a curve figure are, for its title."""
    if window > 1:
        return f"faint: mean over seeds; bold: centered moving average, window {window}"
    return "mean over seeds (unsmoothed: too few points for a moving average)"


def note(ax, text: str, width: int = 42) -> None:
    """A warning inside a panel (top left, wrapped to ``width`` characters, on a white box so curves do not hide
    it)."""
    ax.text(
        0.02,
        0.97,
        textwrap.fill(text, width),
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=6.5,
        color="firebrick",
        zorder=5,
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "firebrick", "lw": 0.5},
    )


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata=_METADATA, bbox_inches="tight")
    return path


def build_pareto(
    points: dict[str, list[FrontierPoint]],
    objectives: Sequence[str],
    pair: tuple[int, int],
    reference: Sequence[float] | None = None,
    never_varied: Sequence[str] = (),
) -> Figure:
    """Objective ``pair[0]`` (x) vs ``pair[1]`` (y): per variant the seed-mean score at each weight (labelled with
    its w1) with ±1 std error bars over seeds, and the variant's non-dominated staircase (the boundary of the region
    its points dominate: what the hypervolume measures).

    Points that several variants (or weights) share are drawn side by side, 4 points from the true position, and
    the title says which; labels of one weight at one position are drawn once; every variant of ``points`` is in
    the legend ("no finished run" when it has no point). ``never_varied``: objectives flagged on their axis.
    """
    i, j = pair
    palette, style = colors(list(points)), markers(list(points))
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(6.0, 4.6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        drawn = {v: pts for v, pts in points.items() if pts}
        xy = {v: np.array([[p.mean[i], p.mean[j]] for p in pts]) for v, pts in drawn.items()}
        offsets, clusters = coincident_offsets(xy)
        for variant, pts in drawn.items():
            c, (marker, ls) = palette[variant], style[variant]
            err = np.array([[p.std[i], p.std[j]] for p in pts])
            err = np.where(np.isfinite(err), err, 0.0)
            for (dx, dy), rows in _by_offset(offsets[variant]):
                shift = offset_copy(ax.transData, fig=fig, x=dx, y=dy, units="points")
                ax.errorbar(
                    xy[variant][rows, 0],
                    xy[variant][rows, 1],
                    xerr=err[rows, 0],
                    yerr=err[rows, 1],
                    fmt=marker,
                    color=c,
                    ms=4.5,
                    capsize=2,
                    lw=0.8,
                    transform=shift,
                    zorder=3,
                )
            front = xy[variant][non_dominated(xy[variant])]
            front = front[np.lexsort((-front[:, 1], front[:, 0]))]
            ax.plot(front[:, 0], front[:, 1], drawstyle="steps-pre", color=c, ls=ls, lw=1.4, alpha=0.9)
        ax.autoscale_view()
        ax.set_xlim(ax.get_xlim())  # freeze the limits: labels are placed in display space
        ax.set_ylim(ax.get_ylim())
        shown = [(*xy[v][r], *offsets[v][r]) for v in drawn for r in range(len(xy[v]))]
        place_labels(ax, _label_anchors(drawn, xy, offsets, palette), shown)
        ax.set_xlabel(_axis_label(objectives[i], never_varied))
        ax.set_ylabel(_axis_label(objectives[j], never_varied))
        title = f"Pareto frontier: {objectives[i]} vs {objectives[j]} (labels: w1; bars: ±1 std over seeds)"
        if reference is not None:
            title += f"\nreference point ({reference[i]:g}, {reference[j]:g})"
        if clusters:
            title += "\n" + _coincidence_note(clusters)
        ax.set_title(title, fontsize=9)
        handles = [
            Line2D(
                [],
                [],
                color=palette[v],
                marker=style[v][0],
                ls=style[v][1],
                ms=4.5,
                label=v if points[v] else f"{v} (no finished run)",
                markerfacecolor=palette[v] if points[v] else "none",
            )
            for v in points
        ]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        return fig


def pareto_figure(
    points: dict[str, list[FrontierPoint]],
    objectives: Sequence[str],
    pair: tuple[int, int],
    path: Path,
    reference: Sequence[float] | None = None,
    never_varied: Sequence[str] = (),
) -> Path:
    """Save :func:`build_pareto` to ``path``."""
    return _save(build_pareto(points, objectives, pair, reference, never_varied), path)


def _by_offset(offsets: np.ndarray) -> list[tuple[tuple[float, float], np.ndarray]]:
    """Row indices grouped by equal display offset (one errorbar call each), in first-seen order."""
    groups: dict[tuple[float, float], list[int]] = {}
    for r, (dx, dy) in enumerate(offsets):
        groups.setdefault((float(dx), float(dy)), []).append(r)
    return [(k, np.array(v)) for k, v in groups.items()]


def _label_anchors(drawn, xy, offsets, palette) -> list[tuple]:
    """One w1 label per (position, text): variants that coincide at one weight share one grey label at the true
    position; any other point is labelled next to its own (possibly offset) marker in its colour."""
    anchors: dict[tuple, list] = {}
    for variant, pts in drawn.items():
        for r, p in enumerate(pts):
            x, y = xy[variant][r]
            text = format_weight(p.weights[0])
            key = (round(float(x), 9), round(float(y), 9), text)
            anchors.setdefault(key, []).append((float(x), float(y), *offsets[variant][r], text, palette[variant]))
    out = []
    for group in anchors.values():
        if len(group) == 1:
            out.append(group[0])
        else:
            x, y, _, _, text, _ = group[0]
            out.append((x, y, 0.0, 0.0, text, "0.3"))
    return out


def _axis_label(objective: str, never_varied: Sequence[str]) -> str:
    label = f"{objective} (held-out)"
    return label + " — never varied in training" if objective in never_varied else label


def _coincidence_note(clusters: Sequence[tuple[str, ...]]) -> str:
    """ "markers offset where points coincide: grpo = ac (×2), …" (each distinct set of names once, with a count)."""
    counts: dict[str, int] = {}
    for names in clusters:
        key = " = ".join(dict.fromkeys(names)) if len(set(names)) > 1 else f"{names[0]} (two weights)"
        counts[key] = counts.get(key, 0) + 1
    parts = [k + (f" (×{n})" if n > 1 else "") for k, n in counts.items()]
    text = "; ".join(parts[:4]) + (f"; +{len(parts) - 4} more" if len(parts) > 4 else "")
    return f"markers offset where points coincide: {text}"


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


def build_panels(panels: Sequence[Panel], variants: Sequence[str], title: str) -> Figure:
    """Grid of line plots: per variant the seed-mean series (faint) and its centered moving average (bold, the
    curves' own window, stated in the title); integer step ticks; a panel's ``note`` drawn inside it."""
    palette, style = colors(list(variants)), markers(list(variants))
    ncols = min(4, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    window = used_window(panels)
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(3.6 * ncols, 2.7 * nrows))
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax, panel in zip(axes.flat, panels):
            for variant, curve in panel.curves.items():
                c, (marker, ls) = palette.get(variant, "k"), style.get(variant, ("o", "-"))
                if curve.window > 1:
                    ax.plot(curve.steps, curve.mean, color=c, alpha=0.25, lw=0.8)
                ax.plot(curve.steps, curve.smooth, color=c, ls=ls, lw=1.6, **point_markers(marker, len(curve.steps)))
            ax.set_title(panel.title, fontsize=9)
            ax.set_xlabel("step")
            integer_steps(ax)
            if panel.note:
                note(ax, panel.note)
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        present = [v for v in variants if any(v in p.curves for p in panels)]
        runs = {v: next(p.curves[v].n_runs for p in panels if v in p.curves) for v in present}
        handles = [
            Line2D(
                [],
                [],
                color=palette[v],
                ls=style[v][1],
                lw=1.6,
                marker=style[v][0],
                mfc="none",
                label=f"{v} (n={runs[v]})",
            )
            for v in present
        ]
        handles += [
            Line2D([], [], color=palette[v], ls=style[v][1], lw=1.6, alpha=0.4, label=f"{v} (no data)")
            for v in variants
            if v not in present
        ]
        if handles:
            fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), bbox_to_anchor=(0.5, 1.0))
        fig.suptitle(f"{title} — {smoothing_text(window)}", y=1.04)
        fig.tight_layout()
        return fig


def panels_figure(panels: Sequence[Panel], variants: Sequence[str], path: Path, title: str) -> Path:
    """Save :func:`build_panels` to ``path``."""
    return _save(build_panels(panels, variants, title), path)
