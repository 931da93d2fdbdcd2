"""varpo.significance against hand values, textbook values and brute-force oracles."""

from __future__ import annotations

import itertools
import math

import pytest

from varpo import significance as sg


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 5, 2.5706), (0.975, 30, 2.0423), (0.8, 10, 0.8791)],
)
def test_t_quantile_matches_tables(p, df, expected):
    assert sg.t_quantile(p, df) == pytest.approx(expected, abs=1e-4)
    assert sg.t_quantile(1 - p, df) == pytest.approx(-expected, abs=1e-4)


def test_t_interval_is_mean_and_t_halfwidth():
    mean, half = sg.t_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert half == pytest.approx(3.1824 * math.sqrt(5 / 3) / 2, abs=1e-3)
    assert sg.t_interval([1.0])[1] == math.inf


def test_sign_flip_exact_values():
    assert sg.sign_flip_test([1, 1, 1, 1]) == pytest.approx(2 / 16)  # 4 pairs can never reach 0.05
    assert sg.sign_flip_test([1, 2, 3, 4, 5, 6]) == pytest.approx(2 / 64)
    assert sg.sign_flip_test([1, -1]) == 1.0
    assert sg.min_p_sign_flip(4) == 0.125 and sg.min_p_sign_flip(6) == pytest.approx(0.03125)


def test_sign_flip_matches_brute_force_oracle():
    d = [0.3, -0.1, 0.5, 0.2, -0.4, 0.25, 0.05]
    obs = abs(sum(d))
    stats = [abs(sum(s * x for s, x in zip(signs, d))) for signs in itertools.product((1, -1), repeat=len(d))]
    assert sg.sign_flip_test(d) == pytest.approx(sum(s >= obs - 1e-12 for s in stats) / len(stats))


def test_sign_flip_monte_carlo_beyond_the_exact_limit():
    p = sg.sign_flip_test([1.0] * 20)  # 2^20 > EXACT_LIMIT; exact p = 2 / 2^20
    assert 0 < p <= 2e-5


def test_permutation_exact_values():
    assert sg.permutation_test([1, 1, 1, 1], [0, 0, 0, 0]) == pytest.approx(2 / 70)
    assert sg.permutation_test([0.5] * 3, [0.5] * 3) == 1.0
    assert sg.min_p_permutation(4, 4) == pytest.approx(2 / 70)


def test_permutation_matches_brute_force_oracle():
    a, b = [0.9, 0.7, 0.8, 0.3], [0.2, 0.4, 0.75, 0.1, 0.0]
    pooled = a + b
    obs = abs(sum(a) / 4 - sum(b) / 5)
    stats = [
        abs(sum(pooled[i] for i in idx) / 4 - (sum(pooled) - sum(pooled[i] for i in idx)) / 5)
        for idx in itertools.combinations(range(9), 4)
    ]
    assert sg.permutation_test(a, b) == pytest.approx(sum(s >= obs - 1e-12 for s in stats) / len(stats))


def test_fisher_exact_textbook():
    assert sg.fisher_exact(3, 4, 1, 4) == pytest.approx(0.4857, abs=1e-4)  # lady tasting tea, two-sided
    assert sg.fisher_exact(4, 4, 0, 4) == pytest.approx(2 / 70)
    assert sg.fisher_exact(1, 2, 1, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        sg.fisher_exact(5, 4, 0, 4)


def test_clopper_pearson_textbook():
    lo, hi = sg.clopper_pearson(0, 5)
    assert lo == 0 and hi == pytest.approx(0.5218, abs=1e-4)
    lo, hi = sg.clopper_pearson(6, 6)
    assert lo == pytest.approx(0.5407, abs=1e-4) and hi == 1
    lo, hi = sg.clopper_pearson(3, 10)
    assert (lo, hi) == (pytest.approx(0.0667, abs=1e-4), pytest.approx(0.6525, abs=1e-4))


def test_holm_step_down():
    assert sg.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert sg.holm([0.5]) == [0.5]
    assert sg.holm([0.9, 0.4]) == pytest.approx([0.9, 0.8])
    assert sg.holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1, monotone


def test_prompt_cluster_se_and_unit_se():
    assert sg.prompt_cluster_se([1, 0, 1, 0]) == pytest.approx(math.sqrt(1 / 3) / 2)
    assert sg.prompt_cluster_se([1, None, 0]) == pytest.approx(math.sqrt(0.5) / math.sqrt(2))
    assert math.isnan(sg.prompt_cluster_se([1.0]))
    # seeds that agree by chance cannot be more precise than the evaluation sample
    assert sg.unit_se([0.5, 0.5, 0.5], [0.1, 0.1, 0.1]) == pytest.approx(math.sqrt(0.03) / 3)
    assert sg.unit_se([0.0, 1.0], [0.01, 0.01]) == pytest.approx(0.5)


def test_mde_normal_and_t():
    assert sg.mde(1.0) == pytest.approx(1.95996 + 0.84162, abs=1e-4)
    assert sg.mde(0.1, df=5) == pytest.approx((2.5706 + 0.9195) * 0.1, abs=1e-3)
    assert sg.mde(math.inf) == math.inf


def test_results_family_and_fields():
    diff = sg.paired("length", [0.8, 0.9, 0.85, 0.7, 0.95, 0.9])
    other = sg.paired("alpha", [0.01, -0.02, 0.0, 0.01, -0.01, 0.02])
    fam = sg.holm_family([diff, other])
    assert fam[0].p == pytest.approx(2 / 64) and fam[0].p_holm == pytest.approx(2 / 64 * 2)
    assert fam[0].family == 2 and not fam[0].established  # Holm over 2 metrics: 0.0625 > 0.05
    assert len(fam[0].cells()) == len(sg.Result.FIELDS)
    assert "MDE" in fam[1].verdict()
    two = sg.holm_family([sg.two_sample("length", [0.9, 0.8, 0.85, 0.9], [0.0, 0.05, 0.0, 0.1])])[0]
    assert two.p == pytest.approx(2 / 70) and two.established and two.verdict() == "established (+)"
    assert two.low < two.estimate < two.high
    assert "| metric |" in sg.table(fam)
