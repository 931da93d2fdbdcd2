"""`VarpoGRPOTrainer`: TRL's `GRPOTrainer` with varpo advantages, policy losses and loss aggregation.

Tested against trl 1.16.x (pinned in pyproject). The override surface is deliberately small; each override calls
``super()`` where TRL's code can be kept:

* ``__init__`` wraps callable reward functions in :class:`~varpo.trl.rewards.IsolatedReward` (``reward_errors``:
  a grader that raises costs only that sample's component, or stops the run) and adds the ``metrics.jsonl`` callback.
* ``_calculate_rewards``: ``super()`` returns the *globally gathered* ``[N, K]`` reward matrix; it is kept for the
  advantage step and the per-function error counts are logged.
* ``_generate_and_score_completions``: ``super()`` generates and scores as usual; its advantages are then replaced by
  the run's :class:`varpo.step.AdvantageStep` (the engine contract: options, anneals, weights at the step, the dvao
  ``SigmaEMA``, metric names; it calls :func:`varpo.compute_advantages`) over the global matrix (explicit group ids
  from TRL's contiguous ``RepeatSampler`` layout, weights = ``reward_weights``) and the local slice is kept. With
  ``dynamic_sampling`` (training) it runs the generate → filter → refill loop instead
  (:meth:`VarpoGRPOTrainer._dynamic_sampling_batch`, the logic in :mod:`varpo.trl.dynamic_sampling`), each round
  generated and scored by ``super()``. The loss normalizers of the
  whole generation batch (:func:`varpo.loss_scale`, summed over processes) are stored as 0-dim tensors, which TRL's
  shuffle/split pass through unchanged, so every micro-batch divides by the same global constants and gradient
  accumulation is exact.
* ``_prepare_inputs`` (gvpo only): TRL shuffles samples before splitting the generation batch into micro-batches,
  which would scatter groups; for gvpo the shuffle permutes whole groups instead. With ``dynamic_sampling`` the
  filtered batch is split by :func:`varpo.trl.dynamic_sampling.split`.
* ``reward_weight_schedule``: ``self.reward_weights`` is set to the step's weights at the current step before each
  generation batch is scored (one place: :meth:`VarpoGRPOTrainer.sync_reward_weights`), and logged as
  ``reward_weight/<name>``.
* ``_compute_loss``: per-token log-probs from TRL's helper, then :func:`varpo.policy_loss` +
  :func:`varpo.aggregate_loss`.
* ``_generate_single_turn`` / ``_calculate_rewards`` (gvpo with ``gvpo_history_per_group`` or
  ``gvpo_external_column``, training only): groups mix fresh samples with buffered and external responses; the
  logic lives in :mod:`varpo.trl.replay`.
* ``_save_checkpoint`` / ``_load_optimizer_and_scheduler``: persist the advantage step's state (the dvao
  ``SigmaEMA``) and the gvpo response buffer with checkpoints.
* ``train``: when it ends, finished or stopped (e.g. by a judge's ``judge_max_failure_rate``), each LLM judge's
  run totals are logged in one line and merged into ``train_summary.json`` as ``judge_summary/*``.

TRL's "All reward functions returned None for the following kwargs: <the whole row>" warning, which repeats a full
prompt every batch while a judge is down, is filtered out of TRL's logger; varpo says it once, in one line.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import torch
from accelerate.utils import gather
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.trainer.utils import (
    get_callable_name,
    is_async_callable,
    split_pixel_values_by_grid,
    split_tensor_dict,
    unsplit_pixel_values_by_grid,
)

import varpo
from varpo import registry, reward_log
from varpo.collapse import CollapseAlarm
from varpo.schedules import parse_schedule
from varpo.step import AdvantageStep
from varpo.trl import dynamic_sampling
from varpo.trl.config import VarpoGRPOConfig
from varpo.trl.metrics import MetricsJSONLCallback, update_summary
from varpo.trl.replay import REPLAY_FILE, OffPolicyGroups
from varpo.trl.rewards import IsolatedReward

logger = logging.getLogger(__name__)
STATE_FILE = "varpo_state.json"
# TRL metrics that duplicate (or, with missing rewards, misstate) what varpo logs under one name.
_TRL_DUPLICATES = ("reward", "reward_std", "frac_reward_zero_std")
_REWARD_STAT_PREFIXES = ("reward_mean/", "reward_std/")
_SCALE_KEYS = ("varpo_num_tokens", "varpo_num_seqs", "varpo_len_pow_sum")
# Forward kwargs TRL passes to `_get_per_token_logps_and_entropies` for multimodal batches (None when absent).
_FORWARD_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


#: how TRL's per-batch warning about rows without any reward starts (trl/trainer/grpo_trainer.py)
TRL_ALL_NONE = "All reward functions returned None"


class _NoRowDump(logging.Filter):
    """Drops TRL's ``All reward functions returned None for the following kwargs: {...}`` record: it prints a whole
    prompt and completion every batch (a judge outage floods the log); :class:`VarpoGRPOTrainer` says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TRL_ALL_NONE)


def _silence_trl_row_dump() -> None:
    trl_logger = logging.getLogger("trl.trainer.grpo_trainer")
    if not any(isinstance(f, _NoRowDump) for f in trl_logger.filters):
        trl_logger.addFilter(_NoRowDump())


@dataclass
class Trace:
    """Opt-in record of what the trainer computed (``trainer.trace = Trace()``), for tests and debugging.

    ``rollouts``: per generation batch, the global rewards ``[N, K]``, group ids ``[N]``, advantages ``[N]``, the
    options passed to :func:`varpo.compute_advantages` and the dvao ``SigmaEMA`` state before the call.
    With gvpo off-policy groups, ``composition`` is the :class:`~varpo.trl.replay.Composition` of the batch (row
    sources, ages, reused rewards, completion ids); otherwise None.
    ``loss_advantages``: the advantages each loss call received. ``trl_advantages``: the local advantages TRL's own
    code computed for the same batch before varpo replaced them (the "coming from TRL" parity tests compare them).
    """

    rollouts: list[dict] = field(default_factory=list)
    loss_advantages: list[torch.Tensor] = field(default_factory=list)
    trl_advantages: list[torch.Tensor] = field(default_factory=list)


def _builtin_model(name: str, kwargs: dict):
    """``builtin:tiny`` (the CLI's model string) in Python: built from the training prompts (and gold completions,
    if the dataset has them) as ``varpo train`` builds it, cached; its tokenizer becomes ``processing_class``
    unless one is given."""
    from varpo import models
    from varpo.text import completion_text, prompt_text

    dataset = kwargs.get("train_dataset")
    if dataset is None or "prompt" not in getattr(dataset, "column_names", ()):
        raise ValueError(f"model={name!r} builds its tokenizer from train_dataset's prompts; pass train_dataset=")
    completions = dataset["completion"] if "completion" in dataset.column_names else [""] * len(dataset)
    texts = [prompt_text(p) + completion_text(c) for p, c in zip(dataset["prompt"], completions, strict=True)]
    model, tokenizer = models.load(models.resolve(name, texts))
    if kwargs.get("processing_class") is None:
        kwargs["processing_class"] = tokenizer
    return model


class VarpoGRPOTrainer(GRPOTrainer):
    """Same constructor as :class:`trl.GRPOTrainer`; ``args`` must be a :class:`VarpoGRPOConfig`."""

    def __init__(self, model, reward_funcs=None, args: VarpoGRPOConfig | None = None, *pargs, callbacks=None, **kwargs):
        if not isinstance(args, VarpoGRPOConfig):
            raise TypeError(f"VarpoGRPOTrainer needs args=VarpoGRPOConfig(...), got {type(args).__name__}")
        if isinstance(model, str) and model.startswith("builtin:"):
            model = _builtin_model(model, kwargs)
        funcs = reward_funcs if isinstance(reward_funcs, list) else [] if reward_funcs is None else [reward_funcs]
        funcs = [_isolate(f, args.reward_errors) for f in funcs]
        callbacks = [*(callbacks or []), MetricsJSONLCallback()]
        _silence_trl_row_dump()
        super().__init__(model, funcs, args, *pargs, callbacks=callbacks, **kwargs)
        self._said_unscorable = False
        self.collapse_alarm = CollapseAlarm(args.collapse_window, logged_as="adv/")
        ema = None if args.sigma_ema is None else varpo.SigmaEMA(decay=args.sigma_ema, shrink=args.sigma_ema_shrink)
        self.advantage_step = AdvantageStep(
            args.advantage_method,
            self.reward_func_names,
            args.step_options(),
            reward_weights=self.reward_weights.tolist(),
            schedule=parse_schedule(args.reward_weight_schedule, len(self.reward_funcs)),
            sigma_ema=ema,
        )
        self.trace: Trace | None = None
        self._varpo_rewards: torch.Tensor | None = None
        self.replay = OffPolicyGroups.from_trainer(self)  # None unless gvpo history/external responses are on
        self._varpo_inputs: list[dict] | None = None
        if args.dynamic_sampling:
            dynamic_sampling.check_setup(self.accelerator.num_processes, self.train_dataset)

    @property
    def sigma_ema(self) -> varpo.SigmaEMA | None:
        """dvao's running σ (``sigma_ema``), held by the advantage step; None when off."""
        return self.advantage_step.sigma_ema

    def _issue_warnings_after_load(self, load_result) -> None:
        """A checkpoint of a model with tied input/output embeddings (``builtin:tiny``) stores the embedding once;
        ``lm_head.weight`` missing from it is expected, not a broken checkpoint: re-tie instead of warning."""
        missing = set(getattr(load_result, "missing_keys", ()) or ())
        config = getattr(self.model, "config", None)
        if missing and missing <= {"lm_head.weight"} and getattr(config, "tie_word_embeddings", False):
            self.model.tie_weights()
            load_result = type(load_result)(missing_keys=[], unexpected_keys=load_result.unexpected_keys)
        super()._issue_warnings_after_load(load_result)

    # ----------------------------------------------------------------------------------------------------------
    # Rewards and advantages
    # ----------------------------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        if self._replay_active():  # buffered rewards of historical responses are reused, the rest scored by TRL
            rewards = self.replay.score(
                super()._calculate_rewards,
                inputs,
                prompts,
                completions,
                completion_ids_list,
                gather=gather,
                num_processes=self.accelerator.num_processes,
                device=self.accelerator.device,
            )
        else:
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # global [N, K]
        self._varpo_rewards = rewards
        self._say_unscorable(rewards)
        mode = "train" if self.model.training else "eval"
        isolated = [(i, f) for i, f in enumerate(self.reward_funcs) if isinstance(f, IsolatedReward)]
        if isolated:
            counts = torch.tensor([float(f.pop_errors()) for _, f in isolated], device=rewards.device)
            counts = gather(counts.unsqueeze(0)).sum(0).tolist()
            for (i, _), count in zip(isolated, counts, strict=True):
                self._metrics[mode][f"reward/{self.reward_func_names[i]}/errors"].append(count)
        return rewards

    def _say_unscorable(self, rewards: torch.Tensor) -> None:
        """One line, the first time a batch has samples without any reward (TRL's own warning, which dumps the
        row every batch, is filtered out); ``adv/frac_unscorable`` counts them every step."""
        empty = int(torch.isnan(rewards).all(dim=1).sum()) if rewards.numel() else 0
        if empty and not self._said_unscorable and self.accelerator.is_main_process:
            self._said_unscorable = True
            logger.warning(
                "%d/%d samples of a batch have no reward from any reward function (every component missing, e.g. "
                "the judge failed): advantage 0, no learning signal; said once, adv/frac_unscorable tracks it per step",
                empty,
                rewards.shape[0],
            )

    # ----------------------------------------------------------------------------------------------------------
    # End of run: judge summary
    # ----------------------------------------------------------------------------------------------------------

    def train(self, *args, **kwargs):
        """TRL's ``train``, then (finished or stopped) the judges' run totals: :meth:`report_judges`."""
        try:
            out = super().train(*args, **kwargs)
        except BaseException as err:
            self.report_judges(stopped=err)
            raise
        self.report_judges()
        return out

    def judges(self) -> list:
        """The LLM judges (:class:`~varpo.judge.judge.JudgeRewards`) behind the reward functions, each once."""
        found: list = []
        for func in self.reward_funcs:
            judge = getattr(getattr(func, "func", func), "judge", None)
            if callable(getattr(judge, "summary", None)) and not any(judge is j for j in found):
                found.append(judge)
        return found

    def report_judges(self, stopped: BaseException | None = None) -> dict:
        """Log each judge's one-line run summary (a warning when judgments failed) and merge its totals into
        ``<output_dir>/train_summary.json`` as ``judge_summary/<key>`` (``judge_summary/<i>/<key>`` with several
        judges), with ``stopped`` (the error) when the run did not finish. Counts are this process's. Returns the
        record written ({} without a judge). Never raises: the run's own outcome must not be masked."""
        judges = self.judges()
        if not judges or not self.accelerator.is_main_process:
            return {}
        record: dict = {}
        for i, judge in enumerate(judges):
            prefix = "judge_summary/" if len(judges) == 1 else f"judge_summary/{i}/"
            summary = judge.summary()
            (logger.warning if summary.get("failures") else logger.info)("run summary: %s", judge.summary_line())
            record.update({prefix + key: value for key, value in summary.items()})
        if stopped is not None:
            record["stopped"] = f"{type(stopped).__name__}: {' '.join(str(stopped).split())}"
        try:
            update_summary(self.args.output_dir, record, step=self.state.global_step)
        except OSError as err:
            logger.warning("judge summary not written to %s: %s", self.args.output_dir, err)
        return record

    def _replay_active(self) -> bool:
        return self.replay is not None and self.model.training

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if not self._replay_active():
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        if images is not None or multimodal_fields:
            raise ValueError("gvpo_history_per_group/gvpo_external_column do not support multimodal prompts yet")
        generate = super()._generate_single_turn

        def fresh(subset):
            return generate(subset, None, {}, num_generations, has_tool_images)

        return self.replay.compose(prompt_ids, self._varpo_inputs, self.state.global_step, fresh)

    def sync_reward_weights(self) -> None:
        """Set ``reward_weights`` (what TRL's own code reads too) to the advantage step's weights at the current
        optimizer step when a ``reward_weight_schedule`` is set. Called once per generation batch, from
        :meth:`_generate_and_score_completions` only."""
        if self.advantage_step.schedule is not None:
            w = self.advantage_step.weights_at(self.state.global_step)
            self.reward_weights = torch.tensor(w, dtype=torch.float32, device=self.reward_weights.device)

    def _generate_and_score_completions(self, inputs):
        self._varpo_inputs = inputs  # rows aligned with the prompts, for external responses
        self.sync_reward_weights()
        if self.args.dynamic_sampling and self.model.training:
            return self._dynamic_sampling_batch(inputs)
        out = super()._generate_and_score_completions(inputs)
        return self._apply_varpo(out, self._varpo_rewards)

    def _dynamic_sampling_batch(self, inputs: list) -> dict:
        """The training generation batch with dynamic sampling (:mod:`varpo.trl.dynamic_sampling`): rounds
        generated and scored by TRL (``super()``), groups kept by the advantage step's :meth:`~AdvantageStep.signal`
        at this step (no running σ: filtering must not move it), varpo advantages and loss normalizers of the kept
        batch, ``varpo_sample_weight`` and the ``dynamic_sampling/*`` metrics."""
        generate_round = super()._generate_and_score_completions
        step, total = self.state.global_step, self.state.max_steps
        weights = self.reward_weights.detach().cpu()
        group_size = self.num_generations

        def run(rows: list) -> tuple[dict, torch.Tensor]:
            batch = generate_round(rows)
            return batch, self._varpo_rewards

        def signal(rewards: torch.Tensor):
            cpu = rewards.detach().cpu()
            return self.advantage_step.signal(cpu, group_size, step=step, total_steps=total, weights=weights)

        return dynamic_sampling.generate(
            run,
            signal,
            inputs,
            self.train_dataset,
            apply=self._apply_varpo,
            loss_mask=self._loss_mask,
            metrics=self._metrics["train"],
            names=list(self.reward_func_names),
            group_size=group_size,
            seed=self.args.seed,
            step=step,
            max_rounds=self.args.dynamic_sampling_max_rounds,
            on_cap=self.args.dynamic_sampling_on_cap,
            pad_token_id=self._tokenizer.pad_token_id,
            method=self.args.advantage_method,
        )

    def _apply_varpo(self, out: dict, rewards: torch.Tensor) -> dict:
        """Replace TRL's advantages in ``out`` by varpo's over the global ``rewards [N, K]``; add group ids and the
        global loss normalizers; log the advantage statistics."""
        train = self.model.training
        mode = "train" if train else "eval"
        group_size = self.num_generations if train else self.num_generations_eval
        n = rewards.shape[0]
        # RepeatSampler puts the G copies of a prompt next to each other and gather() concatenates processes in
        # rank order, so sample j of the global batch belongs to prompt j // G.
        group_ids = torch.arange(n, device=rewards.device) // group_size
        record = self.trace is not None and train and self.sigma_ema is not None
        ema_before = self.sigma_ema.state_dict() if record else None
        result = self.advantage_step.compute(
            rewards,
            group_ids,
            step=self.state.global_step,
            total_steps=self.state.max_steps,
            weights=self.reward_weights.to(rewards.device),
            train=train,  # evaluation must not move the running σ
        )
        if self.trace is not None and train:
            self.trace.trl_advantages.append(out["advantages"].detach().cpu().clone())
        b = out["advantages"].shape[0]
        local = slice(self.accelerator.process_index * b, (self.accelerator.process_index + 1) * b)
        composition = self.replay.pending if self._replay_active() else None
        if composition is not None:
            for key, value in self.replay.record(rewards[local]).items():
                self._metrics[mode][key].append(value)
        out["advantages"] = result.advantages[local].to(out["advantages"].device)
        out["varpo_group_ids"] = group_ids[local]
        for key, value in zip(_SCALE_KEYS, self._global_scale(out), strict=True):
            out[key] = value
        self._log_advantage_stats(mode, result)
        if train:
            self._check_collapse(result.stats)
        if train and self.args.log_reward_matrix and self.accelerator.is_main_process:
            self._append_reward_log(rewards, group_ids, out)
        if self.trace is not None and train:
            self.trace.rollouts.append(
                dict(
                    step=self.state.global_step,
                    rewards=rewards.detach().cpu().clone(),
                    group_ids=group_ids.cpu(),
                    advantages=result.advantages.detach().cpu().clone(),
                    weights=self.reward_weights.clone(),
                    options=dict(result.options),
                    sigma_ema_state=ema_before,
                    composition=composition,
                )
            )
        return out

    def _check_collapse(self, stats: dict[str, float]) -> None:
        """The objective-collapse alarm (:mod:`varpo.collapse`, ``collapse_window``): one line per collapse. Every
        process sees the same global statistics; the main process says it."""
        for line in self.collapse_alarm.update(stats, step=self.state.global_step):
            if self.accelerator.is_main_process:
                logger.warning("varpo: %s", line)

    def _append_reward_log(self, rewards, group_ids, out) -> None:
        """Opt-in ``log_reward_matrix``: one compressed file per generation batch (see varpo.reward_log)."""
        single = self.accelerator.num_processes == 1  # completion lengths are local; logged on one process only
        reward_log.append(
            os.path.join(self.args.output_dir, "reward_log"),
            step=self.state.global_step,
            rewards=rewards.detach().float().cpu().numpy(),
            group_ids=group_ids.cpu().numpy(),
            names=self.reward_func_names,
            weights=self.reward_weights.detach().cpu().numpy(),
            lengths=out["completion_mask"].sum(1).cpu().numpy() if single else None,
        )

    def _global_scale(self, out) -> tuple[torch.Tensor, ...]:
        """Loss normalizers (tokens, sequences, Σ L^-α) of the whole generation batch, summed over processes."""
        mask = self._loss_mask(out)
        if registry.is_per_sequence(self.args.policy_loss):
            mask = torch.ones(mask.shape[0], 1, device=mask.device)  # one loss "token" per sequence
        s = varpo.loss_scale(mask, alpha=self.args.vl_norm_alpha)
        local = torch.tensor([s.num_tokens, s.num_seqs, s.len_pow_sum], dtype=torch.float64, device=mask.device)
        total = gather(local.unsqueeze(0)).sum(0) if self.accelerator.num_processes > 1 else local
        return tuple(total.unbind())

    def _log_advantage_stats(self, mode: str, result) -> None:
        """One name per quantity (``docs/engine.md``, "Metrics"): per-component reward statistics only as
        ``reward/<name>/mean|std``, everything else from the estimator as ``adv/<key>``, and what moves with the step
        (``result.scheduled``: ``reward_weight/<name>``, annealed options) under its own name. ``result.stats`` is
        :attr:`varpo.AdvantageOutput.present_stats`: a key without a value this batch (a component missing from the
        whole batch) is not there, so it is not appended and the logged record leaves it out instead of showing 0."""
        metrics = self._metrics[mode]
        stats = result.stats
        for name in self.reward_func_names:
            # TRL's duplicates of the same numbers (and its nansum-based `reward`, which scores a missing
            # component as 0) are dropped; frac_reward_zero_std is superseded by adv/frac_zero_std_groups.
            for key in (f"rewards/{name}/mean", f"rewards/{name}/std"):
                metrics.pop(key, None)
        for key in _TRL_DUPLICATES:
            metrics.pop(key, None)
        for key, value in stats.items():
            if not key.startswith(_REWARD_STAT_PREFIXES):
                metrics[f"adv/{key}"].append(value)
        for name in self.reward_func_names:
            for stat in ("mean", "std"):
                if f"reward_{stat}/{name}" in stats:
                    metrics[f"reward/{name}/{stat}"].append(stats[f"reward_{stat}/{name}"])
        for key, value in result.scheduled.items():
            metrics[key].append(value)

    # ----------------------------------------------------------------------------------------------------------
    # Micro-batching and loss
    # ----------------------------------------------------------------------------------------------------------

    def _prepare_inputs(self, generation_batch):
        ds = self.args.dynamic_sampling
        if not self.model.training or (not registry.is_per_sequence(self.args.policy_loss) and not ds):
            return super()._prepare_inputs(generation_batch)
        # Same as GRPOTrainer._prepare_inputs (train branch) with a group-preserving shuffle / dynamic sampling.
        generate_every = self.args.steps_per_generation * self.num_iterations
        if ds and (self._step % generate_every == 0 or self._buffered_inputs is None):
            batch = self._generate_and_score_completions(generation_batch)  # the dynamic sampling loop
            self._buffered_inputs = self._split_dynamic(batch)
        elif self._step % generate_every == 0 or self._buffered_inputs is None:
            batch = self._generate_and_score_completions(generation_batch)
            batch = split_pixel_values_by_grid(batch)
            batch = shuffle_groups(batch, batch["varpo_group_ids"])
            chunks = split_tensor_dict(batch, self.args.steps_per_generation)
            self._buffered_inputs = [unsplit_pixel_values_by_grid(chunk) for chunk in chunks]
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    def _split_dynamic(self, batch: dict) -> list[dict]:
        """Micro-batches of a dynamic sampling batch (:func:`varpo.trl.dynamic_sampling.split`)."""
        return dynamic_sampling.split(
            batch,
            self.args.steps_per_generation,
            generation_batch_size=self.args.generation_batch_size,
            per_sequence=registry.is_per_sequence(self.args.policy_loss),
        )

    @staticmethod
    def _loss_mask(inputs) -> torch.Tensor:
        mask = inputs["completion_mask"]
        return mask * inputs["tool_mask"] if inputs.get("tool_mask") is not None else mask

    def _compute_loss(self, model, inputs):
        args = self.args
        train = self.model.training
        mode = "train" if train else "eval"
        prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        mask = self._loss_mask(inputs)
        logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            completion_ids.size(1),
            compute_entropy=True,
            **{key: inputs.get(key) for key in _FORWARD_KEYS},
        )
        old = inputs.get("old_per_token_logps")
        old = logps.detach() if old is None else old
        advantages = inputs["advantages"]
        if self.trace is not None and train:
            self.trace.loss_advantages.append(advantages.detach().cpu().clone())
        scale = varpo.LossScale(*(float(inputs[k]) for k in _SCALE_KEYS), alpha=args.vl_norm_alpha)

        if registry.is_per_sequence(args.policy_loss):  # gvpo or a registered per-sequence loss
            group_ids = inputs["varpo_group_ids"]
            group_size = self.num_generations if train else self.num_generations_eval
            _assert_whole_groups(group_ids, group_size)
            extra = {"gvpo_beta": args.gvpo_beta} if args.policy_loss == "gvpo" else {}
            loss_matrix, metrics = varpo.policy_loss(
                args.policy_loss,
                logprobs=logps,
                old_logprobs=old,
                advantages=advantages,
                mask=mask,
                group_ids=group_ids,
                group_size=group_size,
                **extra,
            )
            agg_mask = torch.ones_like(loss_matrix)
        else:
            loss_matrix, metrics = varpo.policy_loss(
                args.policy_loss,
                logprobs=logps,
                old_logprobs=old,
                advantages=advantages,
                mask=mask,
                ref_logprobs=inputs.get("ref_per_token_logps"),
                beta=self.beta,
                clip_low=self.epsilon_low,
                clip_high=self.epsilon_high,
                importance_sampling_level=self.importance_sampling_level,
                clip_ratio_c=args.clip_ratio_c,
            )
            if "importance_sampling_ratio" in inputs:  # vLLM sampler/trainer mismatch correction, as in TRL
                loss_matrix = loss_matrix * inputs["importance_sampling_ratio"]
            agg_mask = mask
        if dynamic_sampling.WEIGHT_KEY in inputs:  # 0 on dynamic sampling's padding rows: exactly no contribution
            loss_matrix = loss_matrix * inputs[dynamic_sampling.WEIGHT_KEY].unsqueeze(1).to(loss_matrix.dtype)
        loss = varpo.aggregate_loss(
            loss_matrix,
            agg_mask,
            args.loss_aggregation,
            max_length=args.max_response_length,
            alpha=args.vl_norm_alpha,
            scale=scale,
        )
        # `scale` spans the whole generation batch of all processes: DDP averages gradients over processes (x P)
        # and one optimizer step sees steps_per_generation / grad_accum of the generation batch.
        factor = self.accelerator.num_processes
        if train:
            factor = factor * args.steps_per_generation / self.current_gradient_accumulation_steps
        loss = loss * factor
        self._log_loss_metrics(mode, metrics, entropies, mask)
        return loss

    def _log_loss_metrics(self, mode: str, metrics: dict[str, float], entropies, mask) -> None:
        m = mask.to(entropies.dtype)
        local = [(entropies.detach() * m).sum(), m.sum(), *(torch.tensor(float(v)) for v in metrics.values())]
        values = torch.stack([v.to(entropies.device, torch.float64) for v in local])
        if self.accelerator.num_processes > 1:
            values = gather(values.unsqueeze(0))
            totals = values.sum(0)
            means = values.mean(0)
        else:
            totals = means = values
        self._metrics[mode]["entropy"].append(float(totals[0] / totals[1].clamp_min(1.0)))
        for key, value in zip(metrics, means[2:].tolist(), strict=True):
            self._metrics[mode][f"loss/{key}"].append(value)

    # ----------------------------------------------------------------------------------------------------------
    # Checkpoints: the advantage step's state (dvao's running σ) is training state
    # ----------------------------------------------------------------------------------------------------------

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        state = self.advantage_step.state_dict()
        if state and self.args.should_save:
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            with open(os.path.join(folder, STATE_FILE), "w") as f:
                json.dump(state, f)
        if self.replay is not None:  # every process holds its own buffer
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            self.replay.save(os.path.join(folder, REPLAY_FILE.format(rank=self.accelerator.process_index)))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, STATE_FILE) if checkpoint else None
        if self.sigma_ema is not None and path and os.path.exists(path):
            with open(path) as f:
                self.advantage_step.load_state_dict(json.load(f))
        replay = os.path.join(checkpoint, REPLAY_FILE.format(rank=self.accelerator.process_index)) if checkpoint else ""
        if self.replay is not None and os.path.exists(replay):
            self.replay.load(replay, num_rewards=len(self.reward_funcs))


def _isolate(func, mode: str = "isolate"):
    """Wrap plain callables; reward models (nn.Module), hub ids and async functions are passed to TRL unchanged."""
    if isinstance(func, (str, torch.nn.Module, IsolatedReward)) or is_async_callable(func):
        return func
    return IsolatedReward(func, get_callable_name(func), mode)


def shuffle_groups(batch: dict, group_ids: torch.Tensor) -> dict:
    """Shuffle a generation batch by whole groups (contiguous runs of equal ``group_ids``), like TRL's
    ``shuffle_sequence_dict`` but keeping each group's samples adjacent so an even split never cuts a group."""
    ids = group_ids.cpu()
    _, counts = torch.unique_consecutive(ids, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    order = torch.randperm(len(counts))
    perm = torch.cat([torch.arange(int(starts[g]), int(starts[g] + counts[g])) for g in order.tolist()])

    def permute(value):
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            return value
        if isinstance(value, torch.Tensor):
            return value[perm.to(value.device)]
        return [value[i] for i in perm.tolist()]

    return {key: permute(value) for key, value in batch.items()}


def _assert_whole_groups(group_ids: torch.Tensor, group_size: int) -> None:
    _, counts = torch.unique(group_ids, return_counts=True)
    if not bool((counts == group_size).all()):
        raise RuntimeError(
            f"gvpo micro-batch holds partial groups (sizes {sorted(set(counts.tolist()))}, expected {group_size}); "
            "per_device_train_batch_size must be a multiple of num_generations"
        )
