"""`VarpoGRPOConfig`: TRL's `GRPOConfig` plus the varpo estimator, policy loss and loss aggregation options.

One dataclass drives the Python API, the CLI (`key=value` overrides, see :mod:`varpo.run.spec`) and YAML (keys are
field names). Every invalid value or combination fails in ``__post_init__`` with a one-line ``ValueError`` that names
the field and the allowed values, so a bad run never starts a model download or a rollout.

TRL options that VarpoGRPOTrainer replaces (``loss_type``, ``multi_objective_aggregation``, ``scale_rewards``) or
whose loss-side features the varpo loss does not implement (``delta``, ``top_entropy_quantile``,
``off_policy_mask_threshold``, entropy bonus, liger) must stay at their defaults: silently ignoring them would train
something else than what the config says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
from trl import GRPOConfig

from varpo import registry
from varpo.advantages import METHODS, RVPO_VARIANTS, SAW_BASES
from varpo.aggregation import AGGREGATIONS
from varpo.checks import is_int, is_real
from varpo.collapse import DEFAULT_WINDOW, check_window
from varpo.losses import POLICY_LOSSES
from varpo.schedules import parse_schedule
from varpo.step import OPTIONS, resolve
from varpo.trl import replay_config
from varpo.trl.dynamic_sampling import ON_CAP
from varpo.trl.rewards import REWARD_ERROR_MODES

# TRL fields the varpo trainer supersedes or does not support, with the value they must keep.
_TRL_SUPERSEDED = {
    "loss_type": ("dapo", "use policy_loss and loss_aggregation"),
    "multi_objective_aggregation": ("sum_then_normalize", "use advantage_method"),
    "scale_rewards": ("group", "use advantage_method"),
    "delta": (None, "two-sided clipping is not part of varpo's ppo_clip"),
    "top_entropy_quantile": (1.0, "not supported by the varpo loss"),
    "off_policy_mask_threshold": (None, "not supported by the varpo loss"),
    "entropy_coef": (0.0, "not supported by the varpo loss"),
    "use_adaptive_entropy": (False, "not supported by the varpo loss"),
    "use_liger_kernel": (False, "the varpo loss needs per-token log-probs"),
}

# TRL value -> the varpo settings that reproduce it (tested: tests/engine/test_trl_parity.py; table in
# docs/engine.md "Coming from TRL"). None: no varpo equivalent.
TRL_EQUIVALENTS: dict[str, dict] = {
    "loss_type": {
        "dapo": "policy_loss='ppo_clip' loss_aggregation='token_mean'",
        "bnpo": "policy_loss='ppo_clip' loss_aggregation='token_mean'",
        "grpo": "policy_loss='ppo_clip' loss_aggregation='seq_mean_token_mean'",
        "dr_grpo": "policy_loss='ppo_clip' loss_aggregation='seq_mean_token_sum_norm' (M = max_completion_length)",
        "cispo": None,
        "sapo": None,
        "luspo": None,
        "vespo": None,
    },
    "scale_rewards": {
        "group": "advantage_method='grpo' eps=1e-4",
        True: "advantage_method='grpo' eps=1e-4",
        "none": "advantage_method='dr_grpo'",
        False: "advantage_method='dr_grpo'",
        "batch": None,
    },
    "multi_objective_aggregation": {
        "sum_then_normalize": "advantage_method='grpo' eps=1e-4",
        "normalize_then_sum": "advantage_method='gdpo' eps=1e-4",
    },
}


def _superseded_message(name: str, value, default, why: str) -> str:
    """One line naming the varpo values that reproduce a TRL setting (or saying there are none)."""
    table = TRL_EQUIVALENTS.get(name)
    if table is None:
        return f"{default!r} with VarpoGRPOTrainer ({why})"
    equivalent = table.get(value, None)
    if equivalent is None:
        how = (
            f"TRL's {name}={value!r} has no varpo equivalent; register one with varpo.register_policy_loss or "
            "varpo.register_estimator (docs/extending.md)"
        )
    else:
        how = f"for TRL's {name}={value!r} set {equivalent}"
    return f"{default!r} with VarpoGRPOTrainer — {how} (docs/engine.md, 'Coming from TRL')"


@dataclass
class VarpoGRPOConfig(GRPOConfig):
    """GRPOConfig + varpo options. Defaults that differ from GRPOConfig: ``logging_steps=1`` (metrics.jsonl gets one
    line per optimizer step) and ``bf16`` resolves to False on a machine without CUDA (TRL's ``None -> True`` would
    fail on CPU)."""

    logging_steps: float = field(default=1, metadata={"help": "Log every X optimizer steps (1: every step)."})

    advantage_method: str = field(
        default="dvao", metadata={"help": f"Advantage estimator: {', '.join(METHODS)} or a registered one."}
    )
    eps: float = field(default=1e-6, metadata={"help": "Added to every std denominator (> 0)."})
    ddof: int = field(default=1, metadata={"help": "Std degrees of freedom: 1 unbiased, 0 population."})
    saw_base: str = field(default="grpo", metadata={"help": f"saw only: route, one of {', '.join(SAW_BASES)}."})
    saw_offsets: list[float] | None = field(
        default=None, metadata={"help": "saw only: per-component shift before the coefficient of variation."}
    )
    rvpo_k: float = field(default=1.0, metadata={"help": "rvpo only: soft-min temperature k > 0 (start of anneal)."})
    rvpo_k_end: float | None = field(
        default=None, metadata={"help": "rvpo only: k at the last step; k is annealed linearly over max_steps."}
    )
    rvpo_variant: str = field(default="softmin", metadata={"help": f"rvpo only: one of {', '.join(RVPO_VARIANTS)}."})
    rvpo_beta: float = field(default=0.5, metadata={"help": "rvpo only: β of the explicit variant (>= 0)."})
    sigma_ema: float | None = field(
        default=None,
        metadata={"help": "dvao only: decay in [0, 1) of the running mean of group σ (None: off; true: 0.9)."},
    )
    sigma_ema_shrink: float = field(
        default=0.5, metadata={"help": "dvao + sigma_ema: weight s of the running mean in the σ denominator."}
    )
    estimator_options: dict | None = field(
        default=None,
        metadata={
            "help": "Options of a registered estimator's own (register_estimator(..., options={...})), e.g. "
            "{my_temperature: 2.0}; passed to advantage_method only (docs/extending.md)."
        },
    )
    policy_loss: str = field(
        default="ppo_clip", metadata={"help": f"Policy loss: {', '.join(POLICY_LOSSES)} or a registered one."}
    )
    gvpo_beta: float = field(default=0.1, metadata={"help": "gvpo only: β of the implicit reward (> 0)."})
    # gvpo off-policy groups (GVPO Thm 3.2 / Fig. 4); logic in varpo.trl.replay, validation in varpo.trl.replay_config
    gvpo_history_per_group: int = field(
        default=0,
        metadata={"help": "gvpo only: h historical responses per group of num_generations (G - h fresh; 0: off)."},
    )
    gvpo_history_selection: str = field(
        default="most_recent", metadata={"help": f"History selection, one of {', '.join(replay_config.SELECTIONS)}."}
    )
    gvpo_max_staleness: int | None = field(
        default=None, metadata={"help": "History older than this many optimizer steps is dropped (null: no limit)."}
    )
    gvpo_buffer_per_prompt: int = field(default=16, metadata={"help": "Response buffer: entries kept per prompt."})
    gvpo_buffer_total: int = field(default=8192, metadata={"help": "Response buffer: entries kept in total."})
    gvpo_external_column: str | None = field(
        default=None,
        metadata={"help": "gvpo only: dataset column of external completions (e.g. completion); one joins a group."},
    )
    gvpo_rescore_history: bool = field(
        default=False, metadata={"help": "Score historical responses again instead of reusing buffered rewards."}
    )
    clip_ratio_c: float | None = field(
        default=None,
        metadata={
            "help": "ppo_clip only: dual-clip cap c > 1 (loss <= -c·A for A < 0; verl's default 3.0). None: off."
        },
    )
    loss_aggregation: str = field(
        default="token_mean", metadata={"help": f"Loss aggregation: {', '.join(AGGREGATIONS)} or a registered one."}
    )
    vl_norm_alpha: float = field(default=1.0, metadata={"help": "vl_norm only: length exponent α in [0, 1]."})
    reward_errors: str = field(
        default="isolate",
        metadata={
            "help": "A reward function that raises: isolate (one batch call; only if it raises, each row once alone; "
            "a failing row's component is missing and counted in reward/<name>/errors) or raise (stop the run, "
            "naming the function and row)."
        },
    )
    max_response_length: int | None = field(
        default=None,
        metadata={"help": "M for seq_mean_token_sum_norm / vl_norm (default: max_completion_length)."},
    )

    log_reward_matrix: bool = field(
        default=False,
        metadata={
            "help": "Append each generation batch's rewards [N, K] + group ids to <output_dir>/reward_log/ "
            "(varpo.reward_log; replay with `varpo lab replay`)."
        },
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={"help": "DAPO dynamic sampling: drop groups the estimator gives zero advantage, refill the batch."},
    )
    dynamic_sampling_max_rounds: int = field(
        default=3, metadata={"help": "dynamic_sampling: most extra generation rounds per generation batch (>= 0)."}
    )
    dynamic_sampling_on_cap: str = field(
        default="train_on_kept",
        metadata={"help": f"dynamic_sampling: batch still short after the cap: {' | '.join(ON_CAP)}."},
    )
    reward_weight_schedule: dict | None = field(
        default=None,
        metadata={"help": "Weights over steps: {type: linear|cosine, points: [[step, [w_1..w_K]], ...]}."},
    )
    collapse_window: int | None = field(
        default=DEFAULT_WINDOW,
        metadata={
            "help": "Objective-collapse alarm: warn once when an objective has not varied within any group "
            "(adv/frac_signal/<name> = 0) for this many consecutive generation batches; null turns it off."
        },
    )

    def __post_init__(self) -> None:
        if self.sigma_ema is True:
            self.sigma_ema = 0.9
        elif self.sigma_ema is False:
            self.sigma_ema = None
        if self.bf16 is None and not self.fp16 and not torch.cuda.is_available():
            self.bf16 = False
        self._validate_varpo()
        super().__post_init__()
        if self.max_response_length is None:
            self.max_response_length = self.max_completion_length
        if registry.needs_max_length(self.loss_aggregation) and self.max_response_length is None:
            _fail("max_response_length", None, f"a positive int (loss_aggregation='{self.loss_aggregation}' needs M)")
        if registry.is_per_sequence(self.policy_loss) and self.per_device_train_batch_size % self.num_generations:
            _fail(
                "per_device_train_batch_size",
                self.per_device_train_batch_size,
                f"a multiple of num_generations={self.num_generations} ({self.policy_loss} needs whole groups per micro-batch)",
            )

    def _validate_varpo(self) -> None:
        self._validate_trl()
        # The registries are read here, not at import, so methods registered later (or by plug-ins) are accepted.
        resolve(self.advantage_method)  # the contract's lookup: known (built-in, registered or a plug-in's)
        _choice("policy_loss", self.policy_loss, registry.policy_losses(), registry.unknown_hint())
        _choice("loss_aggregation", self.loss_aggregation, registry.aggregations(), registry.unknown_hint())
        _choice("reward_errors", self.reward_errors, REWARD_ERROR_MODES)
        self._validate_estimator_options()
        _choice("saw_base", self.saw_base, SAW_BASES)
        _choice("rvpo_variant", self.rvpo_variant, RVPO_VARIANTS)
        _choice("ddof", self.ddof, (0, 1))
        _number("eps", self.eps, "a finite number > 0", lambda v: v > 0)
        _number("rvpo_k", self.rvpo_k, "a finite number > 0", lambda v: v > 0)
        if self.rvpo_k_end is not None:
            _number("rvpo_k_end", self.rvpo_k_end, "a finite number > 0 or null", lambda v: v > 0)
        _number("rvpo_beta", self.rvpo_beta, "a finite number >= 0", lambda v: v >= 0)
        _number("gvpo_beta", self.gvpo_beta, "a finite number > 0", lambda v: v > 0)
        replay_config.validate_config(self)
        check_window(self.collapse_window)
        if self.clip_ratio_c is not None:
            _number("clip_ratio_c", self.clip_ratio_c, "a finite number > 1 or null", lambda v: v > 1)
            if self.policy_loss != "ppo_clip":
                _fail("clip_ratio_c", self.clip_ratio_c, "null (dual clip is a ppo_clip option)")
        _number("vl_norm_alpha", self.vl_norm_alpha, "a number in [0, 1]", lambda v: 0 <= v <= 1)
        _number("sigma_ema_shrink", self.sigma_ema_shrink, "a number in [0, 1]", lambda v: 0 <= v <= 1)
        if self.sigma_ema is not None:
            _number("sigma_ema", self.sigma_ema, "a decay in [0, 1), true or null", lambda v: 0 <= v < 1)
        if self.saw_offsets is not None and not (
            isinstance(self.saw_offsets, (list, tuple)) and all(_finite(v) for v in self.saw_offsets)
        ):
            _fail("saw_offsets", self.saw_offsets, "a list of finite numbers (one per reward function) or null")
        if self.max_response_length is not None:
            _number("max_response_length", self.max_response_length, "a positive int or null", lambda v: v >= 1)
        if self.reward_weights is not None and (
            not isinstance(self.reward_weights, (list, tuple))
            or not all(_finite(w) and w >= 0 for w in self.reward_weights)
            or not 0 < sum(self.reward_weights) < math.inf  # a sum that overflows failed at step 1 before
        ):
            _fail(
                "reward_weights",
                self.reward_weights,
                "finite, non-negative numbers with a positive, finite sum (one per reward function)",
            )

        _number(
            "dynamic_sampling_max_rounds",
            self.dynamic_sampling_max_rounds,
            "an int >= 0",
            lambda v: v >= 0 and v == int(v),
        )
        _choice("dynamic_sampling_on_cap", self.dynamic_sampling_on_cap, ON_CAP)
        if not isinstance(self.dynamic_sampling, bool):
            _fail("dynamic_sampling", self.dynamic_sampling, "true | false")
        parse_schedule(self.reward_weight_schedule)
        if self.dynamic_sampling and (self.gvpo_history_per_group or self.gvpo_external_column):
            _fail("dynamic_sampling", True, "false with gvpo_history_per_group / gvpo_external_column (not combined)")
        if self.reward_weight_schedule is not None and self.reward_weights is not None:
            _fail(
                "reward_weights", self.reward_weights, "null when reward_weight_schedule is set (it sets the weights)"
            )

        defaults = {f.name: f.default for f in fields(VarpoGRPOConfig)}
        # options only some estimators use, as they declare (registry: ``reads`` and anneal ends)
        for name, methods in registry.method_only_options().items():
            if name in defaults and getattr(self, name) != defaults[name] and self.advantage_method not in methods:
                users = " | ".join(f"'{m}'" for m in methods)
                _fail(name, getattr(self, name), f"its default (it is only used by advantage_method={users})")
        if self.vl_norm_alpha != defaults["vl_norm_alpha"] and self.loss_aggregation != "vl_norm":
            _fail(
                "vl_norm_alpha", self.vl_norm_alpha, "its default 1.0 (it is only used by loss_aggregation='vl_norm')"
            )
        if self.gvpo_beta != defaults["gvpo_beta"] and self.policy_loss != "gvpo":
            _fail("gvpo_beta", self.gvpo_beta, "its default 0.1 (it is only used by policy_loss='gvpo')")
        if self.policy_loss == "gvpo":
            if self.loss_aggregation != "token_mean":
                _fail(
                    "loss_aggregation",
                    self.loss_aggregation,
                    "token_mean with policy_loss='gvpo' (one loss per sequence)",
                )
            if self.beta != 0.0:
                _fail("beta", self.beta, "0.0 with policy_loss='gvpo' (its KL regulariser is gvpo_beta)")
            if self.importance_sampling_level != "token":
                _fail("importance_sampling_level", self.importance_sampling_level, "token with policy_loss='gvpo'")
        for name, (default, why) in _TRL_SUPERSEDED.items():
            if getattr(self, name) != default:
                _fail(name, getattr(self, name), _superseded_message(name, getattr(self, name), default, why))

    def _validate_estimator_options(self) -> None:
        """``estimator_options``: a mapping whose keys are ``advantage_method``'s own declared options (or the end of
        an anneal it declares that is not a config field); values are checked by the estimator."""
        if self.estimator_options is None:
            return
        method = self.advantage_method
        info = resolve(method)
        own = set(info.options) | {a.end for a in info.anneals if a.end not in self.__dataclass_fields__}
        if not isinstance(self.estimator_options, dict) or not all(isinstance(k, str) for k in self.estimator_options):
            _fail("estimator_options", self.estimator_options, "a mapping {option: value} or null")
        unknown = sorted(set(self.estimator_options) - own)
        if unknown:
            mine = f"its own options {sorted(own)}" if own else "null (it declares no options of its own)"
            _fail("estimator_options", self.estimator_options, f"advantage_method={method!r} takes {mine}")

    def step_options(self) -> dict:
        """The advantage options of this config in the one vocabulary of :class:`varpo.step.AdvantageStep`: every
        shared option field (:data:`varpo.step.OPTIONS`), ``estimator_options`` and the end of each anneal
        ``advantage_method`` declares that is a config field (``rvpo_k_end``), when set."""
        values = {name: getattr(self, name) for name in OPTIONS}
        values.update(self.estimator_options or {})
        for name in (a.end for a in resolve(self.advantage_method).anneals):
            if getattr(self, name, None) is not None:
                values[name] = getattr(self, name)
        return values

    def _validate_trl(self) -> None:
        """TRL/transformers fields whose bad values TRL accepts here and only fails on later (a ZeroDivisionError in
        ``GRPOConfig.__post_init__``, an error at the first generation or optimizer step) or never (a negative
        learning rate trains uphill)."""
        _integer("num_generations", self.num_generations, 2, "an int >= 2 (a group needs two completions)")
        _integer("per_device_train_batch_size", self.per_device_train_batch_size, 1)
        _integer("gradient_accumulation_steps", self.gradient_accumulation_steps, 1)
        _integer("max_completion_length", self.max_completion_length, 1)
        if not (_is_int(self.max_steps) and (self.max_steps == -1 or self.max_steps >= 1)):
            _fail("max_steps", self.max_steps, "an int >= 1, or -1 (train for num_train_epochs)")
        if self.max_steps == -1:
            _number("num_train_epochs", self.num_train_epochs, "a finite number > 0", lambda v: v > 0)
        _number("learning_rate", self.learning_rate, "a finite number >= 0", lambda v: v >= 0)
        _number("temperature", self.temperature, "a finite number > 0", lambda v: v > 0)
        _number("top_p", self.top_p, "a number in (0, 1]", lambda v: 0 < v <= 1)
        _number("beta", self.beta, "a finite number >= 0", lambda v: v >= 0)
        _number("epsilon", self.epsilon, "a finite number >= 0", lambda v: v >= 0)
        if self.epsilon_high is not None:
            _number("epsilon_high", self.epsilon_high, "a finite number >= 0 or null", lambda v: v >= 0)
        _number("max_grad_norm", self.max_grad_norm, "a finite number >= 0", lambda v: v >= 0)
        _number(
            "logging_steps", self.logging_steps, "a number > 0 (steps; < 1: a fraction of the run)", lambda v: v > 0
        )


_is_int = is_int  # an int, never a bool (varpo.checks)


def _integer(name: str, value, low: int, allowed: str | None = None) -> None:
    if not _is_int(value) or value < low:
        _fail(name, value, allowed or f"an int >= {low}")


_finite = is_real  # a finite real number, never a bool (varpo.checks)


def _fail(name: str, value, allowed: str) -> None:
    raise ValueError(f"{name}={value!r} is invalid; allowed: {allowed}")


def _choice(name: str, value, allowed: tuple, hint: str = "") -> None:
    if value not in allowed or isinstance(value, bool):
        _fail(name, value, " | ".join(str(a) for a in allowed) + hint)


def _number(name: str, value, allowed: str, ok) -> None:
    if not _finite(value) or not ok(value):
        _fail(name, value, allowed)
