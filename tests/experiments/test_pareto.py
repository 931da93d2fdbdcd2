"""Exact hypervolume and Pareto-front extraction: hand-computed cases and a brute-force grid oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varpo.experiments.pareto import dominates, hypervolume, non_dominated, pareto_front


def grid_oracle(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact union volume by coordinate compression: split space at every coordinate any point (or the reference)
    has, and add each grid cell whose upper corner some point dominates. Exponential in K, obviously correct."""
    points = np.asarray(points, dtype=float).reshape(-1, len(ref))
    k = len(ref)
    axes = [np.unique(np.concatenate(([ref[d]], points[:, d][points[:, d] > ref[d]]))) for d in range(k)]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        upper = np.array([axes[d][cell[d] + 1] for d in range(k)])
        if len(points) and (points >= upper).all(axis=1).any():
            total += float(np.prod([axes[d][cell[d] + 1] - axes[d][cell[d]] for d in range(k)]))
    return total


# ---- hand-computed cases ------------------------------------------------------------------------------------------
def test_2d_staircase_by_hand():
    pts = [(1, 3), (2, 2), (3, 1)]
    assert hypervolume(pts, (0, 0)) == pytest.approx(3 * 1 + 2 * 1 + 1 * 1)  # 6
    # reference (0.5, 0.5): 2.5·0.5 + 1.5·1 + 0.5·1
    assert hypervolume(pts, (0.5, 0.5)) == pytest.approx(3.25)
    # dominated points and duplicates add nothing
    assert hypervolume([*pts, (1, 1), (2, 2), (0.5, 2.5)], (0, 0)) == pytest.approx(6.0)


def test_3d_inclusion_exclusion_by_hand():
    assert hypervolume([(1, 1, 1)], (0, 0, 0)) == pytest.approx(1.0)
    assert hypervolume([(2, 1, 1), (1, 2, 1)], (0, 0, 0)) == pytest.approx(2 + 2 - 1)
    # three 3-volume slabs: Σ|A| − Σ|A∩B| + |A∩B∩C| = 9 − 3 + 1
    assert hypervolume([(3, 1, 1), (1, 3, 1), (1, 1, 3)], (0, 0, 0)) == pytest.approx(7.0)
    assert hypervolume([(2, 2, 1), (1, 1, 3)], (0, 0, 0)) == pytest.approx(4 + 3 - 1)
    # shifted reference: (3,1,1),(1,3,1) over ref (0.5,0.5,0.5): 2.5·.5·.5 + .5·2.5·.5 − .5·.5·.5
    assert hypervolume([(3, 1, 1), (1, 3, 1)], (0.5, 0.5, 0.5)) == pytest.approx(0.625 + 0.625 - 0.125)


def test_points_not_above_reference_add_nothing_and_k1():
    assert hypervolume([(0, 5), (5, 0), (-1, 3)], (0, 0)) == 0.0
    assert hypervolume([(1, 1), (0, 5)], (0, 0)) == pytest.approx(1.0)
    assert hypervolume(np.zeros((0, 2)), (0, 0)) == 0.0
    assert hypervolume([(3,), (2,)], (1,)) == pytest.approx(2.0)


def test_invalid_input_raises():
    with pytest.raises(ValueError, match="objectives"):
        hypervolume([(1, 2)], (0, 0, 0))
    with pytest.raises(ValueError, match="NaN"):
        hypervolume([(1, float("nan"))], (0, 0))


def test_non_dominated_and_front():
    pts = np.array([[1, 3], [2, 2], [3, 1], [1, 1], [2, 2], [0.5, 3]])
    assert non_dominated(pts).tolist() == [True, True, True, False, True, False]
    np.testing.assert_array_equal(pareto_front(pts), [[1, 3], [2, 2], [3, 1]])
    assert dominates((2, 2), (1, 2)) and not dominates((2, 2), (2, 2)) and not dominates((3, 1), (1, 3))


# ---- properties against the grid oracle ---------------------------------------------------------------------------
coords = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0])  # repeated values: ties on every axis


@settings(max_examples=150, deadline=None)
@given(data=st.data(), k=st.integers(2, 4), n=st.integers(0, 7))
def test_hypervolume_matches_grid_oracle(data, k, n):
    pts = np.array(data.draw(st.lists(st.lists(coords, min_size=k, max_size=k), min_size=n, max_size=n)))
    pts = pts.reshape(n, k)
    ref = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.05, 0.2]), min_size=k, max_size=k)))
    assert hypervolume(pts, ref) == pytest.approx(grid_oracle(pts, ref), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5))
def test_hypervolume_invariances(seed, k):
    rng = np.random.default_rng(seed)
    pts = rng.random((6, k))
    ref = np.zeros(k)
    hv = hypervolume(pts, ref)
    assert 0 <= hv <= np.prod(pts.max(axis=0)) + 1e-12
    assert hypervolume(pts[rng.permutation(6)], ref) == pytest.approx(hv)  # order-free
    assert hypervolume(pts[:-1], ref) <= hv + 1e-12  # monotone in the set
    scale = rng.random(k) + 0.5
    assert hypervolume(pts * scale, ref) == pytest.approx(hv * np.prod(scale))  # scale-equivariant per axis
    front = pts[non_dominated(pts)]
    assert hypervolume(front, ref) == pytest.approx(hv)  # only the front matters
    for i in range(len(pts)):  # no point of the front is dominated by another point
        if non_dominated(pts)[i]:
            assert not any(dominates(q, pts[i]) for q in pts)


def test_monte_carlo_agrees_in_5d():
    rng = np.random.default_rng(0)
    pts = rng.random((12, 5)) * 0.6 + 0.4
    samples = rng.random((200_000, 5))
    covered = (pts[None, :, :] >= samples[:, None, :]).all(axis=2).any(axis=1)
    est, se = covered.mean(), covered.std() / np.sqrt(len(samples))
    assert abs(hypervolume(pts, np.zeros(5)) - est) < 4 * se
