"""The engine contract (varpo.step.AdvantageStep): options, anneals, weights at a step, state, one resolution."""

from __future__ import annotations

import ast
import pathlib

import pytest
import torch

import varpo
from varpo import registry
from varpo.registry import Anneal
from varpo.schedules import linear_anneal, parse_schedule
from varpo.step import AdvantageStep, MissingStep, StepState, canonical_names

NAMES = ("a", "b")
SRC = pathlib.Path(varpo.__file__).parent


def _tempered(batch, options):
    adv = batch.zscores(options.eps) @ batch.wbar * options.temperature
    return adv, batch.wbar


@pytest.fixture
def tempered():
    registry.register_estimator(
        "tempered_step",
        _tempered,
        options={"temperature": 1.0},
        anneals=[Anneal("temperature", "temperature_end", linear_anneal)],
        replace=True,
    )
    yield "tempered_step"
    for table in (registry.ESTIMATORS, registry.ESTIMATOR_INFO):
        table.pop("tempered_step", None)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(12, 2, generator=g, dtype=torch.float64), torch.arange(12) // 4


def test_own_option_and_anneal_reach_the_estimator(tempered):
    step = AdvantageStep(tempered, NAMES, {"temperature": 3.0, "temperature_end": 1.0, "eps": 1e-4})
    options, annealed = step.options_at(2, 5)
    assert options["temperature"] == pytest.approx(2.0) and "temperature_end" not in options
    assert annealed == {"temperature": pytest.approx(2.0)}
    rewards, ids = _batch()
    got = step.compute(rewards, ids, step=2, total_steps=5)
    want = varpo.compute_advantages(rewards, ids, tempered, temperature=2.0, eps=1e-4, names=list(NAMES))
    torch.testing.assert_close(got.advantages, want.advantages)
    assert got.metrics["temperature"] == pytest.approx(2.0)
    assert got.metrics["frac_signal/a"] == want.present_stats["frac_signal/a"]


def test_unknown_option_fails_at_build_naming_the_method(tempered):
    with pytest.raises(ValueError, match=r"unknown advantage option\(s\) \['temp'\] for advantage method"):
        AdvantageStep(tempered, NAMES, {"temp": 2.0})
    with pytest.raises(ValueError, match=r"'gdpo' \(no options of its own\)"):
        AdvantageStep("gdpo", NAMES, {"temperature": 2.0})
    with pytest.raises(ValueError, match="advantage_method='nope' is invalid"):
        AdvantageStep("nope", NAMES)
    # None means "not set": a config that passes every field does not trip the check
    assert "temperature" not in AdvantageStep("gdpo", NAMES, {"temperature": None}).options


def test_constant_option_is_not_logged_and_end_without_step_is_missing(tempered):
    assert AdvantageStep(tempered, NAMES, {"temperature": 2.0}).scheduled(0, 3) == {}
    with pytest.raises(MissingStep) as err:
        AdvantageStep(tempered, NAMES, {"temperature_end": 0.5}).options_at(None, None)
    assert err.value.option == "temperature_end"


def test_weights_at_step_and_reward_weight_metrics():
    schedule = parse_schedule({"type": "linear", "points": [[0, [1, 0]], [4, [0, 1]]]}, 2)
    step = AdvantageStep("gdpo", NAMES, schedule=schedule)
    assert step.weights_at(1) == pytest.approx((0.75, 0.25))
    assert step.scheduled(1, 10) == {"reward_weight/a": 0.75, "reward_weight/b": 0.25}
    rewards, ids = _batch(1)
    got = step.compute(rewards, ids, step=1, total_steps=10)
    want = varpo.compute_advantages(rewards, ids, "gdpo", [0.75, 0.25], names=list(NAMES))
    torch.testing.assert_close(got.advantages, want.advantages)
    assert got.metrics["reward_weight/a"] == 0.75
    tenth = AdvantageStep("gdpo", NAMES, schedule=parse_schedule({"type": "linear", "points": [[0, [0.9, 0.1]]]}, 2))
    assert tenth.compute(rewards, ids, step=0, total_steps=1).metrics["reward_weight/a"] == 0.9  # not float32 0.8999...
    with pytest.raises(MissingStep):
        step.weights_at(None)
    assert AdvantageStep("gdpo", NAMES, reward_weights=[2, 1]).weights_at(None) == (2.0, 1.0)


def test_sigma_ema_state_moves_on_training_only_and_round_trips():
    step = AdvantageStep("dvao", NAMES, sigma_ema=varpo.SigmaEMA(0.8, 0.3))
    rewards, ids = _batch(2)
    step.compute(rewards, ids, step=0, total_steps=3, train=False)
    assert step.state_dict()["sigma_ema"]["value"] is None  # evaluation does not move the running σ
    step.compute(rewards, ids, step=0, total_steps=3)
    state = step.state_dict()
    assert state["sigma_ema"]["value"] is not None
    resumed = AdvantageStep("dvao", NAMES, sigma_ema=varpo.SigmaEMA(0.8, 0.3))
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    a = step.compute(*_batch(3), step=1, total_steps=3).advantages
    b = resumed.compute(*_batch(3), step=1, total_steps=3).advantages
    torch.testing.assert_close(a, b)
    assert AdvantageStep("dvao", NAMES).state_dict() == {}
    with pytest.raises(ValueError, match="SigmaEMA state"):
        resumed.load_state_dict({"sigma_ema": {"decay": 0.8}})


def test_step_state_round_trip_keeps_each_configuration():
    state = StepState()
    state.sigma_ema_for(0.9, 0.5).update(torch.ones(2, 2, dtype=torch.float64), torch.full((2, 2), 4))
    state.sigma_ema_for(0.8, 0.5)
    restored = StepState()
    restored.load_state_dict(state.state_dict())
    assert restored.state_dict() == state.state_dict()
    with pytest.raises(ValueError, match="f.json: expected"):
        restored.load_state_dict({"sigma_ema": {}}, source="f.json")


def test_deprecated_name_gives_one_line_and_both_names_fail():
    out, lines = canonical_names({"sigma_ema_decay": 0.8, "eps": 1e-4}, "algorithm.varpo.")
    assert out == {"sigma_ema": 0.8, "eps": 1e-4}
    assert lines == [
        "algorithm.varpo.sigma_ema_decay is deprecated; use algorithm.varpo.sigma_ema (the same name on both engines)"
    ]
    assert canonical_names({"sigma_ema": 0.8}, "algorithm.varpo.") == ({"sigma_ema": 0.8}, [])
    with pytest.raises(ValueError, match="^algorithm.varpo: set sigma_ema or its deprecated name sigma_ema_decay"):
        canonical_names({"sigma_ema": 0.8, "sigma_ema_decay": 0.8}, "algorithm.varpo.")


def test_signal_uses_the_step_weights_and_leaves_the_running_sigma_alone():
    # K = 2 trade-off group (constant sum) and a group where only b varies
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    ema = varpo.SigmaEMA()
    grpo = AdvantageStep("grpo", NAMES, sigma_ema=None)
    assert grpo.signal(rewards, 2, step=0, total_steps=1).keep.tolist() == [False, True]
    only_a = AdvantageStep("gdpo", NAMES, reward_weights=[1.0, 0.0], sigma_ema=ema)
    assert only_a.signal(rewards, 2, step=0, total_steps=1).keep.tolist() == [True, False]
    assert ema.value is None


def test_check_runs_the_core_validation_on_every_configured_value(tempered):
    with pytest.raises(ValueError, match="rvpo_k"):
        AdvantageStep("rvpo", NAMES, {"rvpo_k": -1.0}).check()
    with pytest.raises(ValueError, match="^rvpo_k_end: rvpo_k must be"):
        AdvantageStep("rvpo", NAMES, {"rvpo_k_end": -1.0}).check()
    AdvantageStep(tempered, NAMES, {"temperature_end": 0.5}).check()


# -- advantage_method is resolved in one place ----------------------------------------------------------------

_LOOKUPS = ("estimator_info", "apply_schedules", "anneal_ends", "compute_advantages")


def _calls(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def test_engines_reach_the_estimator_only_through_the_contract():
    """No module of either engine looks an advantage method up, applies its anneals or calls the core's
    compute_advantages itself: all of that goes through varpo.step (one resolution per step build)."""
    offenders = {
        f"{path.relative_to(SRC)}: {sorted(_calls(path) & set(_LOOKUPS))}"
        for folder in ("trl", "verl")
        for path in sorted((SRC / folder).glob("*.py"))
        if _calls(path) & set(_LOOKUPS)
    }
    assert offenders == set()
    for folder in ("trl", "verl"):
        for path in (SRC / folder).glob("*.py"):
            text = path.read_text()
            assert '== "rvpo"' not in text and '"saw"' not in text.replace('"saw_', ""), path


def test_building_a_step_resolves_the_method_once(monkeypatch):
    seen = []
    real = registry.estimator_info
    monkeypatch.setattr(registry, "estimator_info", lambda m: seen.append(m) or real(m))
    step = AdvantageStep("rvpo", NAMES, {"rvpo_k": 0.5, "rvpo_k_end": 2.0})
    assert seen == ["rvpo"]
    assert step.options_at(1, 3)[0]["rvpo_k"] == pytest.approx(1.25)


def test_a_step_reuses_one_workspace_and_gives_the_core_values(monkeypatch):
    monkeypatch.setattr("varpo.workspace.TILE_ELEMENTS", 64)  # small tiles: the fast path and its buffers are used
    torch.manual_seed(0)
    rewards = torch.rand(256, 3, dtype=torch.float64)
    ids = torch.arange(256) // 8
    step = AdvantageStep("dvao", ["a", "b", "c"])
    first = step.compute(rewards, ids, step=0, total_steps=10).output.advantages
    buffers = [b for b in step.workspace._buffers if b is not None]
    second = step.compute(rewards, ids, step=1, total_steps=10).output.advantages
    after = [b for b in step.workspace._buffers if b is not None]
    assert buffers and len(after) == len(buffers) and all(a is b for a, b in zip(after, buffers))  # reused
    reference = varpo.compute_advantages(rewards, ids, "dvao", None, names=["a", "b", "c"]).advantages
    torch.testing.assert_close(first, reference, rtol=0, atol=0)
    torch.testing.assert_close(second, reference, rtol=0, atol=0)
    state = StepState()
    built = AdvantageStep("grpo", ["a", "b", "c"], workspace=state.workspace)
    assert built.workspace is state.workspace and "workspace" not in state.state_dict()
