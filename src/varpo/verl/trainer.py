"""varpo's V1 trainer modes: verl's ``sync`` / ``colocate_async`` / ``separate_async`` trainers plus three overrides.

Selected with ``trainer.v1.trainer_mode=varpo`` (or ``varpo_colocate_async`` / ``varpo_separate_async``) through
verl's public ``register_trainer`` registry — subclasses, not patches.

Why they exist: verl 0.9's V1 ``PPOTrainer._compute_advantage`` reads only ``uid``, ``response_mask``,
``rm_scores`` and log-probs from TransferQueue, so the per-component rewards a reward function returns (stored per
sample in ``extra_fields["reward_extra_info"]``) never reach an estimator — not even verl's own ``gdpo``.

* ``_compute_advantage``: fetch ``uid`` + ``extra_fields`` (and same-named top-level fields, where verl's colocated
  reward-model path puts components) for the batch's keys, open :func:`varpo.verl.state.advantage_context` with
  the components, the step and this trainer's state, run verl's own method unchanged, then log the core's
  diagnostics as ``varpo/<stat>`` metrics and feed them to the objective-collapse alarm (:mod:`varpo.collapse`).
* ``trainer_mode``: verl's own mode name (``sync``, ``colocate_async``, ``separate_async``), so verl's
  mode-dependent code paths and ``trainer.v1.<mode>.*`` settings apply to the mode we extend.
* ``_build_replay_buffer``: with ``algorithm.filter_groups.metric=varpo_signal``, verl's replay buffer judges each
  finished group with the configured estimator on its components (:mod:`varpo.verl.group_filter`) instead of
  ``np.std`` of one scalar per sample.
* ``_save_checkpoint`` / ``_load_checkpoint``: after verl's own, save / restore the trainer's varpo state (dvao's
  running σ̄) in the same ``global_step_<n>`` folder.
* ``_balance_batch`` (GVPO only): verl balances sequence lengths across DP ranks row by row, which splits groups.
  We balance whole uid groups instead (same verl partitioner, applied to group workloads), so every rank holds
  complete groups, contiguously.
* ``_update_actor`` (GVPO only): set verl's ``force_group_size = rollout.n`` so the engine's micro-batching (fixed
  or dynamic) never splits those contiguous groups.
* ``init`` (GVPO only): install :func:`varpo.verl.losses.worker_loss` on the actor with verl's public
  ``set_loss_fn``, so the ``varpo_gvpo`` policy loss sees each micro-batch's uids.
"""

from __future__ import annotations

import logging
from functools import partial

from verl.trainer.ppo.v1 import (
    PPOTrainer,
    PPOTrainerColocateAsync,
    PPOTrainerSeparateAsync,
    PPOTrainerSync,
    register_trainer,
)
from verl.trainer.ppo.v1 import trainer_base as _base
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.seqlen_balancing import log_seqlen_unbalance

from varpo.collapse import CollapseAlarm
from varpo.verl import TRAINER_MODES, state
from varpo.verl.batching import group_aligned_order, reward_components
from varpo.verl.context import as_list
from varpo.verl.group_filter import SignalRule, use_signal_rule
from varpo.verl.losses import worker_loss
from varpo.verl.settings import METHOD_OF_ESTIMATOR, VarpoSettings, check_config, uses_gvpo

logger = logging.getLogger("varpo.verl")


class VarpoTrainerMixin:
    """The overrides shared by all varpo V1 modes (put before a verl ``PPOTrainer`` subclass in the bases)."""

    #: verl's own mode this varpo mode extends (set by each subclass).
    verl_mode: str = "sync"

    @property
    def trainer_mode(self) -> str:
        """verl's mode name, not ours: verl branches on ``self.trainer_mode == "sync"`` (replay buffer class, prompt
        submission, checkpoints, refill) and reads ``trainer.v1.<mode>.*`` settings, so ``varpo`` must behave as
        ``sync`` and ``varpo_colocate_async`` read ``trainer.v1.colocate_async.*`` (verl assigns
        ``self.trainer_mode = config.trainer.v1.trainer_mode`` in ``__init__``; the setter maps it)."""
        return self.__dict__["_verl_trainer_mode"]

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        self.__dict__["_verl_trainer_mode"] = self.verl_mode if value in TRAINER_MODES else value

    @property
    def varpo_settings(self) -> VarpoSettings:
        return VarpoSettings.from_algorithm(self.config.algorithm)

    def init(self):
        for warning in check_config(self.config):
            logger.warning("varpo: %s", warning)
        super().init()
        self.install_worker_loss()

    def install_worker_loss(self) -> None:
        """GVPO only: verl's ``ppo_loss`` with the micro-batch's uids exposed, on the actor workers."""
        if not uses_gvpo(self.config):
            return
        actor_config = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
        loss = partial(
            worker_loss,
            config=actor_config,
            gvpo_beta=self.varpo_settings.gvpo_beta,
            group_size=int(self.config.actor_rollout_ref.rollout.n),
        )
        self.actor_rollout_wg.set_loss_fn(loss)
        logger.info("varpo: actor loss set to varpo.verl.losses.worker_loss (GVPO groups by uid)")

    # -- reward components -----------------------------------------------------------------------------------

    def _varpo_columns(self, batch) -> dict[str, list]:
        keys = self.varpo_settings.reward_keys
        if not keys:
            return {}
        fields = ["uid", "extra_fields", *keys]  # verl's own gets select optional fields the same way
        data = _base.tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        return reward_components(data, keys)

    def _compute_advantage(self, batch, metrics: dict):
        if self.config.algorithm.adv_estimator not in METHOD_OF_ESTIMATOR:
            return super()._compute_advantage(batch, metrics)
        with state.advantage_context(self, self._varpo_columns(batch)) as inputs:
            batch = super()._compute_advantage(batch, metrics)
        metrics.update({f"varpo/{k}": v for k, v in inputs.stats.items()})
        self._check_collapse(inputs.stats)
        return batch

    def _check_collapse(self, stats: dict) -> None:
        """The objective-collapse alarm (:mod:`varpo.collapse`, ``algorithm.varpo.collapse_window``)."""
        alarm = self.__dict__.get("_varpo_collapse")
        if alarm is None:
            alarm = self.__dict__["_varpo_collapse"] = CollapseAlarm(
                self.varpo_settings.collapse_window, logged_as="varpo/"
            )
        for line in alarm.update(stats, step=getattr(self, "global_steps", None)):
            logger.warning("varpo: %s", line)

    # -- DAPO group filtering with the estimator's own rule ----------------------------------------------------

    def _build_replay_buffer(self):
        buffer = super()._build_replay_buffer()
        method = METHOD_OF_ESTIMATOR.get(self.config.algorithm.adv_estimator)
        settings = self.varpo_settings
        if method is None or not settings.reward_keys:  # check_config rejects varpo_signal here at init
            return buffer
        rule = SignalRule(method, settings, total_steps=lambda: getattr(self, "total_training_steps", None))
        return use_signal_rule(buffer, rule)

    # -- estimator state (dvao's running σ̄) saved and restored with verl's checkpoints --------------------

    def _save_checkpoint(self):
        out = super()._save_checkpoint()
        state.save(self)
        return out

    def _load_checkpoint(self):
        out = super()._load_checkpoint()
        state.load(self)
        return out

    # -- GVPO: whole groups per DP rank and per micro-batch --------------------------------------------------

    def _varpo_dp_size(self) -> int:
        wg = self.actor_rollout_wg
        if "actor" not in wg._dispatch_info:
            wg._dispatch_info["actor"] = wg._query_dispatch_info("actor")
        return max(wg._dispatch_info["actor"]) + 1

    def _balance_batch(self, batch, metrics, logging_prefix="global_seqlen", keep_minibatch=False):
        if not uses_gvpo(self.config):
            return super()._balance_batch(batch, metrics, logging_prefix=logging_prefix, keep_minibatch=keep_minibatch)
        actor = self.config.actor_rollout_ref.actor
        dp_size = self._varpo_dp_size()
        if actor.ppo_mini_batch_size % dp_size:
            raise ValueError(
                f"varpo_gvpo: actor.ppo_mini_batch_size={actor.ppo_mini_batch_size} prompts must be a multiple of "
                f"the DP size {dp_size} so every rank's mini-batch holds whole groups"
            )
        micro = actor.get("ppo_micro_batch_size_per_gpu")
        if not actor.use_dynamic_bsz and micro and (actor.ppo_mini_batch_size // dp_size) % micro:
            raise ValueError(
                f"varpo_gvpo: with force_group_size=rollout.n, ppo_micro_batch_size_per_gpu counts groups; "
                f"{actor.ppo_mini_batch_size // dp_size} groups per rank and mini-batch is not a multiple of {micro}"
            )
        uids = as_list(
            _base.tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid"])["uid"]
        )
        seq_lens = [tag["seq_len"] for tag in batch.tags]
        order, partitions = group_aligned_order(
            uids,
            seq_lens,
            dp_size=dp_size,
            group_size=int(self.config.actor_rollout_ref.rollout.n),
            batch_multiple=self._get_required_batch_multiple(dp_size),
        )
        batch.reorder(order)
        metrics.update(log_seqlen_unbalance(seqlen_list=seq_lens, partitions=partitions, prefix=logging_prefix))
        return batch

    def _update_actor(self, batch, metrics: dict):
        if uses_gvpo(self.config):
            batch.extra_info["force_group_size"] = int(self.config.actor_rollout_ref.rollout.n)
        return super()._update_actor(batch, metrics)


@register_trainer("varpo")
class VarpoTrainerSync(VarpoTrainerMixin, PPOTrainerSync):
    """verl's ``sync`` trainer with varpo's components, GVPO grouping and worker loss."""

    verl_mode = "sync"


@register_trainer("varpo_colocate_async")
class VarpoTrainerColocateAsync(VarpoTrainerMixin, PPOTrainerColocateAsync):
    """verl's ``colocate_async`` trainer with varpo's overrides."""

    verl_mode = "colocate_async"


@register_trainer("varpo_separate_async")
class VarpoTrainerSeparateAsync(VarpoTrainerMixin, PPOTrainerSeparateAsync):
    """verl's ``separate_async`` trainer with varpo's overrides."""

    verl_mode = "separate_async"


#: mode name -> class, for tests and docs.
MODES: dict[str, type[PPOTrainer]] = {
    "varpo": VarpoTrainerSync,
    "varpo_colocate_async": VarpoTrainerColocateAsync,
    "varpo_separate_async": VarpoTrainerSeparateAsync,
}
