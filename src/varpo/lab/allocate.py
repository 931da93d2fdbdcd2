"""Use (b): how each estimator allocates learning across objectives, on synthetic statistics or a logged run.

* :func:`allocation` trains every method from the same initial policy for a few steps and reports, per objective,
  the estimator's effective weight (``weight/<name>`` from ``compute_advantages``), the improvement per step of the
  full-marks rate, and the share of the remaining headroom gained; the *neglected* objective is the one with the
  smallest share of its headroom gained (ties: the first).
* :func:`replay` recomputes every estimator on every logged batch ``[N, K]`` (same group ids and weights as the
  run) and averages the effective weights, the mean A² and the fraction of zero-signal groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

import varpo
from varpo import reward_log
from varpo.lab.env import RewardSpec
from varpo.lab.train import LabConfig, train


@dataclass
class Allocation:
    method: str
    names: tuple[str, ...]
    weight: np.ndarray  # [K] mean effective weight over steps and seeds
    gain_per_step: np.ndarray  # [K] mean Δ full-marks rate per step
    headroom_share: np.ndarray  # [K] (final - initial) / (1 - initial)
    all_rate: float
    worst: float

    @property
    def neglected(self) -> str:
        return self.names[int(np.argmin(self.headroom_share))]

    def to_dict(self) -> dict:
        d = dict(method=self.method, neglected=self.neglected, all_rate=self.all_rate, worst=self.worst)
        for j, n in enumerate(self.names):
            d[f"weight/{n}"] = float(self.weight[j])
            d[f"gain_per_step/{n}"] = float(self.gain_per_step[j])
            d[f"headroom_share/{n}"] = float(self.headroom_share[j])
        return d


def allocation(
    spec: RewardSpec, methods: Sequence[str], base: LabConfig, seeds: int = 64, seed: int = 0
) -> list[Allocation]:
    out = []
    for m in methods:
        h = train(spec, replace(base, method=m), seeds=seeds, seed=seed)
        sat = h.satisfied.mean(1)  # [R, K] mean over seeds
        start, end = sat[0], sat[-1]
        headroom = np.clip(1.0 - start, 1e-9, None)
        out.append(
            Allocation(
                method=m,
                names=spec.names,
                weight=np.nanmean(h.weights, 0),
                gain_per_step=(end - start) / max(int(h.steps[-1]), 1),
                headroom_share=(end - start) / headroom,
                all_rate=float(h.all_rate[-1].mean()),
                worst=float(h.satisfied[-1].min(1).mean()),
            )
        )
    return out


def replay(directory, methods: Sequence[str], **options) -> list[dict]:
    """Every method's mean effective weights, mean A², max |A| and zero-signal fraction over the logged batches.

    A statistic that has no value in a batch (``AdvantageOutput.absent``: the advantage statistics of a batch without
    any scorable sample) is left out of its mean instead of counting as 0; a key absent from every batch is omitted.
    """
    batches = reward_log.read(directory)
    if not batches:
        raise ValueError(f"reward log {directory}: no batches")
    names = batches[0].names
    rows = []
    for m in methods:
        acc: dict[str, list[float]] = {}
        for b in batches:
            out = varpo.compute_advantages(
                torch.from_numpy(b.rewards.astype(np.float64)),
                torch.from_numpy(b.group_ids.astype(np.int64)),
                m,
                weights=None if b.weights is None else torch.from_numpy(b.weights),
                names=list(names),
                **options,
            )
            present = out.present_stats
            for key in [f"weight/{n}" for n in names] + ["adv_sq_mean", "adv_max_abs", "frac_zero_std_groups"]:
                if key in present:
                    acc.setdefault(key, []).append(present[key])
        row = dict(method=m, batches=len(batches))
        row.update({k: float(np.mean(v)) for k, v in acc.items()})
        rows.append(row)
    return rows
