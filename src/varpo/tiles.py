"""The statistics' fast path: a batch with every reward finite, streamed through cache-sized row tiles.

:func:`fast_group_stats` gives the same :class:`varpo.moments.GroupStats` as :func:`varpo.moments.group_stats`
(same formulas, same float64 arithmetic per element) plus the default weighted combination, reading the [N, K]
rewards once or twice and never allocating an [N, K] float64 matrix; :class:`Deviations` re-streams the deviations
on demand; :func:`soft_min_tiles` is RVPO's soft-min over those tiles. Everything here takes tensors, a
:class:`varpo.groups.GroupIndex` and a :class:`varpo.workspace.Workspace` — no batch or options object.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from varpo.groups import GroupIndex
from varpo.moments import GroupStats
from varpo.numerics import STAT_DTYPE, needs_scaling, soft_min_of_logits
from varpo.workspace import Workspace, buffer

# Up to this many components a tile is stored component-major ([K, rows]): group reductions then run over
# contiguous memory (5-7x faster than reducing a [P, G, K] view with K = 3); wider matrices stay row-major.
COMPONENT_MAJOR_MAX_K = 8
# Input dtypes whose finite values all lie in [2^-149, 2^128] in magnitude: deviations of such rewards square
# without overflow or underflow in float64, so the scale-robust units are all 1 and need no check.
_NARROW_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class Deviations:
    """``dev = r - μ_g(r)`` ``[N, K]`` (float64, constant groups zeroed) of a batch with every reward finite, never
    materialized whole: row tiles of the rewards (any float dtype) are converted, centered and consumed in cache.

    Tiles hold whole groups on the contiguous equal-size layout (``[p, G]`` views, no index) and any rows
    otherwise (a gather of the tile's group means). Per element the float64 arithmetic is the whole-matrix
    formula ``r.double() - mean[g]``; only the memory layout of the tile differs (component-major for small K).
    """

    def __init__(
        self, rewards: Tensor, index: GroupIndex, mean: Tensor, keep: Tensor | None, workspace: Workspace
    ) -> None:
        self.rewards, self.index, self.mean, self.keep = rewards, index, mean, keep  # keep: [P, K] 0/1 or None
        self.workspace = workspace  # slot 0: the loaded tile, slot 2: gathered per-group values
        self.kmajor = rewards.shape[1] <= COMPONENT_MAJOR_MAX_K

    def load(self, rows: slice) -> Tensor:
        """The tile's rewards in float64, in workspace 0 (never the caller's tensor): ``[K, rows]`` (component-major)
        or ``[rows, K]``. Valid until the next tile is loaded."""
        x = self.rewards[rows]
        if self.kmajor:
            return buffer(self.workspace, 0, (x.shape[1], x.shape[0]), x.device).copy_(x.T)
        return buffer(self.workspace, 0, tuple(x.shape), x.device).copy_(x)

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
            part = torch.index_select(t, 0, inv, out=buffer(self.workspace, 2, (inv.shape[0], t.shape[1]), t.device))
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
        step = max(align, self.workspace.tile // max(k, 1) // align * align)
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
    rewards: Tensor, index: GroupIndex, ddof: int, weights: Tensor, workspace: Workspace | None = None
) -> tuple[GroupStats, Tensor] | None:
    """:func:`group_stats` for a batch with every reward finite and unit scales, plus ``c = dev @ weights`` ``[N]``;
    ``None`` when that does not hold (a non-finite reward, float64 rewards needing scale-robust units, or rewards
    that require grad), and the caller takes :func:`group_stats`.

    Same formulas, same float64 arithmetic, same constant-group rule; the difference is memory traffic: row tiles
    (:class:`Deviations`) are summed, centered, squared and projected on ``weights`` while in cache, so the
    [N, K] rewards are read once (contiguous equal-size groups) or twice (any other layout: sums by
    ``index_add_`` first), and no [N, K] float64 matrix is allocated. A non-finite reward makes its group's sum
    non-finite (float32/bf16/fp16 sums cannot overflow in float64), which is how "all valid" is detected for free.
    The returned :class:`GroupStats` has ``dense_dev=None`` and ``lazy`` set: deviations are re-streamed on demand,
    through ``workspace`` (a fresh one when ``None``), which the statistics keep for that purpose.
    """
    if rewards.requires_grad and torch.is_grad_enabled():  # out= writes are not differentiable
        return None
    if rewards.dtype not in _NARROW_DTYPES and (rewards.dtype != STAT_DTYPE or needs_scaling(rewards)):
        return None
    n, k = rewards.shape
    p, g = index.num_groups, index.group_size
    ws = Workspace() if workspace is None else workspace
    dev_stream = Deviations(rewards, index, torch.empty(0), None, ws)
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
        step = max(g, ws.tile // max(k, 1) // g * g)
        for r0 in range(0, n, step):
            rows = slice(r0, min(r0 + step, n))
            groups = slice(rows.start // g, rows.stop // g)
            t = dev_stream.shaped(dev_stream.load(rows))  # [K, p, G] or [p, G, K]
            m = t.sum(-1 if kmajor else 1).div_(g)  # [K, p] or [p, K]
            if not math.isfinite(float(m.sum())):  # a non-finite entry (the sum of finite ones cannot overflow)
                return None
            dev = t.sub_(m.unsqueeze(-1 if kmajor else 1))
            ss = torch.mul(dev, dev, out=buffer(ws, 1, tuple(dev.shape), dev.device)).sum(-1 if kmajor else 1)
            sd = ss.div(g - ddof).sqrt_() if g > ddof else torch.zeros_like(ss)
            keep_t = drop_constant(sd, m)  # the constant rule on the tile, while it is in cache
            if keep_t is not None:
                dev.mul_(keep_t.unsqueeze(-1 if kmajor else 1))
                noisy = True
            m, ss, sd = (m.T, ss.T, sd.T) if kmajor else (m, ss, sd)
            mean[groups], sum_sq[groups], std[groups] = m, ss, sd
            dev_stream.project_tile(dev, weights, rows, c[rows])
    else:  # sums by scatter, then one more loop over the rows
        inv = index.inverse
        cnt = index.sizes().to(STAT_DTYPE).unsqueeze(1).expand(p, k)
        step = max(1, ws.tile // max(k, 1))
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
                1 if kmajor else 0, inv[rows], torch.mul(dev, dev, out=buffer(ws, 1, tuple(dev.shape), dev.device))
            )
            dev_stream.project_tile(dev, weights, rows, c[rows])
        if kmajor:
            sum_sq.copy_(squares.T)
        # dispersion(sum_sq, cnt, ddof) without [P, K] masks: n - ddof <= 0 divides by inf (σ = 0, as there)
        denom = index.sizes().to(STAT_DTYPE) - ddof  # [P]
        std = sum_sq.div(torch.where(denom > 0, denom, math.inf).unsqueeze(1)).sqrt_()
        # Constant groups (group_stats' rule). Only rounding noise of a constant non-dyadic group (σ > 0) makes the
        # projection above differ; then it is redone with those deviations zeroed.
        if drop_constant(std, mean) is not None:
            noisy = True
            c = Deviations(rewards, index, mean, (std > 0).to(STAT_DTYPE), ws).project(weights)
    # After the constant rule σ = 0 exactly on constant groups (whose deviations are 0 or zeroed) and σ > 0 elsewhere,
    # so `std > 0` is group_stats' keep mask; it is needed only when some deviations had to be zeroed.
    keep = (std > 0).to(STAT_DTYPE) if noisy else None
    scale = torch.ones((), dtype=STAT_DTYPE, device=rewards.device).expand(p, k)  # unit scales, no [P, K] memory
    stats = GroupStats(None, std, cnt, mean, sum_sq, scale, unit=True, lazy=Deviations(rewards, index, mean, keep, ws))
    return stats, c


def drop_constant(std: Tensor, mean: Tensor) -> Tensor | None:
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


def soft_min_tiles(
    lazy: Deviations, inv_std: Tensor, wbar: Tensor, k: float, with_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """RVPO's soft-min of the z-scores, tile by tile: ``value_i = -(1/k) log Σ_j w̄_j exp(-k z_ij)`` ``[N]`` with
    ``z = dev · inv_std`` (``inv_std [P, K]`` = 1 / (σ_gk + eps)), and ``Σ_i ∂value_i/∂z_i`` ``[K]`` (or ``None``
    without ``with_grad``).

    The arithmetic per element is :func:`varpo.numerics.soft_min_of_logits` on ``log w̄ - k z``, as the
    whole-matrix :func:`varpo.estimators.soft_min`; only the [N, K] deviations, z-scores, logits and exponentials
    are never materialized. Component-major tiles (K <= 8) reduce over K as elementwise operations between K slabs.
    """
    n, kk = lazy.rewards.shape
    kd = 0 if lazy.kmajor else -1
    out = torch.empty(n, dtype=STAT_DTYPE, device=lazy.rewards.device)
    grad_sum = torch.zeros(kk, dtype=STAT_DTYPE, device=lazy.rewards.device) if with_grad else None
    log_w = torch.log(wbar)
    log_w = log_w.view(kk, *([1] * (2 if lazy.index.group_size is not None else 1))) if lazy.kmajor else log_w
    for rows, dev in lazy.tiles():
        logits = dev.mul_(lazy.per_group(inv_std, rows)).mul_(-k).add_(log_w)  # log w̄ - k z, in place
        value, part = soft_min_of_logits(logits, kd, k, with_grad)
        out[rows] = value.reshape(-1)
        if grad_sum is not None:
            grad_sum += part.reshape(kk, -1).sum(1) if lazy.kmajor else part.reshape(-1, kk).sum(0)
    return out, grad_sum
