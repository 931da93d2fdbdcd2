"""benchmarks/demo_repeat.py's decisions: disjoint seed sets, the stated conclusion's check, the pooled lost counts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from varpo import significance

ROOT = Path(__file__).parents[2]


def _load():
    path = ROOT / "benchmarks" / "demo_repeat.py"
    spec = importlib.util.spec_from_file_location("demo_repeat_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_sets_are_disjoint_and_overlap_is_refused():
    dr = _load()
    assert dr.seed_sets(3, 700, 10, 4) == [(700, 701, 702, 703), (710, 711, 712, 713), (720, 721, 722, 723)]
    with pytest.raises(ValueError, match="overlap"):
        dr.seed_sets(2, 0, 3, 4)


def test_agrees_with_the_stated_conclusion():
    dr = _load()
    stated = json.loads(dr.STATED.read_text())
    assert stated["established"] == {"saw": {"length": "saw"}}  # DM3's pre-registered conclusion
    diffs = {"saw": {"length": {"estimate": 0.7}, "alpha": {"estimate": -0.1}}}
    assert dr.agrees(stated, {"saw": {"length": "saw", "alpha": "none"}}, diffs)
    assert not dr.agrees(stated, {"saw": {"length": "none", "alpha": "none"}}, diffs)
    # a direction claim fails when the sign reverses or the other method is established
    directional = {"established": {}, "direction": {"saw": {"alpha": "grpo"}}}
    assert dr.agrees(directional, {"saw": {"alpha": "none"}}, diffs)
    assert not dr.agrees(directional, {"saw": {"alpha": "none"}}, {"saw": {"alpha": {"estimate": 0.1}}})
    assert not dr.agrees(directional, {"saw": {"alpha": "saw"}}, diffs)


def test_pooled_lost_counts_and_fisher():
    dr = _load()

    def rep(grpo_lost: int, saw_lost: int) -> dict:
        table = {"grpo": {"length": {"lost": grpo_lost}}, "saw": {"length": {"lost": saw_lost}}}
        return {"seeds": [0, 1, 2, 3], "table": table}

    pooled = dr.pooled_lost([rep(4, 0), rep(3, 0), rep(4, 1)])
    assert pooled["counts"]["grpo"]["lost"] == 11 and pooled["counts"]["saw"]["lost"] == 1
    assert pooled["counts"]["grpo"]["n"] == pooled["counts"]["saw"]["n"] == 12
    assert pooled["p"] == pytest.approx(significance.fisher_exact(11, 12, 1, 12)) and pooled["p"] < 0.001
    assert pooled["counts"]["saw"]["ci95"] == pytest.approx(list(significance.clopper_pearson(1, 12)))
