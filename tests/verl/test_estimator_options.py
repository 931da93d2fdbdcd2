"""verl plug-in: a registered estimator's own options (``algorithm.varpo.estimator_options``), its declared anneals
and its declared ``sum_filter`` trait, asked of the registry (no method names in the plug-in)."""

from __future__ import annotations

import pytest
import torch
from verl.trainer.ppo import ray_trainer

import varpo
import varpo.verl.plugin  # noqa: F401
from tests.verl.helpers import KEYS, algo_config, group_ids, make_batch
from tests.verl.test_config import cfg
from varpo.advantages import ESTIMATORS
from varpo.registry import Anneal
from varpo.schedules import linear_anneal
from varpo.verl.context import advantage_inputs
from varpo.verl.settings import ConfigError, VarpoSettings, check_config


def _estimator(batch, options):
    if not options.temperature > 0:
        raise ValueError(f"temperature must be > 0, got {options.temperature}")
    return options.temperature * (batch.zscores(options.eps) @ batch.wbar), batch.wbar


@pytest.fixture()
def registered():
    before = dict(ESTIMATORS)
    anneal = Anneal("temperature", "temperature_end", linear_anneal)
    varpo.register_estimator("cooling", _estimator, options={"temperature": 1.0}, anneals=[anneal], replace=True)
    varpo.register_estimator("summed", _estimator, options={"temperature": 1.0}, sum_filter=True, replace=True)
    yield
    for name in set(ESTIMATORS) - set(before):
        del ESTIMATORS[name]


def test_settings_parse_estimator_options(registered):
    s = VarpoSettings.from_algorithm(algo_config(reward_keys=list(KEYS), estimator_options={"temperature": 2.0}))
    assert dict(s.estimator_options) == {"temperature": 2.0}
    options, annealed = s.options_at("cooling", 0, 3)
    assert options["temperature"] == 2.0 and annealed == {}  # no end set: nothing annealed, nothing logged
    with pytest.raises(ConfigError, match="estimator_options must be a mapping"):
        VarpoSettings.from_algorithm(algo_config(estimator_options=[1, 2]))


@pytest.mark.parametrize("step", [0, 2, 4])
def test_own_option_annealed_through_verls_compute_advantage(registered, step):
    data, uids, rewards, _ = make_batch(seed=5)
    mask = data.batch["response_mask"].clone()
    options = {"temperature": 3.0, "temperature_end": 1.0}
    with advantage_inputs(dict(data.non_tensor_batch), step=step, total_steps=5) as inputs:
        got = ray_trainer.compute_advantage(
            data,
            adv_estimator="varpo_cooling",
            config=algo_config(reward_keys=list(KEYS), estimator_options=options),
        ).batch["advantages"]
    t = 3.0 - 2.0 * step / 4
    want = varpo.compute_advantages(torch.as_tensor(rewards), group_ids(uids), "cooling", temperature=t).advantages
    torch.testing.assert_close(got, (want.unsqueeze(-1) * mask).to(got.dtype), rtol=1e-5, atol=1e-6)
    assert inputs.stats["temperature"] == pytest.approx(t)


def test_anneal_end_needs_the_step(registered):
    data, *_ = make_batch(seed=5)
    config = algo_config(reward_keys=list(KEYS), estimator_options={"temperature_end": 2.0})
    with pytest.raises(RuntimeError, match="temperature_end needs the training step"):
        ray_trainer.compute_advantage(data, adv_estimator="varpo_cooling", config=config)


@pytest.mark.parametrize(
    ("method", "option", "message"),
    [
        ("cooling", "temp=2.0", r"unknown advantage option\(s\) \['temp'\] for advantage method 'cooling'"),
        ("gdpo", "temperature=2.0", r"for advantage method 'gdpo' \(no options of its own\)"),
        ("gdpo", "temperature_end=2.0", "temperature_end only applies to varpo_cooling, not 'gdpo'"),
        ("cooling", "temperature_end=-1.0", "temperature_end: temperature must be > 0, got -1.0"),
    ],
)
def test_check_config_rejects_options_the_estimator_does_not_take(registered, method, option, message):
    c = cfg(
        f"algorithm.adv_estimator=varpo_{method}",
        "trainer.v1.trainer_mode=varpo",
        f"+algorithm.varpo.reward_keys=[{','.join(KEYS)}]",
        f"+algorithm.varpo.estimator_options.{option}",
    )
    with pytest.raises(ConfigError, match=message):
        check_config(c)


@pytest.mark.parametrize(("method", "ok"), [("summed", True), ("cooling", False)])
def test_summed_reward_filter_follows_the_declared_trait(registered, method, ok):
    c = cfg(
        f"algorithm.adv_estimator=varpo_{method}",
        "trainer.v1.trainer_mode=varpo",
        "+algorithm.varpo.reward_keys=[a,b]",
        "algorithm.filter_groups.enable=true",
        "algorithm.filter_groups.metric=score",
    )
    if ok:
        check_config(c)
    else:
        with pytest.raises(ConfigError, match="filter_groups.metric"):
            check_config(c)
