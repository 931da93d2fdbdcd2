"""Group statistics, one import away: the names of :mod:`varpo.groups`, :mod:`varpo.numerics`,
:mod:`varpo.moments`, :mod:`varpo.tiles` and :mod:`varpo.workspace` re-exported for code written against one
module (``from varpo.stats import broadcast, segment_sum``, as registered estimators do).

Where each piece lives: group indexing and segment reductions in :mod:`varpo.groups`; float64 helpers (power-of-two
units, safe division, exact sums) in :mod:`varpo.numerics`; the reference per-group statistics and what is built
from them (combinations, whitening, pooling) in :mod:`varpo.moments`; the tiled fast path in :mod:`varpo.tiles`,
with its reusable buffers in :mod:`varpo.workspace`. New code imports from those modules.
"""

from __future__ import annotations

from varpo.groups import (
    DENSE_SPAN_PER_SAMPLE,
    GroupIndex,
    as_group_ids,
    broadcast,
    group_index,
    scale_by_group,
    segment_max,
    segment_sum,
    segment_sum_sq,
)
from varpo.moments import (
    Combined,
    GroupStats,
    batch_whiten,
    combine,
    combined_std,
    group_stats,
    pooled_mean_std,
)
from varpo.numerics import (
    F64_MAX,
    STAT_DTYPE,
    dispersion,
    exact_column_sums,
    inverse_or_zero,
    needs_scaling,
    pow2_scale,
    pow2_scale_float,
    safe_div,
    valid_mask,
)
from varpo.tiles import COMPONENT_MAJOR_MAX_K, Deviations, fast_group_stats
from varpo.workspace import TILE_ELEMENTS, Workspace

__all__ = [
    "COMPONENT_MAJOR_MAX_K",
    "DENSE_SPAN_PER_SAMPLE",
    "F64_MAX",
    "STAT_DTYPE",
    "TILE_ELEMENTS",
    "Combined",
    "Deviations",
    "GroupIndex",
    "GroupStats",
    "Workspace",
    "as_group_ids",
    "batch_whiten",
    "broadcast",
    "combine",
    "combined_std",
    "dispersion",
    "exact_column_sums",
    "fast_group_stats",
    "group_index",
    "group_stats",
    "inverse_or_zero",
    "needs_scaling",
    "pooled_mean_std",
    "pow2_scale",
    "pow2_scale_float",
    "safe_div",
    "scale_by_group",
    "segment_max",
    "segment_sum",
    "segment_sum_sq",
    "valid_mask",
]
