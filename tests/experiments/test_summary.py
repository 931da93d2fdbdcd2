"""t-quantiles, confidence intervals, Pearson monotonicity and the centered moving average."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from varpo.experiments.summary import mean_ci, monotonicity, moving_average, pearson, t_quantile


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.7062047), (2, 4.3026527), (3, 3.1824463), (4, 2.7764451), (9, 2.2621572), (30, 2.0422725)],
)
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.95, df) == pytest.approx(expected, rel=1e-7)


def test_t_quantile_other_levels_and_normal_limit():
    assert t_quantile(0.99, 2) == pytest.approx(9.9248432, rel=1e-7)
    assert t_quantile(0.90, 5) == pytest.approx(2.0150484, rel=1e-7)
    assert t_quantile(0.95, 2000) == pytest.approx(1.9611520, rel=1e-6)


def test_mean_ci():
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci.mean == 2.0 and ci.n == 3 and ci.std == pytest.approx(1.0)
    assert ci.half_width == pytest.approx(4.3026527 / math.sqrt(3), rel=1e-7)
    assert ci.low < 2.0 < ci.high
    one = mean_ci([0.7, float("nan")])
    assert one.n == 1 and math.isnan(one.half_width) and one.format() == "0.700 (n=1)"
    assert mean_ci([]).format() == "n/a"


def test_pearson_and_monotonicity():
    assert monotonicity([0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert monotonicity([0.4, 0.3, 0.2]) == pytest.approx(-1.0)
    assert math.isnan(monotonicity([0.5, 0.5, 0.5])) and math.isnan(monotonicity([0.5]))
    rng = np.random.default_rng(0)
    x, y = rng.random(20), rng.random(20)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    # index vs step: identical for evenly spaced evaluations (Pearson is affine-invariant)
    assert pearson(np.arange(5) * 50, y[:5]) == pytest.approx(monotonicity(y[:5]))


def _naive_centered_mean(x, w):
    half = w // 2
    out = []
    for i in range(len(x)):
        window = [v for v in x[max(0, i - half) : i - half + w] if np.isfinite(v)]
        out.append(np.mean(window) if window else np.nan)
    return np.array(out)


@settings(max_examples=80, deadline=None)
@given(
    x=st.lists(st.one_of(st.floats(-5, 5), st.just(float("nan"))), min_size=0, max_size=40),
    w=st.integers(1, 16),
)
def test_moving_average_matches_naive(x, w):
    np.testing.assert_allclose(moving_average(x, w), _naive_centered_mean(np.array(x, dtype=float), w), atol=1e-9)


def test_moving_average_window_15_is_centered():
    x = np.arange(40, dtype=float)
    y = moving_average(x, 15)
    np.testing.assert_allclose(y[7:-7], x[7:-7])  # linear series: a centered mean is the identity inside
    assert y[0] == pytest.approx(np.mean(x[:8]))  # edges shrink the window (pandas min_periods=1)
