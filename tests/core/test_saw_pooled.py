"""SAW's batch moments from the fast path's group statistics (``_saw_moments_pooled``) agree with the exact-sum
route over the [N, K] rewards to 1e-10 relative, and fall back to it where that cannot be shown."""

from __future__ import annotations

import pytest
import torch

import varpo
import varpo.estimators as A


def _rewards(kind: str, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "binary":
        return torch.randint(0, 2, (96, 3), generator=gen).float()
    if kind == "dense":
        return (torch.randn(96, 3, generator=gen) * 5 + 2).float()
    return (torch.randn(96, 3, generator=gen) * 1e30 + 3e30).double()  # float64 fast path, 1e30 magnitudes


def _both(monkeypatch, rewards, ids, **opts):
    """(pooled route, exact route) outputs of the same call, with the pooled route asserted to be taken."""
    taken = []
    pooled = A._saw_moments_pooled

    def spy(b, o):
        got = pooled(b, o)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(A, "_saw_moments_pooled", spy)
    fast = varpo.compute_advantages(rewards, ids, "saw", **opts)
    assert taken == [True]
    monkeypatch.setattr(A, "_saw_moments_pooled", lambda b, o: None)
    return fast, varpo.compute_advantages(rewards, ids, "saw", **opts)


@pytest.mark.parametrize("kind", ["binary", "dense", "huge"])
@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("opts", [{}, {"saw_offsets": [3.0, 0.0, -1.5]}, {"saw_base": "gdpo", "ddof": 0}])
def test_pooled_moments_match_exact_route(monkeypatch, kind, shuffled, opts):
    rewards = _rewards(kind, 7)
    ids = torch.arange(24).repeat_interleave(4)
    if shuffled:
        ids = ids[torch.randperm(96, generator=torch.Generator().manual_seed(1))]
    fast, exact = _both(monkeypatch, rewards, ids, weights=[0.2, 0.5, 0.3], **opts)
    for key, want in exact.stats.items():
        if key.startswith(("saw_cv/", "weight/")):
            assert fast.stats[key] == pytest.approx(want, rel=1e-10, abs=1e-300), key
    assert torch.allclose(fast.advantages.double(), exact.advantages.double(), rtol=1e-6, atol=1e-6)
    assert torch.isfinite(fast.advantages).all()


def test_cancelling_rewards_take_the_exact_route(monkeypatch):
    """Huge rewards that cancel to a tiny batch mean: the pooled mean's error bound fails, the exact sum decides."""
    r = torch.tensor([[1e30, 1.0], [-1e30, 0.0], [3.0, 1.0], [1.0, 0.0]], dtype=torch.float32)
    ids = torch.tensor([0, 0, 1, 1])
    calls = []
    pooled = A._saw_moments_pooled
    monkeypatch.setattr(A, "_saw_moments_pooled", lambda b, o: calls.append(pooled(b, o)) or calls[-1])
    out = varpo.compute_advantages(r, ids, "saw")
    assert calls == [None]
    # exact batch mean of component 0 is 4 / 4 = 1, σ = sqrt((2e60 + ...) / 3): CV from the exact sum
    assert out.stats["saw_cv/0"] == pytest.approx(float(r[:, 0].double().std()) / (1.0 + 1e-8), rel=1e-12)


@pytest.mark.parametrize(("shuffled", "g"), [(False, 4), (True, 16)])
def test_pooled_route_holds_at_a_million_samples(monkeypatch, shuffled, g):
    """The error bound grows with the longest group plus the number of groups, not with N: a 1M-sample batch (the
    scale of issue 17's benchmark) keeps the pooled route, and still agrees with the exact sums to 1e-10."""
    gen = torch.Generator().manual_seed(3)
    n = 1 << 20
    rewards = torch.randint(0, 2, (n, 2), generator=gen).float()
    rewards[:, 1] += torch.rand(n, generator=gen)  # non-dyadic sums too
    ids = torch.arange(n // g).repeat_interleave(g)
    if shuffled:
        ids = ids[torch.randperm(n, generator=gen)]
    fast, exact = _both(monkeypatch, rewards, ids)
    for key, want in exact.stats.items():
        if key.startswith(("saw_cv/", "weight/")):
            assert fast.stats[key] == pytest.approx(want, rel=1e-10, abs=1e-300), key
