"""Reusable tile buffers of the statistics' fast path, owned by whoever runs the computation.

The fast path (:mod:`varpo.tiles`) and the scatter helpers in :mod:`varpo.groups` stream an [N, K] matrix through
tiles of at most :data:`TILE_ELEMENTS` float64 values. A fresh multi-MiB buffer per tile is returned to the OS and
page-faulted back on the next one (glibc trims the heap), which costs more than the arithmetic on the tile; a
:class:`Workspace` keeps one buffer per slot and hands out views of it instead. It is plain state passed by
argument: :class:`varpo.batch.RewardBatch` makes one per batch, a caller that wants to reuse buffers across calls
keeps its own. Nothing is held at module level.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Float64 elements per tile (2 MiB): a tile is converted, centered, squared and projected while it sits in cache, so
# the [N, K] reward matrix is read from memory once per loop and never copied whole in float64.
TILE_ELEMENTS = 1 << 18


class Workspace:
    """At most :attr:`slots` float64 CPU buffers of one tile each (``slots · tile · 8`` bytes, 6 MiB by default).

    A view handed out by :meth:`buffer` is valid until the next request for the same slot; the callers document
    which slot they use (0: the tile being loaded, 1: squares, 2: gathered per-group values). Not thread-safe: one
    workspace per thread of computation. Other devices get fresh tensors (their caching allocators already reuse
    memory).
    """

    __slots__ = ("tile", "slots", "_buffers")

    def __init__(self, tile: int | None = None, slots: int = 3) -> None:
        self.tile = TILE_ELEMENTS if tile is None else tile  # read at construction: tests shrink it
        self.slots = slots
        self._buffers: list[Tensor | None] = [None] * slots

    def buffer(self, slot: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """A float64 tensor of ``shape`` (uninitialised): a view of buffer ``slot`` when it fits one tile on the CPU."""
        numel = math.prod(shape)
        if device.type != "cpu" or numel > self.tile:
            return torch.empty(shape, dtype=torch.float64, device=device)
        buf = self._buffers[slot]
        if buf is None:
            buf = self._buffers[slot] = torch.empty(self.tile, dtype=torch.float64)
        return buf[:numel].view(shape)


def buffer(workspace: Workspace | None, slot: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """``workspace.buffer(...)``, or a fresh tensor without a workspace."""
    if workspace is None:
        return torch.empty(shape, dtype=torch.float64, device=device)
    return workspace.buffer(slot, shape, device)
