"""verl plug-in: reward-weight schedules through the estimators, and verl's DAPO filter (algorithm.filter_groups)
with varpo estimators (the deprecated per-sample varpo_signal code and the config check; the group rule itself is
tested in test_group_filter.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from verl.trainer.ppo import ray_trainer

import varpo
import varpo.verl.plugin  # noqa: F401
from tests.verl.helpers import KEYS, algo_config, group_ids, make_batch
from tests.verl.test_config import cfg
from varpo.verl.context import advantage_inputs
from varpo.verl.rewards import SIGNAL_KEY, signal_code
from varpo.verl.settings import ConfigError, VarpoSettings, check_config

SCHEDULE = {"type": "linear", "points": [[0, [0.9, 0.1, 0.0]], [10, [0.1, 0.1, 0.8]]]}


def _verl_adv(data, step, **options):
    with advantage_inputs(dict(data.non_tensor_batch), step=step) as inputs:
        adv = ray_trainer.compute_advantage(
            data, adv_estimator="varpo_gdpo", gamma=1.0, lam=1.0, num_repeat=1, config=algo_config(**options)
        ).batch["advantages"]
    return adv, inputs.stats


@pytest.mark.parametrize("step", [0, 5, 10, 30])
def test_schedule_sets_the_weights_at_each_step(step):
    data, uids, rewards, _ = make_batch(seed=3)
    mask = data.batch["response_mask"].clone()
    got, stats = _verl_adv(data, step, reward_keys=list(KEYS), reward_weight_schedule=SCHEDULE)
    u = min(step, 10) / 10
    w = [0.9 - 0.8 * u, 0.1, 0.8 * u]
    want = varpo.compute_advantages(torch.as_tensor(rewards), group_ids(uids), "gdpo", w).advantages
    torch.testing.assert_close(got, (want.unsqueeze(-1) * mask).to(got.dtype), rtol=1e-6, atol=1e-6)
    assert [stats[f"reward_weight/{k}"] for k in KEYS] == pytest.approx(w)


def test_schedule_without_a_step_and_bad_schedules_fail_in_one_line():
    data, *_ = make_batch(seed=3)
    with pytest.raises(RuntimeError, match="needs the training step"):
        _verl_adv(data, None, reward_keys=list(KEYS), reward_weight_schedule=SCHEDULE)
    for bad, message in [
        ({"type": "step", "points": [[0, [1, 1, 1]]]}, "type"),
        ({"points": [[5, [1, 1, 1]], [5, [1, 0, 0]]]}, "strictly increasing"),
        ({"points": [[0, [1, 1]]]}, "K=3"),
    ]:
        c = cfg(
            "algorithm.adv_estimator=varpo_gdpo",
            "trainer.v1.trainer_mode=varpo",
            f"+algorithm.varpo.reward_keys=[{','.join(KEYS)}]",
        )
        with open_dict(c):
            c.algorithm.varpo.reward_weight_schedule = bad
        with pytest.raises(ConfigError, match=message):
            check_config(c)
    assert VarpoSettings.from_algorithm(algo_config(reward_weight_schedule=SCHEDULE)).weights_at(2) == pytest.approx(
        (0.9 - 0.16, 0.1, 0.16)
    )


def test_varpo_signal_separates_trade_offs_that_the_summed_score_hides():
    """verl's filter drops a uid when np.std of the metric over its samples is 0 (v1/replay_buffer.py)."""
    group = [{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}, {"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}]
    scores = [g["a"] + g["b"] for g in group]
    signals = [signal_code(g) for g in group]
    assert np.std(scores) == 0.0 and np.std(signals) > 0.0
    constant = [signal_code({"a": 0.5, "b": float("nan")}) for _ in range(4)]
    assert np.std(constant) == 0.0 and all(float(int(c)) == c for c in constant)


def test_a_constant_group_of_signal_codes_has_zero_np_std_for_any_group_size():
    """verl's filter keeps a group iff np.std(metric) > 0: a constant group must give exactly 0 whatever G is (the
    48-bit codes failed for 75 of 200 groups of 100)."""
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 16, 100, 1000):
        for _ in range(50):
            code = signal_code({"a": float(rng.random()), "b": float(rng.integers(2))})
            assert np.std(np.full(n, code)) == 0.0 and np.std([code] * n) == 0.0


@pytest.mark.parametrize(
    ("method", "metric", "ok"),
    [
        ("gdpo", "reward", False),
        ("gdpo", "score", False),
        ("rvpo", "varpo_signal", True),
        ("grpo", "score", True),
        ("dvao", "reward", True),
        ("dvao", "a", False),
    ],
)
def test_filter_groups_metric_is_checked_against_the_estimator(method, metric, ok):
    c = cfg(
        f"algorithm.adv_estimator=varpo_{method}",
        "trainer.v1.trainer_mode=varpo",
        "+algorithm.varpo.reward_keys=[a,b]",
        "algorithm.filter_groups.enable=true",
        f"algorithm.filter_groups.metric={metric}",
    )
    if ok:
        check_config(c)
    else:
        with pytest.raises(ConfigError, match="filter_groups.metric"):
            check_config(c)
    assert SIGNAL_KEY == "varpo_signal"


# -- one step convention and RVPO's k annealing, equal on both engines ----------------------------------------


def _trl_step(**fields):
    """The advantage step VarpoGRPOTrainer builds from its config (the engine contract, varpo.step)."""
    from varpo.schedules import parse_schedule
    from varpo.step import AdvantageStep
    from varpo.trl import VarpoGRPOConfig

    config = VarpoGRPOConfig(output_dir="/tmp/unused", use_cpu=True, report_to="none", **fields)
    schedule = parse_schedule(config.reward_weight_schedule, len(KEYS))
    return AdvantageStep(config.advantage_method, list(KEYS), config.step_options(), schedule=schedule)


@pytest.mark.parametrize("total", [1, 2, 5])
def test_rvpo_k_anneal_and_weight_schedule_match_trl_for_the_same_batch(total):
    """The n-th training batch is TRL's global_step n-1 and verl's global_steps n: both give it the same k and
    weights (k from rvpo_k at the first batch to rvpo_k_end at the last, RVPO Fig. 4's 0.5 -> 2.0)."""
    from varpo.schedules import parse_schedule, step_of_verl

    settings = VarpoSettings.from_algorithm(
        algo_config(reward_keys=list(KEYS), rvpo_k=0.5, rvpo_k_end=2.0, reward_weight_schedule=SCHEDULE)
    )
    verl = settings.advantage_step("rvpo")
    trl = _trl_step(advantage_method="rvpo", rvpo_k=0.5, rvpo_k_end=2.0, reward_weight_schedule=SCHEDULE)
    schedule = parse_schedule(SCHEDULE, 3)
    for batch in range(1, total + 1):
        verl_step, trl_step = step_of_verl(batch), batch - 1  # verl's global_steps is 1-based, TRL's 0-based
        k_verl = verl.options_at(verl_step, total)[0]["rvpo_k"]
        assert k_verl == pytest.approx(trl.options_at(trl_step, total)[0]["rvpo_k"])
        assert verl.scheduled(verl_step, total) == pytest.approx(trl.scheduled(trl_step, total))
        assert settings.weights_at(verl_step) == pytest.approx(tuple(schedule.at(trl_step)))
        assert verl.weights_at(verl_step) == pytest.approx(trl.weights_at(trl_step))
    assert verl.options_at(0, total)[0]["rvpo_k"] == pytest.approx(0.5)
    assert verl.options_at(total - 1, total)[0]["rvpo_k"] == pytest.approx(2.0 if total > 1 else 0.5)


@pytest.mark.parametrize("step", [0, 2, 4])
def test_rvpo_k_anneal_through_verls_compute_advantage(step):
    data, uids, rewards, _ = make_batch(seed=5)
    mask = data.batch["response_mask"].clone()
    with advantage_inputs(dict(data.non_tensor_batch), step=step, total_steps=5) as inputs:
        got = ray_trainer.compute_advantage(
            data,
            adv_estimator="varpo_rvpo",
            gamma=1.0,
            lam=1.0,
            num_repeat=1,
            config=algo_config(reward_keys=list(KEYS), rvpo_k=0.5, rvpo_k_end=2.0),
        ).batch["advantages"]
    k = 0.5 + 1.5 * step / 4
    want = varpo.compute_advantages(torch.as_tensor(rewards), group_ids(uids), "rvpo", rvpo_k=k).advantages
    torch.testing.assert_close(got, (want.unsqueeze(-1) * mask).to(got.dtype), rtol=1e-5, atol=1e-6)
    assert inputs.stats["rvpo_k"] == pytest.approx(k)


def test_rvpo_k_end_needs_the_step_and_rvpo():
    data, *_ = make_batch(seed=5)
    with pytest.raises(RuntimeError, match="rvpo_k_end needs the training step"):
        ray_trainer.compute_advantage(
            data, adv_estimator="varpo_rvpo", config=algo_config(reward_keys=list(KEYS), rvpo_k_end=2.0)
        )
    for method, bad, message in [("dvao", 2.0, "only applies to varpo_rvpo"), ("rvpo", -1.0, "finite number > 0")]:
        c = cfg(
            f"algorithm.adv_estimator=varpo_{method}",
            "trainer.v1.trainer_mode=varpo",
            f"+algorithm.varpo.reward_keys=[{','.join(KEYS)}]",
            f"+algorithm.varpo.rvpo_k_end={bad}",
        )
        with pytest.raises(ConfigError, match=message):
            check_config(c)
