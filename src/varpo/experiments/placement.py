"""Where markers and text labels go on a scatter so that nothing hides anything: deterministic, no randomness.

* :func:`coincident_offsets` — points that several series share exactly (two methods with the same held-out scores
  at a weight, common with few held-out prompts) would be drawn on top of each other and one method would vanish.
  Each member of such a cluster gets a fixed display offset on a small circle around the true position (the data
  are unchanged; the figure says the markers are offset).
* :func:`place_labels` — greedy label placement: each label tries a fixed list of offsets around its anchor and takes
  the first whose text box overlaps no label already placed and no marker; when every candidate collides it takes
  the one with the least overlap. O(labels × candidates × placed), fine for the tens of points of a weight sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Offsets (points) a label tries, nearest first: the 8 directions around the marker, then twice and three times as far.
_RING = ((4, 3), (4, -10), (-16, 3), (-16, -10), (-6, 7), (-6, -15), (7, -4), (-20, -4))
CANDIDATES = tuple((dx * r, dy * r) for r in (1, 2, 3) for dx, dy in _RING)
_BACKING = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75}


def coincident_offsets(
    series: dict[str, np.ndarray], radius: float = 4.0, decimals: int = 9
) -> tuple[dict[str, np.ndarray], list[tuple[str, ...]]]:
    """Display offsets (points) that separate coincident points.

    Args:
        series: ``{name: xy [n, 2]}`` in drawing order.
        radius: distance (points) of a cluster member from the true position.
        decimals: coordinates equal after rounding to this many decimals coincide.

    Returns:
        ``({name: offsets [n, 2]}, clusters)``: offset 0 for a point no other point shares; the j-th of m points that
        share a position sits at ``radius · (cos θ_j, sin θ_j)``, θ_j = π/2 + 2πj/m (drawing order). ``clusters``
        lists, per shared position, the names of the series that meet there (a name twice when one series has two
        points there).
    """
    offsets = {name: np.zeros((len(xy), 2)) for name, xy in series.items()}
    members: dict[tuple[float, float], list[tuple[str, int]]] = {}
    for name, xy in series.items():
        for i, (x, y) in enumerate(np.round(np.asarray(xy, dtype=np.float64).reshape(-1, 2), decimals)):
            members.setdefault((float(x), float(y)), []).append((name, i))
    clusters = []
    for group in members.values():
        if len(group) < 2:
            continue
        clusters.append(tuple(name for name, _ in group))
        for j, (name, i) in enumerate(group):
            theta = math.pi / 2 + 2 * math.pi * j / len(group)
            offsets[name][i] = (radius * math.cos(theta), radius * math.sin(theta))
    return offsets, clusters


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in display pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    def overlap(self, other: Box) -> float:
        """Area of the intersection (0 when the boxes only touch)."""
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return w * h if w > 0 and h > 0 else 0.0


def place_labels(
    ax,
    anchors: Sequence[tuple[float, float, float, float, str, object]],
    markers: Sequence[tuple[float, float, float, float]] = (),
    fontsize: float = 6,
) -> list:
    """Annotate ``ax`` with one text per anchor so that no two texts overlap where the candidates allow it.

    Args:
        ax: a matplotlib Axes whose figure has a canvas and whose view limits are final (placement is measured in
            display space; limits changed afterwards move the markers but not the decisions).
        anchors: ``(x, y, dx, dy, text, color)``: the data point, the display offset (points) of its marker, the
            label and its colour.
        markers: ``(x, y, dx, dy)`` of every drawn marker (default: the anchors'), which labels avoid covering.

    Returns:
        The :class:`matplotlib.text.Annotation` objects, in ``anchors`` order.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0  # points -> pixels
    half = 3.0 * scale  # a marker of ms 4-5 spans about ±3 points
    obstacles = []
    for x, y, dx, dy in markers or [a[:4] for a in anchors]:
        cx, cy = ax.transData.transform((x, y)) + np.array([dx, dy]) * scale
        obstacles.append(Box(cx - half, cy - half, cx + half, cy + half))
    placed: list[Box] = []
    texts = []
    for x, y, dx, dy, text, color in anchors:
        ann = ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=(dx, dy),
            fontsize=fontsize,
            color=color,
            zorder=4,
            bbox=_BACKING,  # readable over error bars and staircases
        )
        e = ann.get_window_extent(renderer)  # measured once; a candidate offset only translates the box
        best = None
        for ox, oy in CANDIDATES:
            box = Box(e.x0 + ox * scale, e.y0 + oy * scale, e.x1 + ox * scale, e.y1 + oy * scale)
            cost = 1e6 * sum(box.overlap(p) for p in placed) + sum(box.overlap(m) for m in obstacles)
            if best is None or cost < best[0]:
                best = (cost, (ox, oy), box)
            if cost == 0:
                break
        ann.xyann = (dx + best[1][0], dy + best[1][1])
        placed.append(best[2])
        texts.append(ann)
    return texts
