"""Property-based fuzzing of every estimator, policy loss and aggregation mode (hypothesis, bounded for CI).

Inputs mix O(1) values with magnitudes up to 1e30, NaN (missing rewards / padding) and ±inf, in float32, float64
and bfloat16. Properties: outputs, statistics, metrics and gradients are finite; permuting samples permutes the
outputs (so reordering groups cannot change other groups); bad arguments raise a one-line ``ValueError``.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import varpo
from varpo.advantages import ESTIMATORS

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
DTYPES = st.sampled_from([torch.float32, torch.float64, torch.bfloat16])
MAGNITUDES = [0.0, 1.0, -1.0, 0.5, 3.0, -3.0, 1e-30, -1e-30, 1e30, -1e30, 7.0, 1e10]


def _values(draw, n: int, missing: list[float]) -> list[float]:
    """n values: mostly O(1) uniform, sometimes an extreme magnitude or a missing marker."""
    pick = st.one_of(
        st.floats(-2.0, 2.0, allow_nan=False, width=32),
        st.sampled_from(MAGNITUDES),
        st.sampled_from(missing) if missing else st.just(0.0),
    )
    return [draw(pick) for _ in range(n)]


@st.composite
def reward_batches(draw):
    k = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    n = sum(sizes)
    dtype = draw(DTYPES)
    rewards = torch.tensor(_values(draw, n * k, [math.nan, math.inf, -math.inf]), dtype=torch.float64)
    rewards = rewards.view(n, k).to(dtype)
    ids = torch.repeat_interleave(torch.tensor(draw(st.permutations(range(10)))[: len(sizes)]), torch.tensor(sizes))
    perm = torch.tensor(draw(st.permutations(range(n))))
    weights = draw(st.none() | st.lists(st.floats(1e-3, 1e3), min_size=k, max_size=k))
    eps = draw(st.sampled_from([1e-6, 1e-4, 0.0]))
    return rewards, ids, perm, weights, eps


def _options(method: str, k: int) -> dict:
    return {
        "saw": {"saw_offsets": [3.0] + [0.0] * (k - 1)},
        "rvpo": {"rvpo_k": 2.0},
        "dvao": {"sigma_ema": varpo.SigmaEMA(0.9, 0.5)},
    }.get(method, {})


def _group_scale(rewards: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Per sample: the largest finite |r| in its group (dr_grpo's rounding is relative to it)."""
    r = torch.nan_to_num(rewards.double(), nan=0.0, posinf=0.0, neginf=0.0).abs().amax(1)
    return torch.stack([r[ids == g].max() for g in ids.tolist()])


@pytest.mark.parametrize("method", list(ESTIMATORS))
@FUZZ
@given(batch=reward_batches())
def test_estimators_finite_and_permutation_invariant(method, batch):
    rewards, ids, perm, weights, eps = batch
    k = rewards.shape[1]
    out = varpo.compute_advantages(rewards, ids, method, weights, eps=eps, **_options(method, k))
    adv = out.advantages
    assert adv.dtype == torch.float32 and adv.shape == (rewards.shape[0],)
    assert torch.isfinite(adv).all(), adv
    assert all(math.isfinite(v) for v in out.stats.values()), out.stats
    unscorable = ~torch.isfinite(rewards.double()).any(1)
    assert torch.equal(adv[unscorable], torch.zeros(int(unscorable.sum())))
    again = varpo.compute_advantages(rewards[perm], ids[perm], method, weights, eps=eps, **_options(method, k))
    tol = 1e-4 + (1e-12 * _group_scale(rewards, ids) if method == "dr_grpo" else 0.0)
    assert ((again.advantages.double() - adv[perm].double()).abs() <= tol).all()


@pytest.mark.parametrize("method", ["grpo", "ac", "dvao"])
@FUZZ
@given(batch=reward_batches())
def test_groups_are_independent(method, batch):
    """Group-local methods: a group's advantages do not depend on the other groups in the batch."""
    rewards, ids, _, weights, eps = batch
    full = varpo.compute_advantages(rewards, ids, method, weights, eps=eps).advantages
    first = ids == ids[0]
    alone = varpo.compute_advantages(rewards[first], ids[first], method, weights, eps=eps).advantages
    assert torch.equal(full[first], alone)


BAD_OPTIONS = [
    {"eps": -1.0},
    {"eps": math.nan},
    {"eps": "x"},
    {"eps": True},
    {"ddof": 2},
    {"ddof": True},
    {"ddof": 0.5},
    {"ddof": "1"},
    {"rvpo_k": 0.0},
    {"rvpo_k": math.inf},
    {"rvpo_k": "x"},
    {"rvpo_beta": -1.0},
    {"rvpo_beta": math.nan},
    {"saw_base": "x"},
    {"saw_base": 1},
    {"rvpo_variant": "hard"},
    {"sigma_ema": 0.9},
    {"names": 5},
    {"names": "ab"},
    {"names": [1, 2]},
    {"names": ["a"]},
    {"saw_offsets": [math.nan, 0.0]},
    {"saw_offsets": "xy"},
    {"saw_offsets": [1.0, 2.0, 3.0]},
    {"weights": [-1.0, 1.0]},
    {"weights": [0.0, 0.0]},
    {"weights": [math.nan, 1.0]},
    {"weights": [1.0]},
    {"weights": [1e308, 1e308]},
    {"weights": ["a", "b"]},
    {"method": "nope"},
    {"method": None},
    {"group_ids": ["a", "a", "b", "b"]},
    {"group_ids": [0.5, 0.5, 1.0, 1.0]},
    {"group_ids": [0, 0, 1]},
    {"rewards": [["a", "b"]] * 4},
    {"rewards": torch.zeros(4, 0)},
    {"bogus": 1},
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=lambda b: repr(b)[:40])
def test_estimators_reject_bad_arguments_with_one_line_value_errors(bad):
    kwargs = {"rewards": torch.rand(4, 2), "group_ids": [0, 0, 1, 1], "method": "saw", "weights": None, **bad}
    with pytest.raises(ValueError) as err:
        varpo.compute_advantages(**kwargs)
    assert "\n" not in str(err.value)


# ---- policy losses ------------------------------------------------------------------------------------------------
@st.composite
def loss_batches(draw):
    groups, g, t = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 6))
    b = groups * g
    dtype = draw(DTYPES)
    logp = -torch.tensor(_values(draw, b * t, []), dtype=torch.float64).abs().view(b, t)
    old = -torch.tensor(_values(draw, b * t, [math.inf]), dtype=torch.float64).abs().view(b, t)  # -inf allowed
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))).view(b, t)
    garbage = torch.tensor(_values(draw, b * t, [math.nan, math.inf, -math.inf]), dtype=torch.float64).view(b, t)
    logp = torch.where(mask, logp, garbage)  # padding may hold anything
    adv = torch.tensor(_values(draw, b, []), dtype=torch.float64)
    ids = torch.arange(groups).repeat_interleave(g)
    perm = torch.tensor(draw(st.permutations(range(b))))
    options = draw(
        st.fixed_dictionaries(
            {
                "clip_ratio_c": st.sampled_from([None, 3.0]),
                "importance_sampling_level": st.sampled_from(["token", "sequence"]),
            }
        )
    )
    return logp.to(dtype), old.to(dtype), adv.to(dtype), mask, ids, perm, g, options


def _policy(name, logp, old, adv, mask, ids, g, options):
    if name == "gvpo":
        return varpo.policy_loss(
            name, logprobs=logp, old_logprobs=old, advantages=adv, mask=mask, group_ids=ids, group_size=g
        )
    return varpo.policy_loss(name, logprobs=logp, old_logprobs=old, advantages=adv, mask=mask, **options)


@pytest.mark.parametrize("name", list(varpo.POLICY_LOSSES))
@FUZZ
@given(batch=loss_batches())
def test_policy_losses_finite_with_finite_gradients_and_permutation_invariant(name, batch):
    logp, old, adv, mask, ids, perm, g, options = batch
    logp = logp.clone().requires_grad_()
    loss, metrics = _policy(name, logp, old, adv, mask, ids, g, options)
    agg_mask = mask if name == "ppo_clip" else torch.ones_like(loss, dtype=torch.bool)
    total = varpo.aggregate_loss(loss, agg_mask, "token_mean")
    (grad,) = torch.autograd.grad(total, logp)
    assert torch.isfinite(total) and torch.isfinite(grad).all()
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert torch.isfinite(loss[agg_mask]).all()
    again, _ = _policy(name, logp.detach()[perm], old[perm], adv[perm], mask[perm], ids[perm], g, options)
    valid = agg_mask[perm]
    torch.testing.assert_close(again.detach()[valid], loss.detach()[perm][valid])


BAD_LOSS_ARGS = [
    ("ppo_clip", {"clip_low": -0.1}),
    ("ppo_clip", {"clip_low": 1.5}),
    ("ppo_clip", {"clip_low": math.nan}),
    ("ppo_clip", {"clip_low": "x"}),
    ("ppo_clip", {"clip_high": -1.0}),
    ("ppo_clip", {"beta": -1.0}),
    ("ppo_clip", {"beta": math.nan}),
    ("ppo_clip", {"clip_ratio_c": 1.0}),
    ("ppo_clip", {"clip_ratio_c": "3"}),
    ("ppo_clip", {"importance_sampling_level": "x"}),
    ("ppo_clip", {"beta": 0.1}),
    ("ppo_clip", {"mask": torch.full((4, 3), 0.5)}),
    ("ppo_clip", {"mask": -torch.ones(4, 3)}),
    ("ppo_clip", {"advantages": torch.ones(3)}),
    ("ppo_clip", {"old_logprobs": torch.zeros(4, 2)}),
    ("gvpo", {"gvpo_beta": 0.0}),
    ("gvpo", {"gvpo_beta": math.nan}),
    ("gvpo", {"group_ids": ["a"] * 4}),
    ("gvpo", {"group_ids": torch.tensor([0, 0, 0, 1])}),
    ("gvpo", {"group_ids": torch.tensor([0, 0, 1])}),
    ("gvpo", {"group_size": 2.0}),
    ("gvpo", {"mask": torch.full((4, 3), 2.0)}),
    ("nope", {}),
]


@pytest.mark.parametrize(("name", "bad"), BAD_LOSS_ARGS, ids=lambda b: repr(b)[:40])
def test_policy_losses_reject_bad_arguments_with_one_line_value_errors(name, bad):
    kwargs = {
        "logprobs": torch.zeros(4, 3),
        "old_logprobs": torch.zeros(4, 3),
        "advantages": torch.ones(4),
        "mask": torch.ones(4, 3),
    }
    if name == "gvpo":
        kwargs["group_ids"] = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError) as err:
        varpo.policy_loss(name, **{**kwargs, **bad})
    assert "\n" not in str(err.value)


# ---- aggregation --------------------------------------------------------------------------------------------------
@st.composite
def token_losses(draw):
    b, t = draw(st.integers(0, 5)), draw(st.integers(1, 6))
    dtype = draw(DTYPES)
    values = torch.tensor(_values(draw, b * t, []), dtype=torch.float64).view(b, t)
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t)), dtype=torch.bool).view(b, t)
    garbage = torch.tensor(_values(draw, b * t, [math.nan, math.inf, -math.inf]), dtype=torch.float64).view(b, t)
    loss = torch.where(mask, values, garbage).to(dtype)
    perm = torch.tensor(draw(st.permutations(range(b))), dtype=torch.long)
    alpha = draw(st.sampled_from([0.0, 0.5, 0.75, 1.0, 2.0]))
    return loss, mask.to(draw(st.sampled_from([torch.bool, torch.float32]))), perm, alpha


@pytest.mark.parametrize("mode", varpo.AGGREGATIONS)
@FUZZ
@given(batch=token_losses())
def test_aggregation_finite_with_finite_gradients_and_row_order_free(mode, batch):
    loss, mask, perm, alpha = batch
    x = loss.clone().requires_grad_()
    out = varpo.aggregate_loss(x, mask, mode, max_length=loss.shape[1], alpha=alpha)
    (grad,) = torch.autograd.grad(out, x)
    assert out.dtype == loss.dtype and torch.isfinite(out) and torch.isfinite(grad).all()
    assert torch.equal(grad[mask == 0], torch.zeros(int((mask == 0).sum()), dtype=grad.dtype))
    again = varpo.aggregate_loss(loss[perm], mask[perm], mode, max_length=loss.shape[1], alpha=alpha)
    # Sums of ±1e30 with O(1) terms cancel: the float64 rounding is relative to Σ|terms|, not to the result.
    clean = torch.where(mask.bool(), loss, torch.zeros((), dtype=loss.dtype)).double().abs()
    magnitude = float(varpo.aggregate_loss(clean, mask, mode, max_length=loss.shape[1], alpha=alpha))
    rtol = 1e-2 if loss.dtype == torch.bfloat16 else 1e-5
    assert abs(float(again) - float(out)) <= 1e-6 + rtol * abs(float(out)) + 1e-12 * magnitude


BAD_AGG_ARGS = [
    {"mode": "mean"},
    {"mode": None},
    {"max_length": 0},
    {"max_length": None},
    {"max_length": -3},
    {"max_length": "8"},
    {"alpha": -1.0},
    {"alpha": math.nan},
    {"alpha": "x"},
    {"mask": torch.full((2, 3), 0.5)},
    {"mask": -torch.ones(2, 3)},
    {"mask": torch.ones(2, 4)},
    {"per_token_loss": torch.zeros(2, 3, dtype=torch.long)},
]


@pytest.mark.parametrize("bad", BAD_AGG_ARGS, ids=lambda b: repr(b)[:40])
def test_aggregation_rejects_bad_arguments_with_one_line_value_errors(bad):
    kwargs = {"per_token_loss": torch.zeros(2, 3), "mask": torch.ones(2, 3), "mode": "vl_norm", "max_length": 3, **bad}
    with pytest.raises(ValueError) as err:
        varpo.aggregate_loss(**kwargs)
    assert "\n" not in str(err.value)
