"""TRL engine: a registered estimator's own options (``estimator_options``) and declared anneals reach it and are
logged, with no method name compared in the trainer."""

from __future__ import annotations

import pytest
import torch

import varpo
from varpo.advantages import ESTIMATORS
from varpo.registry import Anneal
from varpo.schedules import linear_anneal
from varpo.trl import read_metrics


@pytest.fixture()
def cooling():
    """``cooling``: A = temperature · Σ w̄ z, temperature annealed to ``temperature_end``."""
    before = dict(ESTIMATORS)

    def estimator(batch, options):
        return options.temperature * (batch.zscores(options.eps) @ batch.wbar), batch.wbar

    varpo.register_estimator(
        "cooling",
        estimator,
        options={"temperature": 1.0},
        anneals=[Anneal("temperature", "temperature_end", linear_anneal)],
        replace=True,
    )
    yield "cooling"
    for name in set(ESTIMATORS) - set(before):
        del ESTIMATORS[name]


def test_config_accepts_own_options_and_rejects_others(cooling):
    from varpo.trl import VarpoGRPOConfig

    config = VarpoGRPOConfig(
        output_dir="/tmp/unused", advantage_method=cooling, estimator_options={"temperature": 2.0, "temperature_end": 1}
    )
    assert config.estimator_options == {"temperature": 2.0, "temperature_end": 1}
    with pytest.raises(ValueError, match=r"estimator_options=.*advantage_method='cooling' takes its own options"):
        VarpoGRPOConfig(output_dir="/tmp/unused", advantage_method=cooling, estimator_options={"temp": 2.0})
    with pytest.raises(ValueError, match=r"advantage_method='gdpo' takes null \(it declares no options"):
        VarpoGRPOConfig(output_dir="/tmp/unused", advantage_method="gdpo", estimator_options={"temperature": 2.0})
    with pytest.raises(ValueError, match="estimator_options"):  # rvpo's end is a config field of its own
        VarpoGRPOConfig(output_dir="/tmp/unused", advantage_method="rvpo", estimator_options={"rvpo_k_end": 2.0})


def test_registered_estimator_options_and_anneal_in_training(make_trainer, cooling):
    trainer = make_trainer(advantage_method=cooling, estimator_options={"temperature": 3.0, "temperature_end": 0.5})
    trainer.train()
    rollouts = [r for r in trainer.trace.rollouts]
    assert [r["options"]["temperature"] for r in rollouts] == [3.0, 0.5]
    for r in rollouts:
        assert "temperature_end" not in r["options"]
        want = varpo.compute_advantages(r["rewards"], r["group_ids"], cooling, weights=r["weights"], **r["options"])
        torch.testing.assert_close(r["advantages"], want.advantages, rtol=0, atol=0)
    logged = [r["temperature"] for r in read_metrics(trainer.args.output_dir) if "temperature" in r]
    assert logged == [3.0, 0.5]
