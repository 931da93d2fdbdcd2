"""Grid expansion and command-line parsing."""

from __future__ import annotations

import pytest

from varpo.experiments.grid import GridPoint, expand_grid, parse_seeds, parse_weights


def test_parse_weights():
    assert parse_weights("0.1,0.3,0.9") == [(0.1, 0.9), (0.3, 0.7), (0.9, 0.1)]
    assert parse_weights("0.2:0.3:0.5, 1:1:1") == [(0.2, 0.3, 0.5), (1.0, 1.0, 1.0)]
    for bad in ("1.5", "0.2:-1", "0:0", "0.5,0.2:0.3:0.5", ""):
        with pytest.raises(ValueError):
            parse_weights(bad)


def test_parse_seeds():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds(2) == [0, 1]
    assert parse_seeds("0,5,7") == [0, 5, 7] and parse_seeds("4,") == [4]
    with pytest.raises(ValueError):
        parse_seeds("0")


def test_expand_grid_is_seed_major_and_validated():
    pts = expand_grid("grpo,dvao", "0.3,0.7", "2", aggregations="token_mean,vl_norm")
    assert len(pts) == 2 * 2 * 2 * 2
    assert [p.seed for p in pts[:8]] == [0] * 8  # every method at seed 0 first
    assert pts[0] == GridPoint("grpo", (0.3, 0.7), 0, "token_mean")
    assert pts[1].name == "dvao+token_mean__w0.3-0.7__s0"
    assert pts[1].overrides() == [
        "advantage_method=dvao",
        "reward_weights=[0.3,0.7]",
        "seed=0",
        "loss_aggregation=token_mean",
    ]
    assert GridPoint.from_dict(pts[5].to_dict()) == pts[5]
    with pytest.raises(ValueError, match="unknown method"):
        expand_grid("grpo,dvoa", "0.5", "1")
    with pytest.raises(ValueError, match="aggregation"):
        expand_grid("grpo", "0.5", "1", aggregations="mean")
