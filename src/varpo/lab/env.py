"""The lab's world: per-prompt finite response sets, each response with a K-vector of rewards and a length.

A :class:`RewardSpec` holds, for P prompts and Y candidate responses per prompt,

* ``rewards [P, Y, K]`` float64 — the reward each objective gives each response (any scale);
* ``satisfied [P, Y, K]`` bool — whether the response fully satisfies the objective (full marks);
* ``lengths [P, Y]`` int — the response's length in tokens (>= 1);
* ``init_logits [P, Y]`` — the reference/initial policy's logits (uniform = zeros).

Specs come from :func:`synthetic` (per-objective success rates under the initial policy, reward type and scale,
correlation / conflict between objectives, length spread and length effects) or from a logged run via
:func:`from_reward_log` (each logged group becomes a prompt whose G sampled responses are its response set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

KINDS = ("binary", "partial", "length_budget")


@dataclass(frozen=True)
class Objective:
    """One objective of a synthetic spec.

    Attributes:
        name: objective name (used in tables and stats keys).
        success: target full-marks rate under the initial (uniform) policy, averaged over prompts, in (0, 1).
        kind: ``binary`` (0/1), ``partial`` (fraction of ``levels`` correlated sub-checks passed) or
            ``length_budget`` (1 iff length <= ``budget``; ``success`` is then implied by the length distribution).
        scale, offset: reward = offset + scale · raw, raw in [0, 1] (different ranges per objective).
        levels: number of sub-checks of a ``partial`` objective.
        budget: token budget of a ``length_budget`` objective.
        length_effect: correlation in [-1, 1] of the objective's latent with length (> 0: longer responses pass
            more often; < 0: shorter ones do).
    """

    name: str
    success: float = 0.5
    kind: str = "binary"
    scale: float = 1.0
    offset: float = 0.0
    levels: int = 4
    budget: int | None = None
    length_effect: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"objective {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind != "length_budget" and not 0.0 < self.success < 1.0:
            raise ValueError(f"objective {self.name!r}: success must be in (0, 1), got {self.success!r}")
        if not (math.isfinite(self.scale) and self.scale > 0 and math.isfinite(self.offset)):
            raise ValueError(f"objective {self.name!r}: scale must be finite > 0 and offset finite")
        if self.kind == "length_budget" and (self.budget is None or self.budget < 1):
            raise ValueError(f"objective {self.name!r}: length_budget needs budget >= 1")
        if self.kind == "partial" and self.levels < 2:
            raise ValueError(f"objective {self.name!r}: partial needs levels >= 2, got {self.levels!r}")
        if not -1.0 <= self.length_effect <= 1.0:
            raise ValueError(f"objective {self.name!r}: length_effect must be in [-1, 1], got {self.length_effect!r}")


@dataclass
class RewardSpec:
    """Finite multi-objective bandit per prompt (see module docstring for shapes)."""

    rewards: Tensor  # [P, Y, K] float64
    satisfied: Tensor  # [P, Y, K] bool
    lengths: Tensor  # [P, Y] int64, >= 1
    names: tuple[str, ...]
    init_logits: Tensor | None = None  # [P, Y]; None = uniform
    weights: tuple[float, ...] | None = None  # user weights w (default uniform)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        p, y, k = self.rewards.shape
        if self.satisfied.shape != (p, y, k) or self.lengths.shape != (p, y):
            raise ValueError(
                f"spec shapes disagree: rewards {tuple(self.rewards.shape)}, satisfied "
                f"{tuple(self.satisfied.shape)}, lengths {tuple(self.lengths.shape)}"
            )
        if len(self.names) != k:
            raise ValueError(f"spec has K={k} objectives but {len(self.names)} names")
        if not bool(torch.isfinite(self.rewards).all()):
            raise ValueError("spec rewards must be finite")
        if bool((self.lengths < 1).any()):
            raise ValueError("spec lengths must be >= 1")
        if self.init_logits is None:
            self.init_logits = torch.zeros(p, y, dtype=torch.float64)

    @property
    def shape(self) -> tuple[int, int, int]:
        p, y, k = self.rewards.shape
        return p, y, k

    @property
    def max_length(self) -> int:
        return int(self.lengths.max())

    def initial_rates(self) -> Tensor:
        """Full-marks rate per objective under the initial policy, averaged over prompts ``[K]``."""
        probs = torch.softmax(self.init_logits, -1)  # [P, Y]
        return (probs.unsqueeze(-1) * self.satisfied.to(torch.float64)).sum(1).mean(0)


def _correlation(k: int, correlation: float | Sequence[Sequence[float]]) -> np.ndarray:
    """A valid K x K correlation matrix: scalar ρ (equicorrelation) or a matrix, projected onto the PSD cone."""
    if isinstance(correlation, (int, float)):
        c = np.full((k, k), float(correlation))
        np.fill_diagonal(c, 1.0)
    else:
        c = np.asarray(correlation, dtype=np.float64)
        if c.shape != (k, k):
            raise ValueError(f"correlation must be a scalar or a {k}x{k} matrix, got shape {c.shape}")
        c = 0.5 * (c + c.T)
    # a correlation is in [-1, 1]: 1.5 or NaN was silently "projected" into something else
    if not (np.isfinite(c).all() and np.abs(c).max() <= 1.0):
        raise ValueError(f"correlation must be finite and in [-1, 1], got {correlation!r}")
    vals, vecs = np.linalg.eigh(c)
    c = vecs @ np.diag(np.clip(vals, 1e-6, None)) @ vecs.T  # nearest PSD (clip negative eigenvalues)
    d = np.sqrt(np.diag(c))
    return c / np.outer(d, d)


def synthetic(
    objectives: Sequence[Objective],
    *,
    prompts: int = 16,
    responses: int = 32,
    correlation: float | Sequence[Sequence[float]] = 0.0,
    lengths: tuple[int, int] = (1, 1),
    prompt_spread: float = 0.5,
    weights: Sequence[float] | None = None,
    seed: int = 0,
) -> RewardSpec:
    """Generate a spec from per-objective statistics with a Gaussian copula.

    Latents z ~ N(0, C) per response ([P, Y, K], C from ``correlation``; negative entries = conflict), a length
    latent u ~ N(0, 1) with length = lo + round((hi - lo)·Φ(u)), and z_k ← √(1-e_k²) z_k - e_k u for
    ``length_effect`` e_k. A binary objective passes iff z_k < a_k + s·n_pk with a per-prompt difficulty shift
    n_pk ~ N(0, 1) (s = ``prompt_spread``) and a_k = Φ⁻¹(success_k)·√(1+s²), so the prompt-averaged pass rate of
    the *population* is exactly ``success_k`` (the realized rate of a finite spec scatters around it; see
    :meth:`RewardSpec.initial_rates`). A partial objective scores the fraction of ``levels`` sub-checks
    √½ z_k + √½ e_j < a_k + s·n_pk (same marginal rate per sub-check).
    """
    if not objectives:
        raise ValueError("synthetic spec needs at least one objective")
    names = tuple(o.name for o in objectives)
    if len(set(names)) != len(names):
        raise ValueError(f"objective names must be unique, got {names}")
    lo, hi = int(lengths[0]), int(lengths[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"lengths must be (lo, hi) with 1 <= lo <= hi, got {lengths!r}")
    if prompts < 1 or responses < 2:
        raise ValueError(f"need prompts >= 1 and responses >= 2, got {prompts}, {responses}")
    k = len(objectives)
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(_correlation(k, correlation))
    z = rng.standard_normal((prompts, responses, k)) @ chol.T  # [P, Y, K]
    u = rng.standard_normal((prompts, responses))  # [P, Y]
    phi_u = 0.5 * (1.0 + np.vectorize(math.erf)(u / math.sqrt(2.0)))
    length = lo + np.rint((hi - lo) * phi_u).astype(np.int64)
    shift = rng.standard_normal((prompts, 1, k))  # [P, 1, K] prompt difficulty
    raw = np.zeros((prompts, responses, k))
    sat = np.zeros((prompts, responses, k), dtype=bool)
    for j, o in enumerate(objectives):  # K is small; each objective has its own rule
        if o.kind == "length_budget":
            raw[..., j] = (length <= o.budget).astype(np.float64)
            sat[..., j] = raw[..., j] == 1.0
            continue
        e = o.length_effect
        zj = math.sqrt(1.0 - e * e) * z[..., j] - e * u
        thr = _probit(o.success) * math.sqrt(1.0 + prompt_spread**2) + prompt_spread * shift[..., j]
        if o.kind == "binary":
            raw[..., j] = (zj < thr).astype(np.float64)
        else:
            sub = math.sqrt(0.5) * zj[..., None] + math.sqrt(0.5) * rng.standard_normal((prompts, responses, o.levels))
            raw[..., j] = (sub < thr[..., None]).mean(-1)
        sat[..., j] = raw[..., j] >= 1.0
    scale = np.array([o.scale for o in objectives])
    offset = np.array([o.offset for o in objectives])
    return RewardSpec(
        rewards=torch.tensor(offset + scale * raw, dtype=torch.float64),
        satisfied=torch.tensor(sat),
        lengths=torch.tensor(length),
        names=names,
        weights=None if weights is None else tuple(float(w) for w in weights),
        meta=dict(source="synthetic", seed=seed, objectives=[o.__dict__ for o in objectives]),
    )


def _probit(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def from_reward_log(path, *, max_groups: int | None = None) -> RewardSpec:
    """A spec from a reward-matrix log (see :mod:`varpo.reward_log`): every logged group is one prompt whose
    response set is the group's G sampled responses (uniform initial policy = the logged sampling distribution,
    as far as G samples show it). Groups smaller than the largest one are dropped. ``satisfied`` = the component
    reaches its maximum over the whole log (full marks as far as the log shows); lengths are the logged completion
    lengths, or 1 when the log has none."""
    from varpo import reward_log

    steps = reward_log.read(path)  # [LoggedBatch]
    if not steps:
        raise ValueError(f"{path}: reward log holds no steps")
    names = steps[0].names
    blocks, lens = [], []
    for st in steps:
        if st.names != names:
            raise ValueError(f"{path}: step {st.step} has objectives {st.names}, expected {names}")
        ids = st.group_ids
        _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
        g = int(counts.max())
        for gid in np.flatnonzero(counts == g):
            rows = np.flatnonzero(inverse == gid)
            blocks.append(st.rewards[rows])
            lens.append(st.lengths[rows] if st.lengths is not None else np.ones(len(rows), dtype=np.int64))
    g = max(len(b) for b in blocks)
    keep = [i for i, b in enumerate(blocks) if len(b) == g][:max_groups]
    rewards = np.stack([blocks[i] for i in keep]).astype(np.float64)  # [P, G, K]
    rewards = np.where(np.isfinite(rewards), rewards, np.nan)
    empty = [n for n, seen in zip(names, np.isfinite(rewards).reshape(-1, len(names)).any(0)) if not seen]
    if empty:
        raise ValueError(f"{path}: objective(s) {empty} are missing in every logged sample")
    col_min = np.nanmin(rewards.reshape(-1, rewards.shape[-1]), 0)
    rewards = np.where(np.isnan(rewards), col_min, rewards)  # a missing reward counts as the worst observed
    col_max = rewards.reshape(-1, rewards.shape[-1]).max(0)
    lengths = np.stack([np.clip(lens[i], 1, None) for i in keep]).astype(np.int64)
    return RewardSpec(
        rewards=torch.tensor(rewards),
        satisfied=torch.tensor(rewards >= col_max - 1e-9),
        lengths=torch.tensor(lengths),
        names=tuple(names),
        weights=tuple(float(w) for w in steps[0].weights) if steps[0].weights is not None else None,
        meta=dict(source="reward_log", path=str(path), groups=len(keep)),
    )
