"""Property-test kit for advantage estimators — varpo's and yours (``docs/extending.md``).

A new estimator is trusted when three independent things agree with it:

1. **hand values** — a batch small enough to compute on paper (:func:`assert_hand_values`);
2. a **loop oracle** — the paper's formula written naively, one group and one sample at a time in plain Python
   floats (:func:`loop_oracle` does the looping, you write one group's formula), compared on many random batches
   with shuffled group layouts, unequal group sizes and missing rewards (:func:`assert_matches_oracle`);
3. **invariances** every group estimator must have (:func:`assert_permutation_invariant`,
   :func:`assert_group_shift_invariant`, :func:`assert_missing_values_safe`).

Every ``assert_*`` raises ``AssertionError`` with the seed and the first differing row, so they work in pytest,
unittest or a script. They only use :func:`varpo.compute_advantages`, i.e. they test the method exactly as every
engine calls it. :func:`check_estimator` runs the invariances in one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

import varpo

__all__ = [
    "advantages",
    "assert_group_shift_invariant",
    "assert_hand_values",
    "assert_matches_oracle",
    "assert_missing_values_safe",
    "assert_permutation_invariant",
    "check_estimator",
    "loop_oracle",
    "mean_std",
    "random_batch",
]

DEFAULT_SEEDS = range(25)


def random_batch(
    seed: int,
    *,
    groups: int | None = None,
    k: int = 2,
    missing: float = 0.0,
    binary: bool = False,
    equal_sizes: bool = False,
) -> tuple[Tensor, Tensor]:
    """A random ``(rewards [N, K] float64, group_ids [N] int64)`` batch: 1-6 groups of 1-8 samples (or 4 each with
    ``equal_sizes``), shuffled order, non-contiguous ids, each entry missing (NaN) with probability ``missing``."""
    gen = torch.Generator().manual_seed(seed)
    p = groups if groups is not None else int(torch.randint(1, 7, (1,), generator=gen))
    sizes = [4] * p if equal_sizes else torch.randint(1, 9, (p,), generator=gen).tolist()
    ids = torch.repeat_interleave(torch.randperm(100, generator=gen)[:p], torch.tensor(sizes))
    n = ids.numel()
    if binary:
        r = torch.randint(0, 2, (n, k), generator=gen).double()
    else:
        r = torch.rand(n, k, generator=gen, dtype=torch.float64) * torch.tensor([10.0**j for j in range(k)]).double()
    if missing > 0:
        r[torch.rand(n, k, generator=gen) < missing] = float("nan")
    order = torch.randperm(n, generator=gen)
    return r[order], ids[order]


def advantages(method: str, rewards, group_ids, weights=None, **options) -> Tensor:
    """``varpo.compute_advantages(...).advantages`` as float64."""
    out = varpo.compute_advantages(torch.as_tensor(rewards), torch.as_tensor(group_ids), method, weights, **options)
    return out.advantages.double()


def _close(actual: Tensor, expected: Tensor, atol: float, rtol: float, what: str) -> None:
    actual, expected = actual.double(), torch.as_tensor(expected, dtype=torch.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    bad = ~torch.isclose(actual, expected, atol=atol, rtol=rtol, equal_nan=False)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.numel()} rows differ; first row {i}: got {float(actual[i])!r}, "
            f"expected {float(expected[i])!r} (atol={atol}, rtol={rtol})"
        )


def assert_hand_values(
    method: str, rewards, group_ids, expected: Sequence[float], weights=None, *, atol=1e-6, rtol=1e-5, **options
) -> None:
    """The method's advantages on a hand-computed batch equal ``expected`` (write the arithmetic in a comment)."""
    _close(advantages(method, rewards, group_ids, weights, **options), expected, atol, rtol, f"{method} hand values")


def mean_std(values: Iterable[float], ddof: int = 1) -> tuple[float, float]:
    """Plain-Python mean and std of the finite entries (std 0 when ``n - ddof <= 0``), for writing oracles."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return 0.0, 0.0
    mu = sum(vals) / len(vals)
    if len(vals) - ddof <= 0:
        return mu, 0.0
    return mu, math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - ddof))


OneGroup = Callable[..., list[float]]


def loop_oracle(per_group: OneGroup) -> Callable[..., list[float]]:
    """Turn one group's formula into a whole-batch oracle.

    ``per_group(rows, weights, eps=..., ddof=..., **options) -> list[float]`` receives the group's reward rows as
    plain lists of floats (``nan`` = missing) and the K weights normalized to sum 1, and returns one advantage per
    row. The oracle loops over groups in Python (deliberately slow and obvious), gives unscorable rows (every
    component missing) 0 without passing them to ``per_group``, and returns a list aligned with the input rows.
    For methods with a batch-level step (whitening, batch weights) write the oracle by hand instead.
    """

    def oracle(rewards, group_ids, weights=None, eps: float = 1e-6, ddof: int = 1, **options) -> list[float]:
        rows = [[float(x) for x in row] for row in torch.as_tensor(rewards, dtype=torch.float64).tolist()]
        ids = [int(g) for g in torch.as_tensor(group_ids).tolist()]
        k = len(rows[0]) if rows else 0
        w = [1.0 / k] * k if weights is None else [float(x) for x in weights]
        w = [x / sum(w) for x in w]
        out = [0.0] * len(rows)
        members: dict[int, list[int]] = {}
        for i, g in enumerate(ids):
            if any(math.isfinite(x) for x in rows[i]):
                members.setdefault(g, []).append(i)
        for idx in members.values():
            values = per_group([rows[i] for i in idx], w, eps=eps, ddof=ddof, **options)
            for i, v in zip(idx, values, strict=True):
                out[i] = float(v)
        return out

    return oracle


def assert_matches_oracle(
    method: str,
    oracle: Callable[..., list[float]],
    *,
    seeds: Iterable[int] = DEFAULT_SEEDS,
    k: int = 2,
    missing: float = 0.15,
    weights: Sequence[float] | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    **options,
) -> None:
    """Vectorized method == ``oracle(rewards, group_ids, weights, eps=, ddof=, **options)`` on random batches
    (shuffled layouts, unequal groups, singleton groups, missing entries, binary and continuous rewards)."""
    for seed in seeds:
        r, ids = random_batch(seed, k=k, missing=missing, binary=seed % 3 == 0)
        expected = oracle(
            r,
            ids,
            weights,
            eps=options.get("eps", 1e-6),
            ddof=options.get("ddof", 1),
            **{key: v for key, v in options.items() if key not in ("eps", "ddof")},
        )
        _close(advantages(method, r, ids, weights, **options), expected, atol, rtol, f"{method} vs oracle, seed {seed}")


def assert_permutation_invariant(method: str, *, seeds: Iterable[int] = DEFAULT_SEEDS, k: int = 2, **options) -> None:
    """Shuffling the rows (with their group ids) shuffles the advantages the same way, and relabelling the group
    ids changes nothing: the estimator depends on group membership, never on position or id values."""
    for seed in seeds:
        r, ids = random_batch(seed, k=k, missing=0.1)
        base = advantages(method, r, ids, **options)
        perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed + 1))
        _close(advantages(method, r[perm], ids[perm], **options), base[perm], 1e-6, 1e-5, f"{method} permuted rows")
        _close(advantages(method, r, ids * 7 + 3, **options), base, 1e-6, 1e-5, f"{method} relabelled group ids")


def assert_group_shift_invariant(method: str, *, seeds: Iterable[int] = DEFAULT_SEEDS, k: int = 2, **options) -> None:
    """Adding a constant c_gk to component k of every sample of group g leaves the advantages unchanged (they depend
    on within-group deviations only). Not true for methods with batch-level *level* statistics (e.g. SAW's
    coefficient of variation uses the batch mean); skip it for those and say why in your docs."""
    for seed in seeds:
        r, ids = random_batch(seed, k=k, missing=0.1)
        base = advantages(method, r, ids, **options)
        _, inverse = torch.unique(ids, return_inverse=True)
        shift = torch.rand(int(inverse.max()) + 1, k, generator=torch.Generator().manual_seed(seed), dtype=r.dtype)
        shifted = r + 5.0 * shift[inverse]
        _close(advantages(method, shifted, ids, **options), base, 1e-5, 1e-4, f"{method} group shift, seed {seed}")


def assert_missing_values_safe(method: str, *, seeds: Iterable[int] = DEFAULT_SEEDS, k: int = 2, **options) -> None:
    """Missing rewards (NaN, ±inf) never propagate: every advantage is finite, a sample with every component
    missing gets exactly 0, and adding such a sample to a group does not change any other sample's advantage
    (missing entries are left out of every statistic)."""
    for seed in seeds:
        r, ids = random_batch(seed, k=k, missing=0.2)
        r[0, :] = float("nan")
        if k > 1:
            r[-1, 0] = float("inf")
        adv = advantages(method, r, ids, **options)
        if not bool(torch.isfinite(adv).all()):
            raise AssertionError(f"{method}: non-finite advantage with missing rewards (seed {seed})")
        if float(adv[0]) != 0.0:
            raise AssertionError(f"{method}: a sample with every reward missing got {float(adv[0])!r}, not 0")
        extra_r = torch.cat([r, torch.full((1, k), float("nan"), dtype=r.dtype)])
        extra_ids = torch.cat([ids, ids[1:2]])
        _close(advantages(method, extra_r, extra_ids, **options)[:-1], adv, 1e-6, 1e-5, f"{method} + unscorable row")


def check_estimator(
    method: str, *, shift_invariant: bool = True, k: int = 2, seeds: Iterable[int] = DEFAULT_SEEDS, **options
) -> None:
    """Run the invariance checks (permutation, group shift unless ``shift_invariant=False``, missing values)."""
    seeds = list(seeds)
    assert_permutation_invariant(method, k=k, seeds=seeds, **options)
    if shift_invariant:
        assert_group_shift_invariant(method, k=k, seeds=seeds, **options)
    assert_missing_values_safe(method, k=k, seeds=seeds, **options)
