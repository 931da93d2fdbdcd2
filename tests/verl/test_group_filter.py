"""verl DAPO group filtering with ``algorithm.filter_groups.metric=varpo_signal``: each finished group is judged by
the configured estimator (varpo.verl.group_filter), through verl's own ReplayBuffer code (``sample`` ->
``_terminal_eviction_reasons`` -> ``_dapo_filtered_keys`` -> eviction and refill) over an in-memory TransferQueue."""

from __future__ import annotations

import math

import numpy as np
import pytest
from verl.trainer.ppo.v1 import replay_buffer as rb
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

import varpo.verl.plugin  # noqa: F401
from tests.verl.test_config import cfg
from tests.verl.test_v1 import FakeTQ, trainer
from varpo.verl.group_filter import SignalRule, VarpoReplayBuffer, VarpoReplayBufferAsync, use_signal_rule
from varpo.verl.rewards import SIGNAL_KEY, signal_code
from varpo.verl.settings import ConfigError, VarpoSettings, check_config
from varpo.verl.trainer import VarpoTrainerColocateAsync, VarpoTrainerSync

KEYS = ("a", "b")
#: K = 2, equal weights: the components trade off, the sum is constant; gdpo/ac/saw/rvpo give every sample 0.
TRADE_OFF = [(1.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.0, 1.0)]
#: one component varies: every estimator gives it signal.
ONE_VARIES = [(1.0, 0.0), (0.0, 0.0), (1.0, 0.0), (0.0, 0.0)]
CONSTANT = [(1.0, 1.0)] * 4
PER_OBJECTIVE = ("gdpo", "ac", "saw", "rvpo")
SUM_BASED = ("grpo", "dr_grpo", "dvao")


class BufferTQ(FakeTQ):
    """FakeTQ plus what verl's ReplayBuffer calls: ``kv_list`` (tags per partition) and ``kv_clear``."""

    def __init__(self):
        super().__init__()
        self.tags: dict[str, dict] = {}

    def add_group(self, uid: str, rewards, step: int = 1):
        self.tags[uid] = {"is_prompt": True, "status": "finished", "global_steps": step}
        for s, r in enumerate(rewards):
            key, info = f"{uid}_{s}_0", dict(zip(KEYS, r))
            info.update(score=math.fsum(r), **{SIGNAL_KEY: signal_code(info)})
            self.tags[key] = {"status": "finished"}
            self.store[key] = {"uid": uid, "extra_fields": {"reward_extra_info": info}}

    def kv_list(self, partition_id=None):
        return {"train": dict(self.tags)}

    def kv_clear(self, partition_id, keys):
        for key in keys:
            self.tags.pop(key, None)
            self.store.pop(key, None)


@pytest.fixture
def tq(monkeypatch):
    fake = BufferTQ()
    monkeypatch.setattr(rb, "tq", fake)
    return fake


def buffer(cls, metric: str, method: str | None = None, refills: list | None = None):
    """verl's replay buffer as its builder makes it for DAPO, judging groups with ``method`` when given."""
    kwargs = dict(train_batch_size=4, gen_batch_size=1) if cls is ReplayBuffer else {}
    made = cls(
        trainer_mode="sync" if cls is ReplayBuffer else "varpo",
        trainer_config={},
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs={},
        poll_interval=0.0,
        refill_fn=(refills if refills is not None else []).append,
        filter_groups_metric=metric,
        **kwargs,
    )
    if method is None:
        return made
    settings = VarpoSettings.from_algorithm({"varpo": {"reward_keys": list(KEYS)}})
    return use_signal_rule(made, SignalRule(method, settings))


def sampled_groups(buf, size: int = 1) -> tuple[set[str], dict]:
    batch, metrics = buf.sample(global_steps=1, partition_id="train", batch_size=size)
    return {key.split("_")[0] for key in batch.keys}, metrics


@pytest.mark.parametrize("cls", [ReplayBuffer, ReplayBufferAsync])
@pytest.mark.parametrize("method", PER_OBJECTIVE)
def test_cancelling_group_is_evicted_and_a_varying_one_sampled(tq, method, cls):
    for uid, rewards in (("trade", TRADE_OFF), ("flat", CONSTANT), ("signal", ONE_VARIES)):
        tq.add_group(uid, rewards)
    refills: list[int] = []
    groups, metrics = sampled_groups(buffer(cls, SIGNAL_KEY, method, refills))
    assert groups == {"signal"}
    assert metrics["training/filter_groups/evicted_samples"] == 2  # trade and flat, not only flat
    assert "trade" not in tq.tags and "flat" not in tq.tags  # cleared from TransferQueue
    assert sum(refills) == (2 if cls is ReplayBufferAsync else 0)  # async refills k; sync only when short


@pytest.mark.parametrize("method", PER_OBJECTIVE)
def test_trade_off_with_signal_is_kept(tq, method):
    """Unequal scales: the components trade off as in TRADE_OFF, but the estimator gives this group an advantage."""
    tq.add_group("scaled", [(1.0, 0.0), (0.0, 2.0), (1.0, 0.0), (0.0, 2.0)])
    tq.add_group("trade", TRADE_OFF)
    groups, metrics = sampled_groups(buffer(ReplayBufferAsync, SIGNAL_KEY, method))
    assert groups == {"scaled"} and metrics["training/filter_groups/evicted_samples"] == 1


@pytest.mark.parametrize("method", SUM_BASED)
def test_sum_based_estimators_evict_what_verls_summed_score_evicts(tq, monkeypatch, method):
    """grpo/dr_grpo/dvao: a group has signal iff Σ w_k r_k varies, so varpo_signal evicts exactly the groups verl's
    own filter on ``score`` (same weights) evicts; the trade-off group among them."""
    rng = np.random.default_rng(0)
    for g in range(12):
        tq.add_group(f"g{g}", [tuple(map(float, rng.integers(0, 2, size=2))) for _ in range(4)])
    tq.add_group("trade", TRADE_OFF)
    ours = buffer(ReplayBufferAsync, SIGNAL_KEY, method)
    ours._sync_metadata_from_transfer_queue()
    evicted = ours._terminal_eviction_reasons(1, "train")[1]
    verls = buffer(ReplayBufferAsync, "score")
    verls._sync_metadata_from_transfer_queue()
    assert evicted == verls._terminal_eviction_reasons(1, "train")[1]
    assert "trade" in evicted and 0 < len(evicted) < 13


def test_weights_of_the_step_being_sampled_decide(tq):
    """With a schedule that gives component b weight 0 at step 0, a group where only b varies has no signal."""
    tq.add_group("bonly", [(1.0, 0.0), (1.0, 1.0), (1.0, 0.0), (1.0, 1.0)])
    schedule = {"type": "linear", "points": [[0, [1.0, 0.0]], [10, [0.5, 0.5]]]}
    settings = VarpoSettings.from_algorithm({"varpo": {"reward_keys": list(KEYS), "reward_weight_schedule": schedule}})
    buf = use_signal_rule(buffer(ReplayBufferAsync, SIGNAL_KEY), SignalRule("gdpo", settings))
    buf._sync_metadata_from_transfer_queue()
    assert buf._terminal_eviction_reasons(1, "train")[1] == {"bonly"}  # verl step 1 = varpo step 0
    buf._dapo_classification_cache.clear()
    assert buf._terminal_eviction_reasons(6, "train")[1] == set()


def test_missing_component_names_the_key(tq):
    """A component missing in some samples is NaN (missing) for the estimator; missing in all is a config error."""
    tq.add_group("g", TRADE_OFF)
    for s in range(4):
        del tq.store[f"g_{s}_0"]["extra_fields"]["reward_extra_info"]["b"]
    buf = buffer(ReplayBufferAsync, SIGNAL_KEY, "gdpo")
    buf._sync_metadata_from_transfer_queue()
    with pytest.raises(KeyError, match="reward component 'b'"):
        buf._terminal_eviction_reasons(1, "train")


TRAINER = [
    "algorithm.adv_estimator=varpo_gdpo",
    f"+algorithm.varpo.reward_keys=[{','.join(KEYS)}]",
    "algorithm.filter_groups.enable=true",
]


@pytest.mark.parametrize(
    ("cls", "mode", "metric", "expected"),
    [
        (VarpoTrainerSync, "varpo", SIGNAL_KEY, VarpoReplayBuffer),  # varpo runs verl's sync code paths
        (VarpoTrainerColocateAsync, "varpo_colocate_async", SIGNAL_KEY, VarpoReplayBufferAsync),
        (VarpoTrainerSync, "varpo", "score", ReplayBuffer),
    ],
)
def test_trainer_modes_build_the_filtering_buffer(cls, mode, metric, expected):
    t = trainer(cls, TRAINER + [f"trainer.v1.trainer_mode={mode}", f"algorithm.filter_groups.metric={metric}"])
    t.trainer_mode = mode
    built = t._build_replay_buffer()
    assert type(built) is expected
    if expected not in (ReplayBuffer, ReplayBufferAsync):
        assert built.varpo_rule.method == "gdpo" and built.varpo_rule.settings.reward_keys == KEYS


def test_custom_sampler_is_left_alone():
    plain = buffer(ReplayBufferAsync, "score")
    assert use_signal_rule(plain, SignalRule("gdpo", VarpoSettings())) is plain
    assert type(use_signal_rule(buffer(ReplayBuffer, SIGNAL_KEY), SignalRule("gdpo", VarpoSettings()))) is (
        VarpoReplayBuffer
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algorithm.adv_estimator=varpo_gdpo", "trainer.v1.trainer_mode=varpo"], "judges each group"),
        (
            ["algorithm.adv_estimator=grpo", "actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo"],
            "judges each group",
        ),
        (
            [
                "algorithm.adv_estimator=varpo_gdpo",
                "+algorithm.varpo.reward_keys=[a,b]",
                "trainer.v1.trainer_mode=sync",
            ],
            "judges each group",
        ),
    ],
)
def test_varpo_signal_needs_estimator_components_and_our_mode(overrides, message):
    c = cfg(*overrides, "algorithm.filter_groups.enable=true", f"algorithm.filter_groups.metric={SIGNAL_KEY}")
    with pytest.raises(ConfigError, match=message):
        check_config(c)


def test_summed_metric_error_points_to_the_estimator_rule():
    c = cfg(
        "algorithm.adv_estimator=varpo_saw",
        "trainer.v1.trainer_mode=varpo",
        "+algorithm.varpo.reward_keys=[a,b]",
        "algorithm.filter_groups.enable=true",
        "algorithm.filter_groups.metric=score",
    )
    with pytest.raises(ConfigError, match="evicts a group iff saw gives it no signal"):
        check_config(c)


def test_legacy_trainer_warns_that_filter_groups_is_ignored():
    c = cfg(
        "algorithm.adv_estimator=varpo_gdpo",
        "trainer.use_v1=false",
        "+algorithm.varpo.reward_keys=[a,b]",
        "algorithm.filter_groups.enable=true",
        f"algorithm.filter_groups.metric={SIGNAL_KEY}",
    )
    assert any("legacy trainer" in w and "no group filter" in w for w in check_config(c))
