""" "Coming from TRL" (docs/engine.md): every TRL loss_type / scale_rewards / multi_objective_aggregation value that
varpo reproduces gives the same advantages and the same loss on the same batch as TRL's own code path.

How: TRL's ``_generate_and_score_completions`` runs inside ours (``super()``), so with TRL's fields set on the trainer
its advantages are computed from the very rewards varpo uses (``Trace.trl_advantages``); the loss of each micro-batch
is computed by both ``GRPOTrainer._compute_loss`` (TRL's, with ``loss_type``) and ours on the same inputs."""

from __future__ import annotations

import pytest
import torch
from trl import GRPOTrainer

from varpo.trl import VarpoGRPOTrainer

from .conftest import length


def letters(completions, **kwargs):
    """A second component without missing values (TRL's nansum scores a missing component as 0, varpo leaves it out
    of the statistics: with None rewards the two differ by design, see docs/engine.md)."""
    return [sum(ch.isalpha() for ch in c) / max(len(c), 1) * 2 for c in completions]


# (TRL settings, varpo settings) — the rows of the table in docs/engine.md
ROWS = [
    (
        dict(loss_type="dapo", scale_rewards="group", multi_objective_aggregation="sum_then_normalize"),
        dict(advantage_method="grpo", loss_aggregation="token_mean"),
    ),
    (
        dict(loss_type="grpo", scale_rewards="group", multi_objective_aggregation="sum_then_normalize"),
        dict(advantage_method="grpo", loss_aggregation="seq_mean_token_mean"),
    ),
    (
        dict(loss_type="bnpo", scale_rewards="group", multi_objective_aggregation="sum_then_normalize"),
        dict(advantage_method="grpo", loss_aggregation="token_mean"),
    ),
    (
        dict(loss_type="dr_grpo", scale_rewards="none", multi_objective_aggregation="sum_then_normalize"),
        dict(advantage_method="dr_grpo", loss_aggregation="seq_mean_token_sum_norm"),
    ),
    (
        dict(loss_type="dapo", scale_rewards="group", multi_objective_aggregation="normalize_then_sum"),
        dict(advantage_method="gdpo", loss_aggregation="token_mean"),
    ),
]


class Both(VarpoGRPOTrainer):
    """Computes TRL's loss next to ours on every micro-batch."""

    def _compute_loss(self, model, inputs):
        ours = super()._compute_loss(model, inputs)
        theirs = GRPOTrainer._compute_loss(self, model, inputs)
        self.pairs.append((float(ours.detach()), float(theirs.detach()), inputs["completion_mask"].sum(-1).cpu()))
        return ours


@pytest.mark.parametrize(
    "trl, ours",
    ROWS,
    ids=[f"{t['loss_type']}-{t['scale_rewards']}-{t['multi_objective_aggregation']}" for t, _ in ROWS],
)
def test_varpo_settings_reproduce_trl(make_trainer, trl, ours):
    trainer = make_trainer(reward_funcs=[length, letters], max_steps=1, eps=1e-4, reward_weights=[1.0, 0.5], **ours)
    trainer.__class__ = Both
    trainer.pairs = []
    for key, value in trl.items():  # what GRPOTrainer.__init__ would have set from a GRPOConfig
        setattr(trainer, key, value)
    trainer.train()
    (trl_adv,), (rollout,) = trainer.trace.trl_advantages, trainer.trace.rollouts
    torch.testing.assert_close(rollout["advantages"].double(), trl_adv.double(), atol=2e-5, rtol=1e-4)
    assert trl_adv.abs().sum() > 0  # a batch with signal, or the comparison would be vacuous
    assert trainer.pairs
    for ours_loss, trl_loss, lengths in trainer.pairs:
        # TRL's grpo / dr_grpo divide by all B rows, varpo by the B' rows with at least one token (docs/engine.md)
        per_row = trl["loss_type"] in ("grpo", "dr_grpo")
        factor = len(lengths) / max(int((lengths > 0).sum()), 1) if per_row else 1.0
        assert ours_loss == pytest.approx(trl_loss * factor, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize(
    "field, value, names",
    [
        ("loss_type", "dr_grpo", "loss_aggregation='seq_mean_token_sum_norm'"),
        ("loss_type", "grpo", "loss_aggregation='seq_mean_token_mean'"),
        ("scale_rewards", "none", "advantage_method='dr_grpo'"),
        ("multi_objective_aggregation", "normalize_then_sum", "advantage_method='gdpo' eps=1e-4"),
        ("loss_type", "cispo", "has no varpo equivalent; register one"),
        ("scale_rewards", "batch", "has no varpo equivalent"),
    ],
)
def test_superseded_trl_field_names_the_replacement(field, value, names):
    from varpo.trl import VarpoGRPOConfig

    with pytest.raises(ValueError, match="Coming from TRL") as err:
        VarpoGRPOConfig(output_dir="/tmp/unused", **{field: value})
    assert names in str(err.value) and "\n" not in str(err.value)
