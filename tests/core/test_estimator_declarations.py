"""What an estimator declares at registration (registry.EstimatorInfo) instead of name checks elsewhere: its own
options, annealed options, extra diagnostics and whether DAPO's summed-reward filter is exact for it."""

from __future__ import annotations

import pytest
import torch

import varpo
from varpo import registry
from varpo.advantages import ESTIMATORS, saw
from varpo.registry import Anneal
from varpo.schedules import linear_anneal

REWARDS = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [5.0, 3.0]])
IDS = torch.zeros(4, dtype=torch.long)


@pytest.fixture()
def clean_registry():
    before = dict(ESTIMATORS)
    yield
    for name in set(ESTIMATORS) - set(before):
        del ESTIMATORS[name]


def _tempered(batch, options):
    """A = temperature · Σ_k w̄_k z_k: reads its own option."""
    return options.temperature * (batch.zscores(options.eps) @ batch.wbar), batch.wbar


def test_own_options_reach_that_estimator_only(clean_registry):
    varpo.register_estimator("tempered", _tempered, options={"temperature": 1.0})
    base = varpo.compute_advantages(REWARDS, IDS, "tempered").advantages
    hot = varpo.compute_advantages(REWARDS, IDS, "tempered", temperature=3.0).advantages
    torch.testing.assert_close(hot, 3.0 * base)
    assert varpo.compute_advantages(REWARDS, IDS, "tempered", temperature=3.0, eps=1e-4).advantages.abs().sum() > 0
    with pytest.raises(ValueError, match=r"for advantage method 'grpo' \(no options of its own\)"):
        varpo.compute_advantages(REWARDS, IDS, "grpo", temperature=3.0)
    with pytest.raises(ValueError, match=r"'tempered' \(its own options: \['temperature'\]\)") as err:
        varpo.compute_advantages(REWARDS, IDS, "tempered", temprature=3.0)
    assert "\n" not in str(err.value)


def test_options_extra_holds_defaults_and_rejects_unknown_attributes(clean_registry):
    seen = {}

    def spy(batch, options):
        seen.update(options.extra)
        with pytest.raises(AttributeError):
            _ = options.nope
        return _tempered(batch, options)

    varpo.register_estimator("spy", spy, options={"temperature": 0.5, "mode": "a"})
    varpo.compute_advantages(REWARDS, IDS, "spy", mode="b")
    assert seen == {"temperature": 0.5, "mode": "b"}


def test_registration_checks_declarations(clean_registry):
    with pytest.raises(ValueError, match="identifiers"):
        varpo.register_estimator("bad", _tempered, options={"not a name": 1})
    with pytest.raises(ValueError, match="needs a declared default"):
        varpo.register_estimator("bad", _tempered, anneals=(Anneal("temperature", "temperature_end", linear_anneal),))
    with pytest.raises(TypeError, match="diagnostics must be callable"):
        varpo.register_estimator("bad", _tempered, diagnostics=3)
    varpo.register_estimator("shadow", _tempered, options={"eps": 1.0})
    with pytest.raises(ValueError, match="shadow shared options"):
        varpo.compute_advantages(REWARDS, IDS, "shadow")


def test_saw_cv_comes_from_the_declared_diagnostics_hook(clean_registry):
    assert registry.estimator_info("saw").diagnostics is not None
    # the same function under another name reports saw_cv only with the hook declared (no name check)
    varpo.register_estimator("saw_plain", saw)
    varpo.register_estimator("saw_hooked", saw, diagnostics=registry.estimator_info("saw").diagnostics)
    want = varpo.compute_advantages(REWARDS, IDS, "saw").stats
    assert not any(k.startswith("saw_cv/") for k in varpo.compute_advantages(REWARDS, IDS, "saw_plain").stats)
    got = varpo.compute_advantages(REWARDS, IDS, "saw_hooked").stats
    assert {k: v for k, v in got.items() if k.startswith("saw_cv/")} == {
        k: v for k, v in want.items() if k.startswith("saw_cv/")
    }
    assert set(want) > {"saw_cv/0", "saw_cv/1"}


def test_registered_diagnostics_are_reported_and_absent_for_missing_components(clean_registry):
    def spread(batch, options):
        return {"spread": batch.rewards.nan_to_num(0.0).amax(0) - batch.rewards.nan_to_num(0.0).amin(0)}

    varpo.register_estimator("spready", _tempered, options={"temperature": 1.0}, diagnostics=spread)
    rewards = torch.tensor([[0.0, float("nan")], [2.0, float("nan")], [1.0, float("nan")]])
    out = varpo.compute_advantages(rewards, torch.zeros(3, dtype=torch.long), "spready", names=["a", "b"])
    assert out.stats["spread/a"] == 2.0
    assert "spread/b" in out.absent and "spread/b" not in out.present_stats
    assert out.stats["frac_missing/b"] == 1.0  # the built-in rows are unchanged


@pytest.mark.parametrize(
    "hook, message",
    [
        (lambda b, o: {"weight": b.wbar}, "taken"),
        (lambda b, o: {"x": torch.zeros(5)}, r"tensor \[K\]"),
        (lambda b, o: [1.0], "must return"),
    ],
)
def test_bad_diagnostics_are_one_line_errors(clean_registry, hook, message):
    varpo.register_estimator("hooky", _tempered, options={"temperature": 1.0}, diagnostics=hook)
    with pytest.raises(ValueError, match=message):
        varpo.compute_advantages(REWARDS, IDS, "hooky")
    assert varpo.compute_advantages(REWARDS, IDS, "hooky", stats=False).stats == {}  # no diagnostics wanted


def test_rvpo_declares_its_k_anneal():
    (anneal,) = registry.estimator_info("rvpo").anneals
    assert (anneal.option, anneal.end, anneal.fn) == ("rvpo_k", "rvpo_k_end", linear_anneal)
    options, values = registry.apply_schedules("rvpo", {"rvpo_k": 0.5, "rvpo_k_end": 2.0, "eps": 1e-4}, 2, 5)
    assert options == {"rvpo_k": 1.25, "eps": 1e-4} and values == {"rvpo_k": 1.25}
    assert registry.apply_schedules("rvpo", {}, None, None) == ({"rvpo_k": 1.0}, {"rvpo_k": 1.0})
    with pytest.raises(LookupError, match="rvpo_k_end"):
        registry.apply_schedules("rvpo", {"rvpo_k_end": 2.0}, None, None)
    assert registry.apply_schedules("gdpo", {"eps": 1e-4}, 3, 5) == ({"eps": 1e-4}, {})
    assert registry.declaring("rvpo_k_end") == ("rvpo",)


def test_registered_anneal_of_an_own_option(clean_registry):
    varpo.register_estimator(
        "cooling",
        _tempered,
        options={"temperature": 2.0},
        anneals=[Anneal("temperature", "temperature_end", linear_anneal)],
    )
    options, values = registry.apply_schedules("cooling", {"temperature_end": 0.0}, 1, 3)
    assert options == {"temperature": 1.0} and values == {"temperature": 1.0}
    out = varpo.compute_advantages(REWARDS, IDS, "cooling", **options).advantages
    torch.testing.assert_close(out, 0.5 * varpo.compute_advantages(REWARDS, IDS, "cooling").advantages)
    with pytest.raises(ValueError, match="unknown advantage option"):
        varpo.compute_advantages(REWARDS, IDS, "cooling", temperature_end=0.0)  # engine-side only


def test_sum_filter_is_declared_by_the_estimators():
    assert registry.sum_filter_methods() == ("grpo", "dr_grpo", "dvao")
    assert not registry.estimator_info("gdpo").sum_filter


def test_method_only_options_are_declared():
    only = registry.method_only_options()
    assert only["saw_base"] == only["saw_offsets"] == ("saw",)
    assert only["rvpo_k"] == only["rvpo_k_end"] == only["rvpo_beta"] == ("rvpo",)
    assert only["sigma_ema"] == ("dvao",)
    assert "eps" not in only


def test_a_registered_estimator_may_read_a_method_only_option(clean_registry):
    from varpo.trl import VarpoGRPOConfig

    with pytest.raises(ValueError, match=r"only used by advantage_method='rvpo'\)"):
        VarpoGRPOConfig(output_dir="/tmp/unused", advantage_method="gdpo", rvpo_k=2.0)
    varpo.register_estimator("soft", _tempered, options={"temperature": 1.0}, reads=("rvpo_k",))
    assert VarpoGRPOConfig(output_dir="/tmp/unused", advantage_method="soft", rvpo_k=2.0).rvpo_k == 2.0
    with pytest.raises(ValueError, match=r"only used by advantage_method='rvpo' \| 'soft'"):
        VarpoGRPOConfig(output_dir="/tmp/unused", advantage_method="gdpo", rvpo_k=2.0)
