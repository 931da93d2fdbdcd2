"""Group indexing and segment reductions: which samples form a group, and per-group sums, maxima and broadcasts.

Samples of one prompt share a group id; ids may come in **any order** with **any group sizes** (verl reorders
samples in ``_balance_batch``, failed generations leave partial groups). Nothing here loops over groups or samples
in Python:

* :func:`group_index` maps arbitrary ids to dense segment indices ``0..P-1``. It uses
  ``torch.unique_consecutive`` (O(N)) and only falls back to a sort (``torch.unique``) when a group id appears in
  more than one run. When every run has the same length ``G`` and no id repeats (TRL's ``RepeatSampler`` layout),
  reductions take a dense ``view(P, G, K)`` fast path.
* :func:`segment_sum` is ``index_add_`` (scatter) on the general path and a dense ``sum`` on the fast path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from varpo.numerics import STAT_DTYPE
from varpo.workspace import Workspace, buffer


class GroupIndex:
    """Dense segment index for a batch of group ids.

    Attributes:
        inverse: ``[N]`` int64, segment index of each sample in ``0..num_groups-1``. On the contiguous equal-size
            layout it is built on first use (``arange(P).repeat_interleave(G)``): the dense paths never read it.
        num_groups: P, the number of distinct group ids.
        group_size: G when the layout is contiguous with equal group sizes (``ids.view(P, G)`` rows are the groups),
            else ``None``. Enables the dense fast path.
        counts: ``[P]`` int64 samples per group when known (a by-product of building the index), else ``None``.
    """

    __slots__ = ("_inverse", "num_groups", "group_size", "counts", "_device")

    def __init__(
        self,
        inverse: Tensor | None,
        num_groups: int,
        group_size: int | None = None,
        counts: Tensor | None = None,
        device: torch.device | None = None,
    ) -> None:
        if inverse is None and group_size is None:
            raise ValueError("GroupIndex needs inverse unless the layout is dense (group_size set)")
        self._inverse, self.num_groups, self.group_size, self.counts = inverse, num_groups, group_size, counts
        self._device = inverse.device if inverse is not None else device

    @property
    def inverse(self) -> Tensor:
        if self._inverse is None:
            self._inverse = torch.arange(self.num_groups, device=self._device).repeat_interleave(self.group_size)
        return self._inverse

    def sizes(self) -> Tensor:
        """``[P]`` int64 number of samples in each group."""
        if self.counts is not None:
            return self.counts
        if self._inverse is None:
            self.counts = torch.full((self.num_groups,), self.group_size, dtype=torch.long, device=self._device)
            return self.counts
        return torch.bincount(self.inverse, minlength=self.num_groups)

    def __repr__(self) -> str:
        return f"GroupIndex(num_groups={self.num_groups}, group_size={self.group_size})"


def as_group_ids(group_ids, device) -> Tensor:
    """``group_ids`` as an integer tensor; anything else (strings, floats, bools) is a one-line ValueError."""
    if isinstance(group_ids, Tensor):
        ids = group_ids.to(device)
    else:
        try:
            arr = np.asarray(group_ids)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.size == 0:
            arr = arr.astype(np.int64)  # [] parses as float64
        if arr is None or arr.dtype.kind not in "iu":
            shown = getattr(arr, "dtype", type(group_ids).__name__)
            raise ValueError(f"group_ids must be integer (one id per sample), got {shown}")
        ids = torch.as_tensor(arr, device=device)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be integer (one id per sample), got {ids.dtype}")
    return ids


# Shuffled ids spanning at most this many values per sample are mapped with a lookup table (O(N + span), no sort).
DENSE_SPAN_PER_SAMPLE = 4


def group_index(group_ids: Tensor) -> GroupIndex:
    """Map arbitrary group ids ``[N]`` to a :class:`GroupIndex` (vectorized; O(N) unless the ids need a sort).

    Routes: non-decreasing ids (TRL's layout) -> ``unique_consecutive``, O(N); other ids whose span max - min is
    at most ``DENSE_SPAN_PER_SAMPLE · N`` (verl's uid -> int mapping, any order) -> a lookup table, O(N + span),
    segments in sorted-id order as ``torch.unique``; otherwise contiguous runs with distinct ids keep run order,
    and only ids that repeat across runs with a huge span (hashes) pay for a sort (``torch.unique``).
    """
    ids = torch.as_tensor(group_ids)
    if ids.dim() != 1:
        raise ValueError(f"group_ids must be 1-D [N], got shape {tuple(ids.shape)}")
    n = ids.numel()
    if n == 0:
        return GroupIndex(torch.zeros(0, dtype=torch.long, device=ids.device), 0, None)
    ids = ids.long()
    size = _equal_sorted_runs(ids)
    if size is not None:  # TRL's layout: no inverse, no counts to build
        return GroupIndex(None, n // size, size, device=ids.device)
    if n == 1 or bool((ids[1:] >= ids[:-1]).all()):  # sorted: runs are the groups
        _, run_inverse, counts = torch.unique_consecutive(ids, return_inverse=True, return_counts=True)
        return _runs_index(run_inverse, counts, n)
    lo, hi = (int(v) for v in torch.aminmax(ids))
    runs, run_inverse, counts = None, None, None
    if hi - lo + 1 <= DENSE_SPAN_PER_SAMPLE * n:
        shifted = ids - lo if lo != 0 else ids
        table = torch.zeros(hi - lo + 1, dtype=torch.long, device=ids.device)
        table.index_fill_(0, shifted, 1)  # which ids occur
        remap = table.cumsum_(0).sub_(1)  # rank of each occurring id among the distinct ids
        inverse = remap.index_select(0, shifted)  # (4x faster than remap[shifted] on CPU)
        p = int(remap[-1]) + 1
        if int(torch.count_nonzero(inverse[1:] != inverse[:-1])) != p - 1:  # not contiguous runs: general layout
            return GroupIndex(inverse, p, None, torch.bincount(inverse, minlength=p))
    runs, run_inverse, counts = torch.unique_consecutive(ids, return_inverse=True, return_counts=True)
    # A run-length encoding is a valid grouping only if no id appears in two runs (sorting P run ids, not N samples).
    if torch.unique(runs).numel() == runs.numel():
        return _runs_index(run_inverse, counts, n)
    _, inverse = torch.unique(ids, return_inverse=True)
    return GroupIndex(inverse.long(), int(inverse.max()) + 1, None)


# The first group is looked for among this many leading ids; a longer first run takes the general routes.
_FIRST_RUN_MAX = 1 << 16


def _equal_sorted_runs(ids: Tensor) -> int | None:
    """G when ``ids [N]`` (int64, N >= 1) is P runs of G equal ids with strictly increasing run ids, else ``None``.

    Two comparisons over [N] (each row of ``view(P, G)`` constant; first column increasing) instead of
    ``unique_consecutive`` with its inverse and counts, which the dense path never reads.
    """
    n = ids.numel()
    size = None
    for limit in (1 << 10, _FIRST_RUN_MAX):  # a short look first: groups are rarely longer than 1024
        head = ids[:limit]
        changes = (head != head[0]).to(torch.uint8)
        if bool(changes.any()):
            size = int(changes.argmax())
            break
        if head.numel() == n:
            size = n  # one group
            break
    if size is None or n % size:
        return None
    rows = ids.view(n // size, size)
    firsts = rows[:, 0]
    if not bool((firsts[1:] > firsts[:-1]).all()):
        return None
    if not torch.equal(rows, firsts.unsqueeze(1).expand_as(rows)):
        return None
    return size


def _runs_index(run_inverse: Tensor, counts: Tensor, n: int) -> GroupIndex:
    """Index for contiguous runs with distinct ids (segment = run number, in order of appearance)."""
    p = counts.numel()
    size = int(counts[0])
    dense = size * p == n and bool((counts == size).all())
    return GroupIndex(run_inverse.long(), p, size if dense else None, counts.long())


def segment_sum(x: Tensor, index: GroupIndex) -> Tensor:
    """Per-group sums: ``[N, ...] -> [P, ...]``."""
    if index.group_size is not None:
        return x.reshape(index.num_groups, index.group_size, *x.shape[1:]).sum(1)
    out = torch.zeros((index.num_groups, *x.shape[1:]), dtype=x.dtype, device=x.device)
    return out.index_add_(0, index.inverse, x)


def segment_max(x: Tensor, index: GroupIndex) -> Tensor:
    """Per-group maxima of a non-negative ``x``: ``[N, ...] -> [P, ...]`` (0 for empty groups)."""
    if index.group_size is not None:
        return x.reshape(index.num_groups, index.group_size, *x.shape[1:]).amax(1)
    out = torch.zeros((index.num_groups, *x.shape[1:]), dtype=x.dtype, device=x.device)
    idx = index.inverse.view(-1, *([1] * (x.dim() - 1))).expand_as(x)
    return out.scatter_reduce_(0, idx, x, "amax", include_self=True)


def broadcast(per_group: Tensor, index: GroupIndex) -> Tensor:
    """Per-group values back to samples: ``[P, ...] -> [N, ...]``."""
    if index.group_size is not None:
        p, g = index.num_groups, index.group_size
        return per_group.unsqueeze(1).expand(p, g, *per_group.shape[1:]).reshape(p * g, *per_group.shape[1:])
    return per_group.index_select(0, index.inverse)


def segment_sum_sq(x: Tensor, index: GroupIndex, workspace: Workspace | None = None) -> Tensor:
    """Per-group Σ x² of ``x [N]`` (float64), ``[P]``. On the scatter path the squares go tile by tile through
    ``workspace`` slot 1 when one is given (a fresh [N] temporary costs more in page faults than the arithmetic)."""
    if index.group_size is not None:
        rows = x.view(index.num_groups, index.group_size)
        return (rows * rows).sum(1)
    out = torch.zeros(index.num_groups, dtype=x.dtype, device=x.device)
    if workspace is None or x.dtype != STAT_DTYPE or x.requires_grad:
        return out.index_add_(0, index.inverse, x * x)
    step = workspace.tile
    for r0 in range(0, x.shape[0], step):
        part = x[r0 : r0 + step]
        squares = torch.mul(part, part, out=buffer(workspace, 1, part.shape, x.device))
        out.index_add_(0, index.inverse[r0 : r0 + step], squares)
    return out


def scale_by_group(x: Tensor, per_group: Tensor, index: GroupIndex, workspace: Workspace | None = None) -> Tensor:
    """``x_i · f_g(i)`` for ``x [N]`` and ``per_group [P]``, without materializing the broadcast on the dense path
    (on shuffled ids the gathered factors go tile by tile through ``workspace`` slot 2 when one is given)."""
    if index.group_size is not None:
        return (x.view(index.num_groups, index.group_size) * per_group.unsqueeze(1)).view(-1)
    if (
        workspace is None
        or x.dtype != STAT_DTYPE
        or per_group.dtype != STAT_DTYPE
        or x.requires_grad
        or per_group.requires_grad
    ):
        return x * per_group.index_select(0, index.inverse)
    out = torch.empty_like(x)
    step = workspace.tile
    for r0 in range(0, x.shape[0], step):
        rows = slice(r0, r0 + step)
        inv = index.inverse[rows]
        factors = torch.index_select(per_group, 0, inv, out=buffer(workspace, 2, inv.shape, x.device))
        torch.mul(x[rows], factors, out=out[rows])
    return out
