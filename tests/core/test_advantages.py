"""Hand-computed values, loop-oracle equivalence and edge cases for every advantage method."""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import varpo
from tests.core.oracle import oracle_advantages

# --------------------------------------------------------------------------------------------------------------
# Two groups, shuffled order, unequal sizes, K=2 (accuracy, format), w = (0.5, 0.5), eps = 0, ddof = 1.
#   group 7 (4 samples): [1,1] [1,0] [0,1] [0,0]  -> dev_acc = ±.5 (+,+,-,-), dev_fmt = ±.5 (+,-,+,-)
#                        σ_acc = σ_fmt = sqrt(4·.25/3) = sqrt(1/3) = .577350 (uncorrelated components)
#   group 3 (2 samples): [1,1] [0,1]          -> dev_acc = ±.5, σ_acc = sqrt(.5) = .707107, fmt constant σ = 0
# rows in batch order: ids = [7, 3, 7, 7, 3, 7]
# --------------------------------------------------------------------------------------------------------------
REWARDS = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
IDS = torch.tensor([7, 3, 7, 7, 3, 7])
S = 1 / math.sqrt(3)  # σ of a ±.5 column of 4


def _rvpo_x(z_acc: float, z_fmt: float, k: float = 1.0) -> float:
    return -math.log(0.5 * math.exp(-k * z_acc) + 0.5 * math.exp(-k * z_fmt)) / k


def _whiten(x: list[float]) -> list[float]:
    mu = sum(x) / len(x)
    sd = math.sqrt(sum((v - mu) ** 2 for v in x) / (len(x) - 1))
    return [(v - mu) / sd for v in x]


_zA = 0.5 / S  # .866025: |z| of every entry in group 7
_zB = 0.5 / math.sqrt(0.5)  # .707107: |z_acc| in group 3
HAND = {
    # c = .5(dev_acc + dev_fmt): group 7 -> [.5, 0, 0, -.5], σ_c = sqrt(.5/3); group 3 -> ±.25, σ_c = sqrt(.125)
    "grpo": [
        0.5 / math.sqrt(0.5 / 3),
        0.25 / math.sqrt(0.125),
        0.0,
        0.0,
        -0.25 / math.sqrt(0.125),
        -0.5 / math.sqrt(0.5 / 3),
    ],
    "dr_grpo": [0.5, 0.25, 0.0, 0.0, -0.25, -0.5],
    # .5(z_acc + z_fmt): group 7 -> ±.866 or 0; group 3 -> .5·(±.707) + .5·0
    "ac": [_zA, 0.5 * _zB, 0.0, 0.0, -0.5 * _zB, -_zA],
    # c / (Σ w σ): group 7 -> c / S ; group 3 -> c / (.5·.707107) (format drops out: σ_fmt = 0)
    "dvao": [0.5 / S, 0.25 / (0.5 * math.sqrt(0.5)), 0.0, 0.0, -0.25 / (0.5 * math.sqrt(0.5)), -0.5 / S],
    # batch whitening of ac (ddof 1 over the 6 samples; the mean is 0)
    "gdpo": _whiten([_zA, 0.5 * _zB, 0.0, 0.0, -0.5 * _zB, -_zA]),
    # soft-min (k=1) of the z pairs, then batch whitening
    "rvpo": _whiten(
        [
            _rvpo_x(_zA, _zA),
            _rvpo_x(_zB, 0.0),
            _rvpo_x(_zA, -_zA),
            _rvpo_x(-_zA, _zA),
            _rvpo_x(-_zB, 0.0),
            _rvpo_x(-_zA, -_zA),
        ]
    ),
    # batch CV: acc [1,1,1,0,0,0] mean .5 sd sqrt(.3); fmt 4/6 ones, mean 2/3 sd sqrt(4/15)
    # -> w' = CV/ΣCV = (2-√2, √2-1) = (.585786, .414214); then RC + group z-score:
    #    group 7: c = [.5, d, -d, -.5] with d = (w'_acc - w'_fmt)/2 = (3-2√2)/2, σ_c = sqrt((.5 + 2d²)/3) = √2-1
    #    group 3: c = ±.5·w'_acc, σ_c = |c|·√2  ->  ±1/√2
    "saw": [
        0.5 / (math.sqrt(2) - 1),
        1 / math.sqrt(2),
        (3 - 2 * math.sqrt(2)) / 2 / (math.sqrt(2) - 1),
        -(3 - 2 * math.sqrt(2)) / 2 / (math.sqrt(2) - 1),
        -1 / math.sqrt(2),
        -0.5 / (math.sqrt(2) - 1),
    ],
}


@pytest.mark.parametrize("method", varpo.METHODS)
def test_hand_values_two_groups(method):
    out = varpo.compute_advantages(REWARDS, IDS, method=method, weights=[0.5, 0.5], eps=0.0)
    assert out.advantages.dtype == torch.float32 and out.advantages.shape == (6,)
    torch.testing.assert_close(out.advantages, torch.tensor(HAND[method], dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_hand_stats():
    out = varpo.compute_advantages(REWARDS, IDS, method="dvao", weights=[0.5, 0.5], eps=0.0, names=["acc", "fmt"])
    s = out.stats
    # group 7: w̃ = (.5, .5); group 3: w̃ = (1, 0)  -> mean over groups (.75, .25)
    assert s["weight/acc"] == pytest.approx(0.75) and s["weight/fmt"] == pytest.approx(0.25)
    assert s["frac_zero_std_groups"] == 0.0
    a = torch.tensor(HAND["dvao"])
    assert s["adv_abs_mean"] == pytest.approx(float(a.abs().mean()), rel=1e-6)
    assert s["adv_sq_mean"] == pytest.approx(float((a * a).mean()), rel=1e-6)
    assert s["adv_max_abs"] == pytest.approx(float(a.abs().max()), rel=1e-6)
    assert s["reward_mean/acc"] == pytest.approx(0.5) and s["reward_mean/fmt"] == pytest.approx(4 / 6)
    # group-std mean: acc (S + .707107)/2 ; fmt (S + 0)/2
    assert s["group_std_mean/acc"] == pytest.approx((S + math.sqrt(0.5)) / 2)
    assert s["group_std_mean/fmt"] == pytest.approx(S / 2)
    saw = varpo.compute_advantages(REWARDS, IDS, method="saw", eps=0.0, names=["acc", "fmt"]).stats
    assert saw["weight/acc"] == pytest.approx((2 - math.sqrt(2)) / 1.0, rel=1e-6)
    assert saw["saw_cv/acc"] == pytest.approx(math.sqrt(0.3) / 0.5, rel=1e-6)


# --------------------------------------------------------------------------------------------------------------
# Loop oracle vs vectorized: random groups in shuffled order, unequal sizes, missing rewards.
# --------------------------------------------------------------------------------------------------------------


@st.composite
def reward_batches(draw):
    k = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 7), min_size=1, max_size=8))
    ids = [g * 13 + 5 for g, size in enumerate(sizes) for _ in range(size)]
    perm = draw(st.permutations(range(len(ids))))
    ids = [ids[i] for i in perm]
    value = st.one_of(
        st.sampled_from([0.0, 1.0, -3.0, 3.0, 0.5]),
        st.floats(-10, 10, allow_nan=False, width=32),
        st.just(float("nan")),
    )
    rewards = [[draw(value) for _ in range(k)] for _ in ids]
    weights = draw(st.lists(st.floats(0.05, 3.0), min_size=k, max_size=k))
    return rewards, ids, weights


@pytest.mark.parametrize("method", varpo.METHODS)
@settings(max_examples=60, deadline=None)
@given(batch=reward_batches(), ddof=st.sampled_from([0, 1]), eps=st.sampled_from([1e-6, 1e-4]))
def test_matches_loop_oracle(method, batch, ddof, eps):
    rewards, ids, weights = batch
    got = varpo.compute_advantages(
        torch.tensor(rewards, dtype=torch.float64),
        torch.tensor(ids),
        method=method,
        weights=weights,
        eps=eps,
        ddof=ddof,
    ).advantages
    want = oracle_advantages(rewards, ids, method, weights, eps=eps, ddof=ddof)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32), rtol=2e-4, atol=2e-4)


@pytest.mark.skipif(
    os.environ.get("VARPO_HYPOTHESIS_PROFILE", "deterministic") != "deterministic",
    reason="a random-search hypothesis profile was asked for",
)
def test_property_tests_draw_the_same_examples_every_run():
    """tests/conftest.py loads a derandomized profile: the oracle test above inherits it, and two runs of a property
    test draw identical examples."""
    assert test_matches_loop_oracle._hypothesis_internal_use_settings.derandomize
    assert settings.default.derandomize and settings.default.database is None

    def draws() -> list[bytes]:
        seen = []

        @settings(max_examples=20)
        @given(st.binary(min_size=16, max_size=16))
        def prop(blob):
            seen.append(blob)

        prop()
        return seen

    first = draws()
    assert len(set(first)) > 1 and first == draws()


@pytest.mark.parametrize("option", [dict(saw_base="gdpo"), dict(saw_offsets=[3.0, 0.0])])
def test_saw_options_match_oracle(option):
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(-3, 4, (48, 2), generator=g).double()
    ids = torch.randperm(48, generator=g) % 6
    got = varpo.compute_advantages(rewards, ids, method="saw", **option).advantages
    want = oracle_advantages(rewards.tolist(), ids.tolist(), "saw", **option)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["softmin", "explicit"])
@pytest.mark.parametrize("k", [0.3, 2.0])
def test_rvpo_options_match_oracle(variant, k):
    g = torch.Generator().manual_seed(1)
    rewards = torch.rand(40, 3, generator=g).double().round(decimals=1)
    ids = torch.randperm(40, generator=g) % 5
    got = varpo.compute_advantages(rewards, ids, method="rvpo", rvpo_k=k, rvpo_variant=variant, rvpo_beta=0.7)
    want = oracle_advantages(rewards.tolist(), ids.tolist(), "rvpo", rvpo_k=k, rvpo_variant=variant, rvpo_beta=0.7)
    torch.testing.assert_close(got.advantages, torch.tensor(want, dtype=torch.float32), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------
# Fixed (non-random) oracle cases with unscorable rows: three groups of unequal size in shuffled order, K = 2, two
# rows with every reward missing (unscorable: out of every statistic, advantage 0) and three with one missing.
# They pin the masked batch whitening (gdpo, rvpo, saw with gdpo base) with both ddof values, and SAW's batch
# count (a component's CV is over its present rows only), independently of what a random draw happens to cover.
# --------------------------------------------------------------------------------------------------------------
NAN = float("nan")
MISSING_IDS = [0, 1, 0, 2, 1, 0, 2, 1, 2, 0, 2, 2]
MISSING_REWARDS = [
    [1.0, 0.5],
    [NAN, NAN],  # unscorable
    [0.0, NAN],
    [2.0, 1.0],
    [1.0, 0.0],
    [NAN, NAN],  # unscorable
    [0.0, 0.25],
    [3.0, 0.75],
    [1.0, NAN],
    [0.5, 1.0],
    [NAN, 0.5],
    [1.5, 0.0],
]
FIXED_CASES = {
    "gdpo": dict(method="gdpo"),
    "rvpo-softmin": dict(method="rvpo", rvpo_k=2.0),
    "rvpo-explicit": dict(method="rvpo", rvpo_variant="explicit", rvpo_beta=0.7),
    "saw": dict(method="saw"),
    "saw-gdpo": dict(method="saw", saw_base="gdpo"),
    "saw-offsets": dict(method="saw", saw_offsets=[3.0, 0.0]),
}


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("case", list(FIXED_CASES))
def test_unscorable_rows_match_oracle(case, ddof):
    options = dict(FIXED_CASES[case])
    method = options.pop("method")
    got = varpo.compute_advantages(
        torch.tensor(MISSING_REWARDS, dtype=torch.float64),
        torch.tensor(MISSING_IDS),
        method=method,
        weights=[1.0, 2.0],
        ddof=ddof,
        **options,
    ).advantages
    want = oracle_advantages(MISSING_REWARDS, MISSING_IDS, method, [1.0, 2.0], ddof=ddof, **options)
    assert got[1] == 0 and got[5] == 0  # unscorable rows
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_saw_batch_cv_counts_present_rows_only():
    """Hand values: the batch CV of a component is over the rows where it is present (9 and 8 of 12 rows)."""
    rewards = torch.tensor(MISSING_REWARDS, dtype=torch.float64)
    stats = varpo.compute_advantages(rewards, torch.tensor(MISSING_IDS), method="saw", names=["a", "b"]).stats
    for j, name in enumerate(["a", "b"]):
        vals = [r[j] for r in MISSING_REWARDS if math.isfinite(r[j])]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
        assert stats[f"saw_cv/{name}"] == pytest.approx(std / (abs(mean) + 1e-8), rel=1e-9)
    # a: 9 present values, sum 10, sum of squares 18.5 -> mean 10/9, σ² = (18.5 - 100/9) / 8 = 133/144
    assert stats["saw_cv/a"] == pytest.approx(math.sqrt(133 / 144) / (10 / 9 + 1e-8), rel=1e-9)


# SAW with a near-zero batch mean: component a's values are ~1e-8 with mean 1.25e-9, so its CV σ / (|μ| + 1e-8) is
# set by the official CV eps (1e-8, in reward units) — without it the CV is 8x larger, with eps = 1e-6 ~80x
# smaller; b is on the same scale, so the weights, and hence the advantages, depend on it. eps = 0 for the
# advantage eps (a different eps), so the z-scores are scale-free at this tiny scale.
NEAR_ZERO_IDS = [0, 1, 0, 1, 1, 0, 0, 1]
NEAR_ZERO_REWARDS = [
    [1e-8, 0.0],
    [-1e-8, 1e-8],
    [2e-8, 2e-8],
    [-1.5e-8, 1e-8],
    [0.5e-8, 3e-8],
    [-1e-8, 0.0],
    [1e-8, 1e-8],
    [0.0, 2e-8],
]


@pytest.mark.parametrize("saw_base", ["grpo", "gdpo"])
@pytest.mark.parametrize("scale", [1.0, 2.0**20], ids=["tiny", "scaled"])
@pytest.mark.parametrize("missing", [False, True], ids=["all-present", "one-missing"])
def test_saw_near_zero_mean_uses_the_cv_eps(saw_base, scale, missing):
    """Both SAW routes: every reward present (CV from the pooled group statistics) and one missing a-entry (the
    exact-sum route over the rewards). At scale 2^20 the mean is ~1e-3 and the eps is a ~1e-5 relative effect on
    the CV, still pinned by the hand value."""
    rows, ids = NEAR_ZERO_REWARDS, NEAR_ZERO_IDS
    if missing:
        rows, ids = [*rows, [NAN, 1.5e-8]], [*ids, 0]
    rewards = [[v * scale for v in row] for row in rows]
    out = varpo.compute_advantages(
        torch.tensor(rewards, dtype=torch.float64),
        torch.tensor(ids),
        method="saw",
        saw_base=saw_base,
        eps=0.0,
        names=["a", "b"],
    )
    want = oracle_advantages(rewards, ids, "saw", eps=0.0, saw_base=saw_base)
    torch.testing.assert_close(out.advantages, torch.tensor(want, dtype=torch.float32), rtol=1e-5, atol=1e-6)
    a = [r[0] for r in rewards if math.isfinite(r[0])]
    mean = sum(a) / len(a)
    std = math.sqrt(sum((v - mean) ** 2 for v in a) / (len(a) - 1))
    assert mean == pytest.approx(1.25e-9 * scale, rel=1e-12)
    assert out.stats["saw_cv/a"] == pytest.approx(std / (abs(mean) + 1e-8), rel=1e-9)


def test_contiguous_fast_path_equals_general_path():
    g = torch.Generator().manual_seed(2)
    rewards = torch.rand(64, 3, generator=g)
    ids = torch.arange(8).repeat_interleave(8)  # TRL layout -> dense path
    perm = torch.randperm(64, generator=g)
    for method in varpo.METHODS:
        dense = varpo.compute_advantages(rewards, ids, method=method).advantages
        scattered = varpo.compute_advantages(rewards[perm], ids[perm], method=method).advantages
        torch.testing.assert_close(dense[perm], scattered, rtol=1e-5, atol=1e-6)  # float32 outputs


def test_group_index_layouts():
    from varpo.stats import group_index

    assert group_index(torch.tensor([4, 4, 9, 9, 1, 1])).group_size == 2
    assert group_index(torch.tensor([4, 4, 9, 9, 9])).group_size is None  # unequal sizes
    idx = group_index(torch.tensor([4, 9, 4, 9]))  # a repeated id across runs -> sort path
    assert idx.num_groups == 2 and idx.inverse.tolist() == [0, 1, 0, 1]


# --------------------------------------------------------------------------------------------------------------
# Edge cases: never NaN/inf.
# --------------------------------------------------------------------------------------------------------------

EDGE_CASES = {
    "nan_rewards": (
        torch.tensor([[1.0, float("nan")], [0.0, 1.0], [float("nan"), float("nan")], [1.0, 0.0]]),
        torch.tensor([0, 0, 0, 0]),
    ),
    "inf_rewards": (torch.tensor([[float("inf"), 1.0], [0.0, -float("inf")], [1.0, 0.0]]), torch.tensor([0, 0, 0])),
    "constant_groups": (torch.ones(6, 2), torch.tensor([0, 0, 0, 1, 1, 1])),
    "size_one_groups": (torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1, 2])),
    "huge_rewards": (
        torch.tensor([[1e30, -1e30], [-1e30, 1e30], [1e30, 1e30], [0.0, 0.0]]),
        torch.tensor([0, 0, 1, 1]),
    ),
    "k_equals_one": (torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]), torch.tensor([3, 3, 3, 8, 8])),
    "all_missing": (torch.full((4, 2), float("nan")), torch.tensor([0, 0, 1, 1])),
}


@pytest.mark.parametrize("method", varpo.METHODS)
@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_no_nan_or_inf(method, case):
    rewards, ids = EDGE_CASES[case]
    out = varpo.compute_advantages(rewards, ids, method=method)
    assert torch.isfinite(out.advantages).all()
    assert all(math.isfinite(v) for v in out.stats.values())
    # absent is not 0: stats of components missing from the whole batch are flagged absent and left out of
    # present_stats (what the trainers log); weights and missing fractions are always present
    absent = {k for k in out.stats if case == "all_missing" and not k.startswith(("weight/", "frac_"))}
    if case in ("size_one_groups", "all_missing"):  # no group with 2 scorable samples: no signal fraction
        absent |= {k for k in out.stats if k.startswith("frac_signal/")}
    assert out.absent == absent
    assert set(out.present_stats) == set(out.stats) - absent
    if case in ("constant_groups", "size_one_groups", "all_missing"):
        assert torch.equal(out.advantages, torch.zeros_like(out.advantages))
        assert out.stats["frac_zero_std_groups"] == 1.0


def test_missing_component_contributes_zero():
    # sample 1 misses format: its format deviation is 0, it still counts for accuracy.
    rewards = torch.tensor([[1.0, 1.0], [0.0, float("nan")], [0.0, 0.0]])
    out = varpo.compute_advantages(rewards, torch.zeros(3, dtype=torch.long), method="dr_grpo", weights=[1.0, 1.0])
    # acc mean 1/3 -> dev (2/3, -1/3, -1/3); fmt mean over {1, 0} = .5 -> dev (.5, 0, -.5)
    torch.testing.assert_close(out.advantages, torch.tensor([2 / 3 + 0.5, -1 / 3, -1 / 3 - 0.5]))
    unscorable = torch.tensor([[1.0, 1.0], [float("nan"), float("nan")], [0.0, 0.0]])
    adv = varpo.compute_advantages(unscorable, torch.zeros(3, dtype=torch.long), method="gdpo").advantages
    assert adv[1] == 0.0 and adv[0] > 0 > adv[2]


def test_inputs_are_validated_with_one_line_errors():
    r, ids = REWARDS, IDS
    cases = [
        (dict(method="nope"), "unknown advantage method"),
        (dict(method="grpo", weights=[1.0]), "weights must have K=2"),
        (dict(method="grpo", weights=[-1.0, 1.0]), "non-negative"),
        (dict(method="grpo", weights=[0.0, 0.0]), "not all zero"),
        (dict(method="rvpo", rvpo_k=0.0), "rvpo_k"),
        (dict(method="saw", saw_base="x"), "saw_base"),
        (dict(method="grpo", ddof=2), "ddof"),
        (dict(method="grpo", epsilon=1e-4), "unknown advantage option"),
        (dict(method="saw", saw_offsets=[1.0]), "saw_offsets must have K=2"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg) as err:
            varpo.compute_advantages(r, ids, **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="group_ids"):
        varpo.compute_advantages(r, IDS[:3])


def test_sigma_ema_shrinks_small_group_noise_and_zero_shrink_is_exact():
    g = torch.Generator().manual_seed(3)
    rewards = torch.randint(0, 2, (32, 2), generator=g).float()
    ids = torch.arange(8).repeat_interleave(4)
    exact = varpo.compute_advantages(rewards, ids, method="dvao").advantages
    same = varpo.compute_advantages(rewards, ids, method="dvao", sigma_ema=varpo.SigmaEMA(shrink=0.0)).advantages
    torch.testing.assert_close(exact, same)
    ema = varpo.SigmaEMA(decay=0.5, shrink=0.5)
    varpo.compute_advantages(rewards, ids, method="dvao", sigma_ema=ema)
    first = ema.value.clone()
    varpo.compute_advantages(torch.ones(32, 2), ids, method="dvao", sigma_ema=ema)  # σ = 0 everywhere
    torch.testing.assert_close(ema.value, 0.5 * first)  # decayed toward 0
    restored = varpo.SigmaEMA()
    restored.load_state_dict(ema.state_dict())
    torch.testing.assert_close(restored.value, ema.value)
    # a group where the format is constant: σ̃_fmt = shrink·σ̄_fmt > 0 stays in the denominator (shrinkage), the
    # numerator is unchanged; σ̄ already includes this batch (σ_acc = .707, σ_fmt = 0, decay .5).
    r = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    prev = ema.value.clone()
    damped = varpo.compute_advantages(r, torch.zeros(2, dtype=torch.long), method="dvao", sigma_ema=ema).advantages
    bar = 0.5 * prev + 0.5 * torch.tensor([math.sqrt(0.5), 0.0], dtype=torch.float64)
    tilde = 0.5 * torch.tensor([math.sqrt(0.5), 0.0], dtype=torch.float64) + 0.5 * bar
    want = 0.5 * torch.tensor([0.5, -0.5], dtype=torch.float64) / (0.5 * tilde.sum() + 1e-6)
    torch.testing.assert_close(damped, want.float())


@pytest.mark.parametrize("method", varpo.METHODS)
def test_constant_group_with_rounding_noise_is_exactly_zero(method):
    # sum(0.1 × 16) / 16 != 0.1 in floating point; with eps = 0 a naive z-score would be ±1 noise.
    rewards = torch.cat(
        [torch.full((16, 1), 0.1, dtype=torch.float64), torch.full((16, 1), 0.7, dtype=torch.float64)], 1
    )
    out = varpo.compute_advantages(rewards, torch.zeros(16, dtype=torch.long), method=method, eps=0.0)
    assert torch.equal(out.advantages, torch.zeros(16))
