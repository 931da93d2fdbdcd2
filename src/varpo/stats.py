"""Group statistics: vectorized, NaN-aware segment reductions over group ids.

Every estimator in :mod:`varpo.advantages` is composed from the primitives here. Samples of one prompt share a
group id; ids may come in **any order** with **any group sizes** (verl reorders samples in ``_balance_batch``,
failed generations leave partial groups). Nothing here loops over groups or samples in Python:

* :func:`group_index` maps arbitrary ids to dense segment indices ``0..P-1``. It uses
  ``torch.unique_consecutive`` (O(N)) and only falls back to a sort (``torch.unique``) when a group id appears in
  more than one run. When every run has the same length ``G`` and no id repeats (TRL's ``RepeatSampler`` layout),
  reductions take a dense ``view(P, G, K)`` fast path.
* :func:`segment_sum` is ``index_add_`` (scatter) on the general path and a dense ``sum`` on the fast path.

Numerics: statistics are computed in float64 (rewards of magnitude 1e30 square to 1e60, which overflows float32)
and non-finite rewards (NaN, ±inf) are treated as *missing*: they are excluded from their component's statistics and
their centered deviation is 0, so they never propagate. **Scale robustness**: each group's component is divided by a
power of two s_gk (the largest power of two <= max_i |r_ik|, :func:`pow2_scale`) before anything is summed or
squared, and :class:`GroupStats` keeps deviations and stds in those units. Dividing by a power of two is exact in
binary floating point, so wherever the unscaled float64 computation would not overflow or underflow the results are
bit-identical to it; where it would (|r| ~ 1e300 squares to inf, |Δr| ~ 1e-200 squares to 0) they stay exact
instead of turning into 0 or inf. Each group's scale depends only on that group, so groups stay independent.

Standard deviation convention: ``std = sqrt(Σ (x - μ)² / (n - ddof))``; with ``n - ddof <= 0`` (a group of size 1
with ``ddof=1``) the std is defined as 0, i.e. "no signal" — verl instead gives singleton groups mean 0 / std 1,
which turns the raw score into an advantage; we deliberately do not.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

STAT_DTYPE = torch.float64
F64_MAX = torch.finfo(torch.float64).max


def pow2_scale(maxabs: Tensor) -> Tensor:
    """The largest power of two <= ``maxabs`` elementwise (1 where ``maxabs`` is 0); no gradient.

    ``x / pow2_scale(max|x|)`` lies in (-2, 2) and is computed exactly (a power-of-two division only moves the
    exponent). ``maxabs`` must be finite and >= 0 (float64).
    """
    maxabs = maxabs.detach()
    exponent = torch.frexp(maxabs).exponent  # maxabs = m·2^e with m in [0.5, 1)
    scale = torch.pow(2.0, (exponent - 1).to(maxabs.dtype))
    return torch.where(maxabs > 0, scale, torch.ones_like(maxabs))


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


def valid_mask(rewards: Tensor) -> Tensor:
    """``[N, K]`` bool: the component is present (finite) for that sample."""
    return torch.isfinite(rewards)


@dataclass(frozen=True)
class GroupStats:
    """Per-component group statistics of a reward matrix (float64), in per-group **scaled units**.

    Group g's component k is measured in units of ``scale[g, k]`` = s_gk (a power of two, see :func:`pow2_scale`):
    the real deviation is ``dev * s`` and the real std ``std * s``. z-scores and every ratio of same-unit
    quantities need no conversion.

    Attributes:
        dev: ``[N, K]`` centered deviation ``(r - μ_group) / s`` (0 where the reward is missing), a property: on
            the fast path (:func:`fast_group_stats`) :attr:`lazy` streams it in tiles and ``dev`` materializes it
            only when asked (registered estimators may use it; built-ins project instead).
        std: ``[P, K]`` group std / s with the requested ddof (0 for groups with ``n - ddof <= 0``).
        count: ``[P, K]`` number of valid samples of that component in the group.
        mean: ``[P, K]`` group mean μ_gk / s.
        sum_sq: ``[P, K]`` Σ_i (r_ik - μ_gk)² / s² (for pooled batch statistics).
        scale: ``[P, K]`` s_gk.
    """

    dense_dev: Tensor | None  # [N, K] as computed; None on the fast path (see dev)
    std: Tensor
    count: Tensor
    mean: Tensor
    sum_sq: Tensor
    scale: Tensor
    unit: bool = False  # every scale is 1 (the fast path): scaled units are reward units
    lazy: Deviations | None = None  # set by fast_group_stats instead of dense_dev

    @property
    def dev(self) -> Tensor:
        """``[N, K]`` deviations; on the fast path materialized from :attr:`lazy` on first use, then kept."""
        if self.dense_dev is None:
            object.__setattr__(self, "dense_dev", self.lazy.full())  # frozen dataclass: a one-time cache
        return self.dense_dev

    def deviations(self) -> Tensor:
        """``[N, K]`` dev (built-ins call this only when they need every entry, e.g. rvpo)."""
        return self.dev

    def project(self, coef: Tensor) -> Tensor:
        """``[N]`` Σ_k coef dev_ik for ``coef [K]`` (or per group ``[P, K]``, then pass it broadcast per sample)."""
        if self.dense_dev is None:
            return self.lazy.project(coef)
        return self.dense_dev @ coef

    @property
    def real_std(self) -> Tensor:
        """``[P, K]`` σ_gk in reward units (saturates at the float64 maximum instead of overflowing)."""
        return self.std if self.unit else (self.std * self.scale).clamp(max=F64_MAX)


def group_stats(
    rewards: Tensor, index: GroupIndex, ddof: int = 1, valid: Tensor | None = None, all_valid: bool | None = None
) -> GroupStats:
    """NaN-aware per-group, per-component mean/std of ``rewards [N, K]``, in scaled units (see :class:`GroupStats`).

    μ_gk = Σ_{i∈g, valid} r_ik / n_gk ;  σ_gk = sqrt(Σ (r_ik - μ_gk)² / (n_gk - ddof)), 0 if n_gk - ddof <= 0.
    Everything is computed on r / s_gk (exact, |r / s| < 2), two-pass (center first, then square) for accuracy.
    ``valid`` (``[N, K]`` bool) and ``all_valid`` may be passed when already known; ``None`` means "compute it"
    (when everything is valid the masking is skipped). A group whose std is below float64 rounding noise of its
    mean (σ <= 1e-12·|μ|) is treated as constant: σ = 0 and deviations 0 — otherwise ``sum(0.1 × 16) / 16 != 0.1``
    would turn a constant group into ±1 z-scores when eps = 0.
    """
    valid = valid_mask(rewards) if valid is None else valid
    all_valid = bool(valid.all()) if all_valid is None else all_valid
    r = rewards.to(STAT_DTYPE) if all_valid else torch.where(valid, rewards.to(STAT_DTYPE), 0.0)  # [N, K]
    unit = not _needs_scaling(r)
    if unit:  # fast path: nothing can overflow or underflow, unit scales change nothing
        scale = torch.ones((index.num_groups, r.shape[1]), dtype=STAT_DTYPE, device=r.device)
    else:
        scale = pow2_scale(segment_max(r.abs(), index))  # [P, K]
        r = r / broadcast(scale, index)
    if all_valid and index.group_size is not None:
        cnt = torch.full((index.num_groups, r.shape[1]), float(index.group_size), dtype=STAT_DTYPE, device=r.device)
    else:
        cnt = segment_sum(valid.to(STAT_DTYPE), index)  # [P, K]
    mean = segment_sum(r, index) / cnt.clamp_min(1.0)  # [P, K]
    dev = r - broadcast(mean, index)  # [N, K]
    if not all_valid:
        dev = torch.where(valid, dev, 0.0)
    sum_sq = segment_sum(dev * dev, index)  # [P, K]
    std = dispersion(sum_sq, cnt, ddof)
    constant = std <= 1e-12 * mean.abs()
    if bool(constant.any()):
        std = torch.where(constant, 0.0, std)
        dev.mul_(broadcast((~constant).to(STAT_DTYPE), index))
    return GroupStats(dense_dev=dev, std=std, count=cnt, mean=mean, sum_sq=sum_sq, scale=scale, unit=unit)


# Float64 elements per tile of the fast path (2 MiB): a tile is converted, centered, squared and projected while it
# sits in cache, so the [N, K] reward matrix is read from memory once per loop and never copied whole in float64.
TILE_ELEMENTS = 1 << 18
# Up to this many components a tile is stored component-major ([K, rows]): group reductions then run over
# contiguous memory (5-7x faster than reducing a [P, G, K] view with K = 3); wider matrices stay row-major.
COMPONENT_MAJOR_MAX_K = 8
# Input dtypes whose finite values all lie in [2^-149, 2^128] in magnitude: deviations of such rewards square
# without overflow or underflow in float64, so the scale-robust units are all 1 and need no check.
_NARROW_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


_WORKSPACE = threading.local()


def _workspace(slot: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """A reusable float64 CPU buffer of ``shape`` (at most a tile), one per thread and slot.

    Fresh multi-MiB allocations are returned to the OS and page-faulted back on every call (glibc trims the heap),
    which costs more than the arithmetic on a tile; reusing two tile buffers per thread avoids that.
    Other devices get a fresh tensor (their caching allocators already reuse memory).
    """
    numel = math.prod(shape)
    if device.type != "cpu" or numel > TILE_ELEMENTS:
        return torch.empty(shape, dtype=STAT_DTYPE, device=device)
    buffers = getattr(_WORKSPACE, "buffers", None)
    if buffers is None:
        buffers = _WORKSPACE.buffers = {}
    buf = buffers.get(slot)
    if buf is None or buf.numel() < numel:
        buf = buffers[slot] = torch.empty(TILE_ELEMENTS, dtype=STAT_DTYPE)
    return buf[:numel].view(shape)


class Deviations:
    """``dev = r - μ_g(r)`` ``[N, K]`` (float64, constant groups zeroed) of a batch with every reward finite, never
    materialized whole: row tiles of the rewards (any float dtype) are converted, centered and consumed in cache.

    Tiles hold whole groups on the contiguous equal-size layout (``[p, G]`` views, no index) and any rows
    otherwise (a gather of the tile's group means). Per element the float64 arithmetic is the whole-matrix
    formula ``r.double() - mean[g]``; only the memory layout of the tile differs (component-major for small K).
    """

    def __init__(self, rewards: Tensor, index: GroupIndex, mean: Tensor, keep: Tensor | None) -> None:
        self.rewards, self.index, self.mean, self.keep = rewards, index, mean, keep  # keep: [P, K] 0/1 or None
        self.kmajor = rewards.shape[1] <= COMPONENT_MAJOR_MAX_K

    def load(self, rows: slice) -> Tensor:
        """The tile's rewards in float64, in workspace 0 (never the caller's tensor): ``[K, rows]`` (component-major)
        or ``[rows, K]``. Valid until the next tile is loaded."""
        x = self.rewards[rows]
        if self.kmajor:
            return _workspace(0, (x.shape[1], x.shape[0]), x.device).copy_(x.T)
        return _workspace(0, tuple(x.shape), x.device).copy_(x)

    def per_group(self, t: Tensor, rows: slice) -> Tensor:
        """``t [P, K]`` rows of this tile's groups, shaped to broadcast against the tile's samples.

        On shuffled ids a float64 result lives in workspace 2: valid until the next ``per_group`` call (use it, or
        copy it, before asking for another)."""
        g = self.index.group_size
        if g is not None:
            part = t[rows.start // g : rows.stop // g]  # [p, K]
            return part.T.unsqueeze(-1) if self.kmajor else part.unsqueeze(1)  # [K, p, 1] or [p, 1, K]
        inv = self.index.inverse[rows]
        # Gathered into workspace 2 (a fresh [n, K] buffer would be paged in on every tile); every caller consumes
        # the result before the next call.
        if t.dtype == STAT_DTYPE and not t.requires_grad and t.dim() == 2:
            part = torch.index_select(t, 0, inv, out=_workspace(2, (inv.shape[0], t.shape[1]), t.device))
        else:
            part = t.index_select(0, inv)  # [n, K]
        return part.T if self.kmajor else part

    def shaped(self, x: Tensor) -> Tensor:
        """The tile ``[K, n]`` / ``[n, K]`` as ``[K, p, G]`` / ``[p, G, K]`` on the contiguous layout."""
        g = self.index.group_size
        if g is None:
            return x
        return x.view(x.shape[0], -1, g) if self.kmajor else x.view(-1, g, x.shape[1])

    def tiles(self):
        """Yields ``(row slice, dev tile)``; the tile is :meth:`shaped`, component-major when ``kmajor``."""
        n, k = self.rewards.shape
        align = self.index.group_size or 1
        step = max(align, TILE_ELEMENTS // max(k, 1) // align * align)
        for r0 in range(0, n, step):
            rows = slice(r0, min(r0 + step, n))
            dev = self.shaped(self.load(rows)).sub_(self.per_group(self.mean, rows))
            if self.keep is not None:
                dev.mul_(self.per_group(self.keep, rows))
            yield rows, dev

    def project_tile(self, dev: Tensor, coef: Tensor, rows: slice, out: Tensor) -> None:
        """``out [n] = Σ_k coef dev`` for one tile; ``coef [K]`` or per group ``[P, K]``."""
        k = self.rewards.shape[1]
        if coef.dim() == 1:
            if self.kmajor:
                torch.mv(dev.reshape(k, -1).T, coef, out=out)
            else:
                torch.mv(dev.reshape(-1, k), coef, out=out)
            return
        prod = dev.mul_(self.per_group(coef, rows))  # the tile is not needed afterwards
        torch.sum(prod, 0 if self.kmajor else -1, out=out.view(prod.shape[1:] if self.kmajor else prod.shape[:-1]))

    def project(self, coef: Tensor) -> Tensor:
        """``[N]`` Σ_k coef_k dev_ik for ``coef [K]``, or Σ_k coef_gk dev_ik for per-group ``coef [P, K]``."""
        out = torch.empty(self.rewards.shape[0], dtype=STAT_DTYPE, device=self.rewards.device)
        for rows, dev in self.tiles():
            self.project_tile(dev, coef, rows, out[rows])
        return out

    def full(self) -> Tensor:
        """``[N, K]`` the deviations materialized (only for estimators that need every entry, e.g. rvpo)."""
        n, k = self.rewards.shape
        out = torch.empty((n, k), dtype=STAT_DTYPE, device=self.rewards.device)
        for rows, dev in self.tiles():
            out[rows] = dev.reshape(k, -1).T if self.kmajor else dev.reshape(-1, k)
        return out


def fast_group_stats(
    rewards: Tensor, index: GroupIndex, ddof: int, weights: Tensor
) -> tuple[GroupStats, Tensor] | None:
    """:func:`group_stats` for a batch with every reward finite and unit scales, plus ``c = dev @ weights`` ``[N]``;
    ``None`` when that does not hold (a non-finite reward, float64 rewards needing scale-robust units, or rewards
    that require grad), and the caller takes :func:`group_stats`.

    Same formulas, same float64 arithmetic, same constant-group rule; the difference is memory traffic: row tiles
    (:class:`Deviations`) are summed, centered, squared and projected on ``weights`` while in cache, so the
    [N, K] rewards are read once (contiguous equal-size groups) or twice (any other layout: sums by
    ``index_add_`` first), and no [N, K] float64 matrix is allocated. A non-finite reward makes its group's sum
    non-finite (float32/bf16/fp16 sums cannot overflow in float64), which is how "all valid" is detected for free.
    The returned :class:`GroupStats` has ``dev=None`` and ``lazy`` set: deviations are re-streamed on demand.
    """
    if rewards.requires_grad and torch.is_grad_enabled():  # out= writes are not differentiable
        return None
    if rewards.dtype not in _NARROW_DTYPES and (rewards.dtype != STAT_DTYPE or _needs_scaling(rewards)):
        return None
    n, k = rewards.shape
    p, g = index.num_groups, index.group_size
    dev_stream = Deviations(rewards, index, torch.empty(0), None)
    kmajor = dev_stream.kmajor

    # [P, K] statistics. Contiguous layout with component-major tiles: stored as [K, P] in memory (transposed
    # views), so tile results land in contiguous rows and per-component reductions over groups read contiguously.
    # Shuffled ids: row-major [P, K], which per-sample gathers of group values need (index_select of whole rows).
    # Every entry is written below except the row-major scatter sums, which accumulate into zeros (an empty buffer
    # skips a fill pass over [P, K], as large as [N, K] / G).
    def stat(accumulate: bool) -> Tensor:
        new = torch.zeros if accumulate else torch.empty
        if kmajor and g is not None:
            return new((k, p), dtype=STAT_DTYPE, device=rewards.device).T
        return new((p, k), dtype=STAT_DTYPE, device=rewards.device)

    scatter_rows = g is None and not kmajor
    mean, sum_sq = stat(scatter_rows), stat(scatter_rows)
    std = stat(False) if g is not None else None  # the scatter path computes it from sum_sq
    c = torch.empty(n, dtype=STAT_DTYPE, device=rewards.device)
    noisy = False  # some constant group had rounding-noise σ > 0 (its deviations were zeroed before projecting)
    if g is not None:  # one loop: sum, center, square, project per tile of whole groups
        cnt = torch.full((), float(g), dtype=STAT_DTYPE, device=rewards.device).expand(p, k)  # no [P, K] memory
        step = max(g, TILE_ELEMENTS // max(k, 1) // g * g)
        for r0 in range(0, n, step):
            rows = slice(r0, min(r0 + step, n))
            groups = slice(rows.start // g, rows.stop // g)
            t = dev_stream.shaped(dev_stream.load(rows))  # [K, p, G] or [p, G, K]
            m = t.sum(-1 if kmajor else 1).div_(g)  # [K, p] or [p, K]
            if not math.isfinite(float(m.sum())):  # a non-finite entry (the sum of finite ones cannot overflow)
                return None
            dev = t.sub_(m.unsqueeze(-1 if kmajor else 1))
            ss = torch.mul(dev, dev, out=_workspace(1, tuple(dev.shape), dev.device)).sum(-1 if kmajor else 1)
            sd = ss.div(g - ddof).sqrt_() if g > ddof else torch.zeros_like(ss)
            keep_t = _drop_constant(sd, m)  # the constant rule on the tile, while it is in cache
            if keep_t is not None:
                dev.mul_(keep_t.unsqueeze(-1 if kmajor else 1))
                noisy = True
            m, ss, sd = (m.T, ss.T, sd.T) if kmajor else (m, ss, sd)
            mean[groups], sum_sq[groups], std[groups] = m, ss, sd
            dev_stream.project_tile(dev, weights, rows, c[rows])
    else:  # sums by scatter, then one more loop over the rows
        inv = index.inverse
        cnt = index.sizes().to(STAT_DTYPE).unsqueeze(1).expand(p, k)
        step = max(1, TILE_ELEMENTS // max(k, 1))
        # component-major tiles scatter into a [K, P] buffer (contiguous rows: 1.4x faster), copied to [P, K] once
        sums = torch.zeros((k, p), dtype=STAT_DTYPE, device=rewards.device) if kmajor else mean
        for r0 in range(0, n, step):
            rows = slice(r0, min(r0 + step, n))
            sums.index_add_(1 if kmajor else 0, inv[rows], dev_stream.load(rows))
        if kmajor:
            mean.copy_(sums.T)
        if not math.isfinite(float(mean.sum())):  # a non-finite entry (the sum of finite ones cannot overflow)
            return None
        mean.div_(cnt.clamp_min(1.0))
        dev_stream.mean = mean
        squares = torch.zeros((k, p), dtype=STAT_DTYPE, device=rewards.device) if kmajor else sum_sq
        for rows, dev in dev_stream.tiles():
            squares.index_add_(
                1 if kmajor else 0, inv[rows], torch.mul(dev, dev, out=_workspace(1, tuple(dev.shape), dev.device))
            )
            dev_stream.project_tile(dev, weights, rows, c[rows])
        if kmajor:
            sum_sq.copy_(squares.T)
        # dispersion(sum_sq, cnt, ddof) without [P, K] masks: n - ddof <= 0 divides by inf (σ = 0, as there)
        denom = index.sizes().to(STAT_DTYPE) - ddof  # [P]
        std = sum_sq.div(torch.where(denom > 0, denom, math.inf).unsqueeze(1)).sqrt_()
        # Constant groups (group_stats' rule). Only rounding noise of a constant non-dyadic group (σ > 0) makes the
        # projection above differ; then it is redone with those deviations zeroed.
        if _drop_constant(std, mean) is not None:
            noisy = True
            c = Deviations(rewards, index, mean, (std > 0).to(STAT_DTYPE)).project(weights)
    # After the constant rule σ = 0 exactly on constant groups (whose deviations are 0 or zeroed) and σ > 0 elsewhere,
    # so `std > 0` is group_stats' keep mask; it is needed only when some deviations had to be zeroed.
    keep = (std > 0).to(STAT_DTYPE) if noisy else None
    scale = torch.ones((), dtype=STAT_DTYPE, device=rewards.device).expand(p, k)  # unit scales, no [P, K] memory
    stats = GroupStats(None, std, cnt, mean, sum_sq, scale, unit=True, lazy=Deviations(rewards, index, mean, keep))
    return stats, c


def _drop_constant(std: Tensor, mean: Tensor) -> Tensor | None:
    """group_stats' constant rule in place: ``std = 0`` where σ <= 1e-12·|μ| (any matching shapes).

    Returns the 0/1 keep mask (float64) when some such group had σ > 0 (rounding noise of a constant non-dyadic
    group, whose deviations must be zeroed too), else ``None``: every constant group then has σ = 0 exactly, its
    deviations are exactly 0 already and ``std`` is unchanged. Float reductions only (bool ``any`` is slow on CPU).
    """
    if std.numel() == 0:
        return None
    constant = std <= mean.abs().mul_(1e-12)
    if not bool(std.mul(constant).amax() > 0):  # σ >= 0, finite: > 0 iff some constant group has σ > 0
        return None
    keep = (~constant).to(STAT_DTYPE)
    std.mul_(keep)
    return keep


_SAFE = 2.0**256


def _needs_scaling(r: Tensor) -> bool:
    """False when every nonzero |r| lies in [2^-256, 2^256]: then squares of deviations neither overflow nor
    underflow (adjacent floats there differ by >= 2^-308) and unit scales give the same bits as any scale."""
    if r.numel() == 0:
        return False
    a = r.abs()
    low = torch.where(a > 0, a, _SAFE).amin()
    return bool((a.amax() > _SAFE) | (low < 1.0 / _SAFE))


def dispersion(sum_sq: Tensor, count: Tensor, ddof: int) -> Tensor:
    """``sqrt(sum_sq / (count - ddof))`` with 0 where the denominator is not positive."""
    denom = count - ddof
    return torch.where(denom > 0, (sum_sq / denom.clamp_min(1e-300)).sqrt(), torch.zeros_like(sum_sq))


@dataclass(frozen=True)
class Combined:
    """A weighted combination Σ_k w_k x_ik of per-component quantities in per-group units.

    The real value of row i is ``value[i] * unit[g(i)]`` with ``unit = weight_scale · group_scale`` (both powers
    of two); the product is never formed where it could overflow. ``coef [P, K]`` = w_k s_gk / unit_g ∈ [0, 2).
    """

    value: Tensor  # [N]
    coef: Tensor  # [P, K]
    weight_scale: float  # W, power of two
    group_scale: Tensor | None  # [P] S_g = max_k s_gk; None when every S_g is 1 (fast path)

    def eps(self, eps: float) -> Tensor | float:
        """``[P]`` eps / unit_g (0 where that underflows: eps is then negligible against the group's spread)."""
        return eps / self.weight_scale if self.group_scale is None else eps / self.weight_scale / self.group_scale

    def real(self, index: GroupIndex) -> Tensor:
        """``[N]`` the combination in reward units (±inf where it exceeds float64, never NaN)."""
        if self.group_scale is None:
            return self.value * self.weight_scale
        return self.value * broadcast(self.group_scale, index) * self.weight_scale


def pow2_scale_float(x: float) -> float:
    """:func:`pow2_scale` for one Python float (no tensor op, no device sync)."""
    return math.ldexp(1.0, math.frexp(x)[1] - 1) if x > 0 else 1.0


def combine(stats: GroupStats, weights: Tensor, index: GroupIndex, weight_max: float | None = None) -> Combined:
    """c_i = Σ_k w_k (r_ik - μ_gk) in units of W·S_g (W = :func:`pow2_scale` of max w, S_g = max_k s_gk).

    Exact: every factor that changes units is a power of two. ``weights [K]`` float64, finite, >= 0.
    """
    w_scale = pow2_scale_float(weight_max) if weight_max is not None else float(pow2_scale(weights.max()))
    what = weights / w_scale if w_scale != 1.0 else weights
    if stats.unit:  # fast path (unit scales): one matmul
        return Combined(stats.project(what), what.unsqueeze(0), w_scale, None)
    group_scale = stats.scale.amax(1)  # [P]
    coef = what * (stats.scale / group_scale.unsqueeze(1))  # [P, K]
    value = (stats.dev * broadcast(coef, index)).sum(1)  # [N]
    return Combined(value, coef, w_scale, group_scale)


def combined_std(c: Tensor, index: GroupIndex, scorable: Tensor | None, ddof: int = 1) -> Tensor:
    """Group std of a combined deviation ``c [N]`` (any units), ``[P]``.

    The combined deviation ``c_i = Σ_k w_k (r_ik - μ_gk)`` has group mean exactly 0 (each component's deviations
    sum to 0 over its valid samples, missing entries contribute 0), so σ_g = sqrt(Σ_{i∈g} c_i² / (n_g - ddof)) where
    n_g counts *scorable* samples (at least one component present); ``scorable=None`` means every sample is.
    """
    g = index.group_size
    if scorable is None and g is not None:  # dense: row norms, no [N] temporary (a fresh one costs page faults)
        norm = torch.linalg.vector_norm(c.view(index.num_groups, g), dim=1)  # [P] sqrt(Σ c²)
        if g <= ddof:
            return torch.zeros_like(norm)
        scale = 1.0 / math.sqrt(g - ddof)
        return norm * scale if norm.requires_grad else norm.mul_(scale)  # autograd keeps the norm for backward
    cnt = index.sizes().to(c.dtype) if scorable is None else segment_sum(scorable.to(c.dtype), index)  # [P]
    return dispersion(segment_sum_sq(c, index), cnt, ddof)


def segment_sum_sq(x: Tensor, index: GroupIndex) -> Tensor:
    """Per-group Σ x² of ``x [N]`` (float64), ``[P]``; the squares go through a reused tile buffer on the scatter
    path (a fresh [N] temporary costs more in page faults than the arithmetic)."""
    if index.group_size is not None:
        rows = x.view(index.num_groups, index.group_size)
        return (rows * rows).sum(1)
    out = torch.zeros(index.num_groups, dtype=x.dtype, device=x.device)
    if x.dtype != STAT_DTYPE or x.requires_grad:
        return out.index_add_(0, index.inverse, x * x)
    for r0 in range(0, x.shape[0], TILE_ELEMENTS):
        part = x[r0 : r0 + TILE_ELEMENTS]
        out.index_add_(
            0, index.inverse[r0 : r0 + TILE_ELEMENTS], torch.mul(part, part, out=_workspace(1, part.shape, x.device))
        )
    return out


def scale_by_group(x: Tensor, per_group: Tensor, index: GroupIndex) -> Tensor:
    """``x_i · f_g(i)`` for ``x [N]`` and ``per_group [P]``, without materializing the broadcast on the dense path."""
    if index.group_size is not None:
        return (x.view(index.num_groups, index.group_size) * per_group.unsqueeze(1)).view(-1)
    if x.dtype != STAT_DTYPE or per_group.dtype != STAT_DTYPE or x.requires_grad or per_group.requires_grad:
        return x * per_group.index_select(0, index.inverse)
    out = torch.empty_like(x)
    for r0 in range(0, x.shape[0], TILE_ELEMENTS):  # the gathered factors go through a reused tile buffer
        rows = slice(r0, r0 + TILE_ELEMENTS)
        inv = index.inverse[rows]
        factors = torch.index_select(per_group, 0, inv, out=_workspace(2, inv.shape, x.device))
        torch.mul(x[rows], factors, out=out[rows])
    return out


def inverse_or_zero(den: Tensor) -> Tensor:
    """``1 / den`` with 0 where ``den == 0`` (so ``x · inverse_or_zero(d)`` is :func:`safe_div` up to one rounding)."""
    return safe_div(torch.ones_like(den), den)


def batch_whiten(x: Tensor, include: Tensor | None, eps: float, ddof: int = 1) -> Tensor:
    """Sample-level batch normalization ``(x - mean) / (std + eps)`` over the rows in ``include`` ``[N]`` bool.

    Rows outside ``include`` (unscorable samples) get 0 and do not enter the statistics; ``include=None`` means
    every row (no masking passes). This is the GDPO batch step as in NVlabs' TRL implementation (per *sample*),
    not verl's ``masked_whiten`` (per *token*).
    """
    if include is None:
        n = max(x.shape[0], 1)
        centered = x - x.sum() / n
        std = dispersion(torch.dot(centered, centered), torch.tensor(float(x.shape[0]), dtype=x.dtype), ddof)
        scale = inverse_or_zero(std + eps)
        return centered * scale if centered.requires_grad else centered.mul_(scale)  # autograd needs `centered`
    w = include.to(x.dtype)
    n = w.sum()
    mean = (x * w).sum() / n.clamp_min(1.0)
    centered = (x - mean) * w
    std = dispersion((centered * centered).sum(), n, ddof)
    return safe_div(centered, std + eps)


def pooled_mean_std(stats: GroupStats, ddof: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Batch (all groups pooled) per-component mean, std and count ``[K]`` in reward units, from group statistics:
    μ = Σ_g n_g μ_g / Σ n_g ;  Σ(r - μ)² = Σ_g [SS_g + n_g (μ_g - μ)²] (parallel variance formula), computed in
    units of the batch's largest group scale (exact powers of two). Costs O(P·K) instead of another pass over the
    [N, K] rewards. Diagnostics only: the std saturates at the float64 maximum.
    """
    if stats.unit:
        if stats.count.dim() == 2 and stats.count.stride() == (0, 0) and stats.count.shape[0] > 0:
            # one size G for every group and component (the dense fast path): n_g = G drops out of the means
            p = stats.count.shape[0]
            n = stats.count[0] * p  # [K]
            mean = stats.mean.sum(0) / p
            spread = stats.mean - mean
            ss = stats.sum_sq.sum(0) + torch.linalg.vecdot(spread, spread, dim=0) * stats.count[0]
            return mean, dispersion(ss, n, ddof), n
        n = stats.count.sum(0)
        mean = (stats.count * stats.mean).sum(0) / n.clamp_min(1.0)
        spread = stats.mean - mean
        ss = stats.sum_sq.sum(0) + (stats.count * spread * spread).sum(0)
        return mean, dispersion(ss, n, ddof), n
    top = stats.scale.amax(0)  # [K]
    f = stats.scale / top  # [P, K], powers of two <= 1
    n = stats.count.sum(0)  # [K]
    gm = stats.mean * f
    mean = (stats.count * gm).sum(0) / n.clamp_min(1.0)
    ss = (stats.sum_sq * f * f).sum(0) + (stats.count * (gm - mean) ** 2).sum(0)
    return mean * top, (dispersion(ss, n, ddof) * top).clamp(max=F64_MAX), n


def exact_column_sums(x: Tensor) -> list[float]:
    """Correctly rounded Σ_i x_ik of a float64 ``x [N, K]`` with |x| < 2 (the value ``math.fsum`` gives), vectorized.

    Error-free splitting: each pass takes the part of x on a grid of 2^-s (``round(x·2^s)·2^-s``, exact), whose
    scaled values are integers below 2^b with b + log2(N) <= 52, so their float64 sum is exact; the remainder
    x - part is exact too and goes to the next, finer grid. Typical rewards (24-bit float32 values) need one or two
    passes; any float64 input at most ~1100 / b. ``math.fsum`` then combines the few exact partial sums.
    """
    n = x.shape[0]
    bits = 52 - max(1, math.ceil(math.log2(max(n, 2)))) - 1
    rest, shift, parts = x, 0, []
    while bool(rest.ne(0).any()):
        shift += bits
        grid = torch.round(torch.ldexp(rest, torch.tensor(shift, device=x.device)))  # integers, |.| <= 2^(bits)
        parts.append([math.ldexp(v, -shift) for v in grid.sum(0).tolist()])  # exact sums, exactly rescaled
        rest = rest - torch.ldexp(grid, torch.tensor(-shift, device=x.device))
    return [math.fsum(col) for col in zip(*parts)] if parts else [0.0] * x.shape[1]


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 where ``den == 0`` (0/0 means "no signal", never NaN)."""
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num))
