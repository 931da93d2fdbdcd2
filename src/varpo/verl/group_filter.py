"""verl's DAPO group filter with the estimator's own rule: ``algorithm.filter_groups.metric=varpo_signal``.

verl 0.9.1's V1 replay buffer (``verl/trainer/ppo/v1/replay_buffer.py``) evicts, and refills with fresh prompts,
every finished group whose ``filter_groups.metric`` — one scalar per trajectory — has ``np.std == 0``
(``ReplayBuffer._dapo_filtered_keys``). No per-sample scalar can say whether a multi-reward estimator gives a group
signal: the summed score hides trade-offs that per-objective estimators train on, and a code of the whole
component vector keeps groups whose per-objective advantages cancel (K = 2, equal weights, constant sum under
gdpo/ac/saw/rvpo: every advantage exactly 0). So in varpo's V1 trainer modes the metric name ``varpo_signal``
selects a replay buffer that judges each finished group with the configured estimator
(:func:`varpo.group_filter.group_signal`, the rule TRL's dynamic sampling uses) on that group's reward components.

What is exact and what is not:

* grpo, dr_grpo, dvao and ac are per-group estimators: the group alone gets the advantages it gets in any batch,
  so the decision is exact. (dvao's running σ is left out: filtering must not move it, and it only rescales a
  group whose weighted sum varies, which is kept anyway.)
* gdpo and rvpo whiten over the batch after a per-group step (z-scores, weighted sum / soft-min). Whitening is
  affine, so a group's advantages vary in the batch iff they vary on the group alone: a group evicted here would
  get at most a constant shift from the batch (rvpo's K = 2 trade-off group: -0.22 for every sample), which carries
  no within-group signal. Exact for what the group contributes beyond that shift.
* saw's CV weights are computed over the training batch, which does not exist yet when a group finishes (groups
  finish one by one, asynchronously): the group is judged on its own CV weights, before the batch step. A
  trade-off group to which the batch's unequal weights would give a small advantage can then be evicted (TRL's
  dynamic sampling, which filters whole generation rounds, decides on the batch instead; ``docs/engine.md``).

Weights and options are those of the step the sampled batch will train on (``global_steps`` of the replay
buffer's call, :func:`varpo.schedules.step_of_verl`); a group keeps the decision of the step at which it was first
seen finished (verl caches it: finished groups are immutable).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from verl.trainer.ppo.v1 import replay_buffer as _rb
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from varpo.schedules import step_of_verl
from varpo.verl.batching import reward_components
from varpo.verl.estimators import _component
from varpo.verl.settings import SIGNAL_METRIC, VarpoSettings, needs_step


@dataclass(frozen=True)
class SignalRule:
    """The configured estimator's keep rule for one group, with the run's settings."""

    method: str
    settings: VarpoSettings
    #: the run's number of training steps (for ``rvpo_k_end``), read when needed: verl sets it after the buffer.
    total_steps: Callable[[], int | None] = lambda: None

    def weights(self, step: int) -> tuple[float, ...] | None:
        return self.settings.weights_at(step)

    def keeps(self, rewards: torch.Tensor, step: int) -> bool:
        """Whether a finished group (``rewards [G, K]``, NaN = missing) has signal under the estimator at ``step``
        (the engine contract's :meth:`varpo.step.AdvantageStep.signal`, without the running σ).

        A single trajectory is kept, as verl keeps it (its ``np.std`` test needs two values).
        """
        if rewards.shape[0] < 2:
            return True
        with needs_step():
            signal = self.settings.advantage_step(self.method).signal(
                rewards, rewards.shape[0], step=step, total_steps=self.total_steps()
            )
        return bool(signal.keep[0])

    def level(self, rewards: torch.Tensor, step: int) -> float:
        """The group's mean weighted reward Σ_k w_k r_k (missing skipped): the value verl counts evicted groups by
        (``_dapo_filtered_reward_counts``); constant in every group the rule evicts."""
        k = rewards.shape[1]
        w = self.weights(step)
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if w is None else torch.as_tensor(w, dtype=torch.float64)
        return float(torch.nan_to_num(rewards.to(torch.float64), 0.0).mul(w).sum(1).mean())


class SignalFilterMixin:
    """Put before verl's ``ReplayBuffer`` / ``ReplayBufferAsync``: classifies new finished groups with
    :class:`SignalRule` into verl's own classification cache, then lets verl's code do everything else.

    verl's ``_dapo_filtered_keys`` classifies only the finished groups missing from ``_dapo_classification_cache``
    (value = the shared metric value: evict; ``None``: keep) and then evicts from the cache, drops entries of groups
    no longer finished, counts and refills. Filling that cache first for the groups it would read is the one
    change: no copy of verl's method. The hook is ``_terminal_eviction_reasons`` (sync and async both call it,
    with the step being sampled for, before ``_dapo_filtered_keys``).
    """

    varpo_rule: SignalRule

    def _terminal_eviction_reasons(self, global_steps: int, partition_id: str):
        if partition_id != "val" and self.filter_groups_metric == SIGNAL_METRIC:
            self._varpo_classify(partition_id, step_of_verl(global_steps))
        return super()._terminal_eviction_reasons(global_steps, partition_id)

    def _varpo_classify(self, partition_id: str, step: int) -> None:
        cache = self._dapo_classification_cache[partition_id]
        new = self.finished_keys[partition_id] - cache.keys()
        keys = [key for key in self.partitions[partition_id] if key.split("_")[0] in new]
        if not keys:  # finished groups without trajectories: verl's own pass reports them
            return
        reward_keys = self.varpo_rule.settings.reward_keys
        fields = ["uid", "extra_fields", *reward_keys]
        data = _rb.tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=fields)
        columns = reward_components(data, reward_keys)
        matrix = torch.from_numpy(np.stack([_component(columns, k, len(keys)) for k in reward_keys], axis=1))
        rows: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            rows[key.split("_")[0]].append(i)
        for uid, idx in rows.items():
            group = matrix[idx]
            cache[uid] = None if self.varpo_rule.keeps(group, step) else self.varpo_rule.level(group, step)


class VarpoReplayBuffer(SignalFilterMixin, ReplayBuffer):
    """verl's sync replay buffer, groups judged by :class:`SignalRule`."""


class VarpoReplayBufferAsync(SignalFilterMixin, ReplayBufferAsync):
    """verl's async replay buffer, groups judged by :class:`SignalRule`."""


_WITH_RULE = {ReplayBuffer: VarpoReplayBuffer, ReplayBufferAsync: VarpoReplayBufferAsync}


def use_signal_rule(buffer: ReplayBuffer, rule: SignalRule) -> ReplayBuffer:
    """``buffer`` (built by verl's ``_build_replay_buffer``) judging groups with ``rule``, when its metric is
    ``varpo_signal``; any other buffer is returned as it is.

    verl's builder picks one of its two classes and passes the sync class extra arguments after an identity check
    (``sampler_cls is ReplayBuffer``), so a subclass cannot be constructed through it without copying it. Instead
    the built instance gets the matching subclass, which adds methods only (no state of its own besides the rule).
    A custom sampler (``trainer.v1.sampler.custom_sampler``) owns its filtering and is left alone.
    """
    cls = _WITH_RULE.get(type(buffer))
    if cls is None or getattr(buffer, "filter_groups_metric", None) != SIGNAL_METRIC:
        return buffer
    buffer.__class__ = cls
    buffer.varpo_rule = rule
    return buffer
