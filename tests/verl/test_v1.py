"""verl's V1 trainer path on CPU: the real ``PPOTrainer`` methods run against an in-memory TransferQueue.

The fake stores what ``AgentLoopWorkerTQ`` puts (per-sample dicts turned into a TensorDict by verl's
``list_of_dict_to_tensordict``: nested tensors, ``NonTensorStack`` for ``uid`` / ``extra_fields``) and answers
``kv_batch_get`` / ``kv_batch_put`` the way verl's trainer uses them. Everything else is verl's code.
"""

from __future__ import annotations

import inspect
from functools import partial

import numpy as np
import pytest
import torch
from transfer_queue import KVBatchMeta
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
from verl.trainer.ppo.v1 import (
    PPOTrainer,
    PPOTrainerSync,
    get_trainer_cls,
    trainer_base,
)
from verl.utils import tensordict_utils as tu

import varpo
import varpo.verl.plugin  # noqa: F401
from tests.verl.helpers import KEYS, compose, group_ids, make_rows
from varpo.verl import TRAINER_MODES
from varpo.verl.losses import worker_loss
from varpo.verl.settings import ConfigError
from varpo.verl.trainer import MODES, VarpoTrainerMixin, VarpoTrainerSync

COMMON = [
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.rollout.n=4",
    "data.train_batch_size=4",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
]


class FakeTQ:
    """The two TransferQueue calls verl's trainer makes, over an in-memory per-key store."""

    def __init__(self):
        self.store: dict[str, dict] = {}

    def put_rows(self, keys, rows):
        for key, row in zip(keys, rows):
            self.store[key] = dict(row)

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        rows = [{f: v for f, v in self.store[k].items() if select_fields is None or f in select_fields} for k in keys]
        return tu.list_of_dict_to_tensordict(rows)

    def kv_batch_put(self, keys, partition_id, fields, tags=None):
        for name in fields.keys():
            value = fields[name]
            values = value.unbind(0) if isinstance(value, torch.Tensor) else value.tolist()
            for key, v in zip(keys, values):
                self.store[key][name] = v
        return KVBatchMeta(keys=list(keys), tags=[{} for _ in keys], partition_id=partition_id)


@pytest.fixture
def fake_tq(monkeypatch):
    fake = FakeTQ()
    monkeypatch.setattr(trainer_base, "tq", fake)
    return fake


def rollout_in_tq(fake: FakeTQ, seed: int = 0):
    """Samples as AgentLoopWorkerTQ stores them (key ``{uid}_{session}_0``), rows in shuffled key order."""
    uids, rewards = make_rows(seed)
    rng = np.random.default_rng(seed)
    keys, rows, session = [], [], {}
    for uid, r in zip(uids, rewards):
        s = session[uid] = session.get(uid, -1) + 1
        n = int(rng.integers(2, 7))
        rm = torch.zeros(n)
        rm[-1] = float(r.sum())
        info = {"score": float(r.sum()), **{k: float(v) for k, v in zip(KEYS, r)}}
        keys.append(f"{uid}_{s}_0")
        rows.append(
            {
                "uid": uid,
                "response_mask": torch.ones(n, dtype=torch.int64),
                "rm_scores": rm,
                "old_log_probs": torch.zeros(n),
                "extra_fields": {"reward_extra_info": info, "min_global_steps": 0},
            }
        )
    fake.put_rows(keys, rows)
    batch = KVBatchMeta(keys=keys, tags=[{"seq_len": 10 + len(r["rm_scores"])} for r in rows], partition_id="train")
    return batch, uids, rewards


def trainer(cls, overrides):
    """A trainer object with only what the tested methods read (``__init__`` would start Ray workers)."""
    t = object.__new__(cls)
    t.config = compose(COMMON + overrides)
    t.use_critic, t.global_steps = False, 0
    return t


DVAO = ["algorithm.adv_estimator=varpo_dvao", f"+algorithm.varpo.reward_keys=[{','.join(KEYS)}]"]


def test_trainer_modes_registered():
    for mode in TRAINER_MODES:
        assert issubclass(get_trainer_cls(mode), VarpoTrainerMixin)
        assert get_trainer_cls(mode) is MODES[mode]


def test_varpo_mode_carries_components_to_advantages(fake_tq):
    batch, uids, rewards = rollout_in_tq(fake_tq, seed=1)
    t = trainer(VarpoTrainerSync, DVAO + ["trainer.v1.trainer_mode=varpo"])
    metrics = {}
    t._compute_advantage(batch, metrics)
    got = torch.stack([fake_tq.store[k]["advantages"][0] for k in batch.keys])
    want = varpo.compute_advantages(torch.as_tensor(rewards), group_ids(uids), "dvao", names=KEYS).advantages
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # float32: a few ulps apart
    for key in batch.keys:  # broadcast over the whole response
        adv = fake_tq.store[key]["advantages"]
        assert torch.all(adv == adv[0])
    assert {"varpo/weight/acc", "varpo/weight/fmt", "varpo/weight/len", "varpo/frac_zero_std_groups"} <= set(metrics)


def test_varpo_mode_logs_frac_signal_and_the_collapse_alarm_warns_once(fake_tq, caplog):
    import logging

    t = trainer(VarpoTrainerSync, DVAO + ["trainer.v1.trainer_mode=varpo", "+algorithm.varpo.collapse_window=2"])
    logged = []
    for step in (1, 2, 3):
        batch, uids, rewards = rollout_in_tq(fake_tq, seed=step)
        for key in batch.keys:  # fmt: constant in every group (collapsed); acc, len as drawn
            fake_tq.store[key]["extra_fields"]["reward_extra_info"]["fmt"] = 1.0
        t.global_steps, metrics = step, {}
        with caplog.at_level(logging.WARNING, logger="varpo.verl"):
            t._compute_advantage(batch, metrics)
        logged.append(metrics)
        want = varpo.compute_advantages(torch.as_tensor(rewards), group_ids(uids), "dvao", names=KEYS).stats
        assert metrics["varpo/frac_signal/len"] == want["frac_signal/len"] > 0  # the core's value, unchanged
    assert [m["varpo/frac_signal/fmt"] for m in logged] == [0.0, 0.0, 0.0]
    lines = [r.getMessage() for r in caplog.records if "objective collapse" in r.getMessage()]
    assert len(lines) == 1 and "at step 2" in lines[0] and "varpo/frac_signal/fmt = 0" in lines[0], lines


def test_components_written_as_top_level_fields_by_the_colocated_reward_path(fake_tq):
    batch, uids, rewards = rollout_in_tq(fake_tq, seed=5)
    for key in batch.keys:  # _compute_reward_colocate writes reward_extra_keys next to rm_scores
        info = fake_tq.store[key].pop("extra_fields")["reward_extra_info"]
        fake_tq.store[key].update({k: info[k] for k in KEYS})
    t = trainer(VarpoTrainerSync, DVAO + ["trainer.v1.trainer_mode=varpo"])
    t._compute_advantage(batch, {})
    got = torch.stack([fake_tq.store[k]["advantages"][0] for k in batch.keys])
    want = varpo.compute_advantages(torch.as_tensor(rewards), group_ids(uids), "dvao", names=KEYS).advantages
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # float32: a few ulps apart


def test_unknown_component_key_names_what_the_reward_function_returned(fake_tq):
    batch, *_ = rollout_in_tq(fake_tq, seed=6)
    t = trainer(VarpoTrainerSync, ["algorithm.adv_estimator=varpo_dvao", "+algorithm.varpo.reward_keys=[acc,nope]"])
    with pytest.raises(KeyError, match=r"returned keys \['acc', 'fmt', 'len', 'score'\]"):
        t._compute_advantage(batch, {})


def test_stock_v1_mode_loses_components_and_we_fail_loudly(fake_tq):
    batch, *_ = rollout_in_tq(fake_tq, seed=2)
    t = trainer(PPOTrainerSync, DVAO)
    with pytest.raises(RuntimeError, match="trainer_mode=varpo"):
        t._compute_advantage(batch, {})


def test_varpo_mode_single_reward_needs_no_components(fake_tq):
    batch, uids, rewards = rollout_in_tq(fake_tq, seed=3)
    t = trainer(VarpoTrainerSync, ["algorithm.adv_estimator=varpo_grpo", "trainer.v1.trainer_mode=varpo"])
    t._compute_advantage(batch, {})
    got = torch.stack([fake_tq.store[k]["advantages"][0] for k in batch.keys])
    want = varpo.compute_advantages(torch.as_tensor(rewards.sum(1)), group_ids(uids), "grpo").advantages
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # float32: a few ulps apart


def test_non_varpo_estimator_passes_through_untouched(fake_tq):
    batch, *_ = rollout_in_tq(fake_tq, seed=4)
    t = trainer(VarpoTrainerSync, ["algorithm.adv_estimator=grpo", "trainer.v1.trainer_mode=varpo"])
    metrics = {}
    t._compute_advantage(batch, metrics)
    assert "advantages" in fake_tq.store[batch.keys[0]] and not any(k.startswith("varpo/") for k in metrics)


class FakeWorkerGroup:
    def __init__(self, dp):
        self._dispatch_info = {"actor": list(range(dp))}
        self.loss_fn = None
        self.update_extra_info = None

    def set_loss_fn(self, fn):
        self.loss_fn = fn

    def update_actor(self, batch):
        self.update_extra_info = dict(batch.extra_info)
        return {"metrics": {"mfu": 0.5, "pg_loss": [0.1]}}


GVPO = [
    "actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo",
    "algorithm.adv_estimator=varpo_dr_grpo",
    "trainer.v1.trainer_mode=varpo",
    "+algorithm.varpo.gvpo_beta=0.2",
]


def test_gvpo_balance_keeps_whole_groups_per_rank(fake_tq):
    t = trainer(VarpoTrainerSync, GVPO)
    t.actor_rollout_wg = FakeWorkerGroup(dp=2)
    rng = np.random.default_rng(0)
    uids = [f"g{i // 4}" for i in range(16)]
    perm = rng.permutation(16)
    keys = [f"{uids[i]}_{i % 4}_0" for i in perm]
    fake_tq.put_rows(keys, [{"uid": uids[i]} for i in perm])
    batch = KVBatchMeta(keys=keys, tags=[{"seq_len": int(rng.integers(5, 50))} for _ in keys], partition_id="train")
    metrics = {}
    out = t._balance_batch(batch, metrics)
    halves = [out.keys[:8], out.keys[8:]]  # what verl dispatches to DP ranks 0 and 1
    for half in halves:
        for start in range(0, 8, 4):  # contiguous groups of rollout.n, as force_group_size expects
            assert len({k.split("_")[0] for k in half[start : start + 4]}) == 1
    assert any(k.startswith("global_seqlen") for k in metrics)


def test_gvpo_update_actor_forces_group_size_and_init_installs_worker_loss(monkeypatch):
    t = trainer(VarpoTrainerSync, GVPO)
    t.actor_rollout_wg = FakeWorkerGroup(dp=1)
    batch = KVBatchMeta(keys=["a_0_0"], tags=[{}], partition_id="train")
    t._update_actor(batch, {})
    assert t.actor_rollout_wg.update_extra_info["force_group_size"] == 4

    monkeypatch.setattr(PPOTrainer, "init", lambda self: None)  # no Ray workers here
    t.init()
    loss = t.actor_rollout_wg.loss_fn
    assert isinstance(loss, partial) and loss.func is worker_loss
    assert loss.keywords["gvpo_beta"] == 0.2 and loss.keywords["group_size"] == 4


def test_init_rejects_invalid_varpo_config(monkeypatch):
    monkeypatch.setattr(PPOTrainer, "init", lambda self: None)
    t = trainer(VarpoTrainerSync, GVPO + ["actor_rollout_ref.actor.shuffle=true"])
    with pytest.raises(ConfigError, match="shuffle"):
        t.init()


def test_verl_v1_internals_we_rely_on_are_still_there():
    """Fails loudly when a verl upgrade moves what the V1 modes override or read."""
    for name, params in {
        "_compute_advantage": ["self", "batch", "metrics"],
        "_balance_batch": ["self", "batch", "metrics", "logging_prefix", "keep_minibatch"],
        "_update_actor": ["self", "batch", "metrics"],
        "init": ["self"],
        "_get_required_batch_multiple": ["self", "dp_size"],
    }.items():
        assert list(inspect.signature(getattr(PPOTrainer, name)).parameters) == params, name
    assert "compute_advantage_for_multi_trajectories" in inspect.getsource(PPOTrainer._compute_advantage)
    assert "force_group_size" in inspect.getsource(__import__("verl.workers.engine.utils", fromlist=["x"]))
    assert 'extra_fields["reward_extra_info"]' in inspect.getsource(AgentLoopWorker._compute_score)
    assert "set_loss_fn" in dir(__import__("verl.workers.engine_workers", fromlist=["x"]).ActorRolloutRefWorker)


@pytest.mark.parametrize(
    ("mode", "verl_mode"),
    [("varpo", "sync"), ("varpo_colocate_async", "colocate_async"), ("varpo_separate_async", "separate_async")],
)
def test_varpo_modes_run_verls_code_paths_for_the_mode_they_extend(mode, verl_mode):
    """verl branches on ``trainer_mode == "sync"`` (replay buffer class, prompt submission, checkpoints) and reads
    ``trainer.v1.<mode>.*``: built by verl's own ``__init__``, our modes present verl's name for their mode."""
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

    # separate_async's own checks: train_batch = parameter_sync_step * mini_batch, rollout on its own nodes
    separate = [
        "trainer.v1.separate_async.parameter_sync_step=2",
        "actor_rollout_ref.rollout.nnodes=1",
        "actor_rollout_ref.rollout.n_gpus_per_node=1",
        "actor_rollout_ref.rollout.checkpoint_engine.backend=nccl",
    ]
    t = MODES[mode](compose(COMMON + DVAO + [f"trainer.v1.trainer_mode={mode}", *separate]))
    assert t.trainer_mode == verl_mode
    assert t.parameter_sync_step == (2 if verl_mode == "separate_async" else 1)  # read from trainer.v1.<verl mode>
    assert t.config.trainer.v1.trainer_mode == mode  # the registry name is unchanged
    assert isinstance(t.replay_buffer, ReplayBufferAsync) is (verl_mode != "sync")
    assert isinstance(t.replay_buffer, ReplayBuffer)
    assert t.replay_buffer.trainer_mode == verl_mode
