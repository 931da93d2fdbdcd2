"""Opt-in reward-matrix log of the TRL engine (log_reward_matrix) and its replay in the lab."""

from __future__ import annotations

import os

import numpy as np
import torch

import varpo
from varpo import reward_log
from varpo.lab import allocate, env


def test_reward_log_two_steps_and_replay(make_trainer):
    trainer = make_trainer(advantage_method="dvao", log_reward_matrix=True)
    trainer.train()
    d = os.path.join(trainer.args.output_dir, "reward_log")
    batches = reward_log.read(d)
    assert [b.step for b in batches] == [0, 1]
    rollouts = trainer.trace.rollouts
    for b, r in zip(batches, rollouts, strict=True):
        assert b.names == ("length", "vowels")
        np.testing.assert_array_equal(b.group_ids, r["group_ids"].numpy())
        np.testing.assert_allclose(b.rewards, r["rewards"].float().numpy(), equal_nan=True)
        assert b.lengths.shape == (8,) and b.lengths.min() >= 0 and b.lengths.max() <= 12
        # Replaying the logged batch with the run's method reproduces the run's advantages.
        again = varpo.compute_advantages(
            torch.from_numpy(b.rewards).double(),
            torch.from_numpy(b.group_ids).long(),
            "dvao",
            weights=torch.from_numpy(b.weights),
        )
        torch.testing.assert_close(again.advantages, r["advantages"], atol=1e-5, rtol=1e-4)
    rows = allocate.replay(d, ["grpo", "dvao"])
    assert rows[0]["batches"] == 2 and abs(rows[1]["weight/length"] + rows[1]["weight/vowels"] - 1) < 1e-6
    assert env.from_reward_log(d).shape[1:] == (4, 2)


def test_reward_log_is_off_by_default(make_trainer):
    trainer = make_trainer()
    trainer.train()
    assert not os.path.exists(os.path.join(trainer.args.output_dir, "reward_log"))
