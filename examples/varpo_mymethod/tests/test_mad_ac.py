"""mad_ac checked the way varpo checks its own methods: hand values, a loop oracle, invariances (varpo.testing)."""

from __future__ import annotations

import math

import pytest
import torch
from varpo_mymethod import NAME, register

import varpo
import varpo.testing as vt

register()


def test_hand_values():
    # one group, K=1, r = [0, 1, 2, 5]: μ = 2, |dev| = [2, 1, 0, 3], MAD = 1.5 -> A = dev / 1.5
    vt.assert_hand_values(NAME, [[0.0], [1.0], [2.0], [5.0]], [0, 0, 0, 0], [-4 / 3, -2 / 3, 0.0, 2.0], eps=0.0)


def _one_group(rows, weights, eps, ddof):
    k = len(weights)
    out = [0.0] * len(rows)
    for j in range(k):
        vals = [r[j] for r in rows if math.isfinite(r[j])]
        if not vals:
            continue
        mu = sum(vals) / len(vals)
        mad = sum(abs(v - mu) for v in vals) / len(vals)
        for i, r in enumerate(rows):
            if math.isfinite(r[j]) and mad + eps != 0:
                out[i] += weights[j] * (r[j] - mu) / (mad + eps)
    return out


@pytest.mark.parametrize("k", [1, 2, 3])
def test_matches_loop_oracle(k):
    vt.assert_matches_oracle(NAME, vt.loop_oracle(_one_group), k=k)


def test_invariances():
    vt.check_estimator(NAME)


def test_no_signal_rule():
    flat = varpo.compute_advantages(torch.tensor([[1.0, 2.0], [1.0, 2.0]]), torch.tensor([0, 0]), NAME)
    assert flat.stats["weight/0"] == flat.stats["weight/1"] == 0.0
    assert torch.equal(flat.advantages, torch.zeros(2))
    half = varpo.compute_advantages(torch.tensor([[1.0, 2.0], [3.0, 2.0]]), torch.tensor([0, 0]), NAME)
    assert (half.stats["weight/0"], half.stats["weight/1"]) == (1.0, 0.0)
