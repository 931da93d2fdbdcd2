"""The ``algorithm.varpo`` options and the whole-config checks that run before verl starts Ray.

Why a separate block: verl keeps ``algorithm`` as a plain ``DictConfig`` (never converted to ``AlgoConfig``), so
``+algorithm.varpo.<key>=...`` on the hydra command line reaches every advantage-estimator call as
``config.varpo`` without touching verl's schemas. Values are validated by the core library itself
(:func:`VarpoSettings.validate` runs :func:`varpo.compute_advantages` on a dummy batch), so there is no second copy
of any rule here; this module only checks how our keys combine with verl's.

:func:`check_config` is called by the launcher (``python -m varpo.verl.train``, before Ray) and again by our V1
trainer modes at ``init`` (for runs started with verl's own ``main_ppo``). It raises :class:`ConfigError` listing
every problem and returns non-fatal warnings.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

import varpo
from varpo import registry
from varpo.collapse import DEFAULT_WINDOW, check_window
from varpo.schedules import WeightSchedule, parse_schedule
from varpo.step import DEPRECATED, OPTIONS, AdvantageStep, MissingStep, StepState, canonical_names, resolve
from varpo.step import weights_at as _weights_at
from varpo.verl import ESTIMATOR_PREFIX, POLICY_LOSS_NAME, TRAINER_MODES


class _MethodOfEstimator(Mapping):
    """Live view ``varpo_<name> -> name`` over :func:`varpo.registry.estimators` (read at lookup time, so methods
    registered after import or by ``varpo.methods`` plug-ins are included)."""

    def __getitem__(self, key: str) -> str:
        if isinstance(key, str) and key.startswith(ESTIMATOR_PREFIX):
            method = key[len(ESTIMATOR_PREFIX) :]
            if method in registry.estimators():
                return method
        raise KeyError(key)

    def __iter__(self):
        return iter([f"{ESTIMATOR_PREFIX}{m}" for m in registry.estimators()])

    def __len__(self) -> int:
        return len(registry.estimators())


#: registered estimator name -> varpo method, derived from the core registry so both stay in step.
METHOD_OF_ESTIMATOR: Mapping[str, str] = _MethodOfEstimator()
#: the only verl aggregation under which advantage scaling by L^-α/mean L^-α is exactly VL Norm.
VL_NORM_AGG_MODE = "seq-mean-token-sum-norm"

#: every key accepted under ``algorithm.varpo`` -> what it does (also used in error messages).
KEYS: dict[str, str] = {
    "reward_keys": "reward components (keys of the reward function's dict / reward_extra_info), K columns",
    "reward_weights": "K non-negative component weights (default uniform 1/K)",
    "reward_weight_schedule": "weights over steps: {type: linear|cosine, points: [[step, [w_1..w_K]], ...]}",
    "vl_norm_alpha": "VL Norm α: scale advantages by L^-α/mean L^-α (needs loss_agg_mode=seq-mean-token-sum-norm)",
    "gvpo_beta": "GVPO β of the implicit reward R = β·(log π - log π_old) (default 0.1)",
    "sigma_ema": "dvao only: EMA decay in [0, 1) of the per-component σ, or true for 0.9 (enables varpo.SigmaEMA; "
    "the TRL engine's name)",
    **{old: f"deprecated name of {new} (still accepted)" for old, new in DEPRECATED.items()},
    "sigma_ema_shrink": "dvao only: shrinkage of group σ toward the EMA (enables varpo.SigmaEMA, default 0.5)",
    "eps": "added to every std denominator (default 1e-6, as verl)",
    "ddof": "std degrees of freedom, 1 = unbiased as verl/TRL, 0 = population",
    "saw_base": "saw only: 'grpo' (weight rewards) or 'gdpo' (weight z-scores, batch whiten)",
    "saw_offsets": "saw only: K per-component shifts before the coefficient of variation (official: [3, 0])",
    "rvpo_k": "rvpo only: soft-min temperature k > 0 (start of the anneal with rvpo_k_end)",
    "rvpo_k_end": "rvpo only: k at the last training step; k is annealed linearly from rvpo_k (RVPO: 0.5 -> 2.0)",
    "rvpo_variant": "rvpo only: 'softmin' or 'explicit'",
    "rvpo_beta": "rvpo only: β of the explicit variant",
    "collapse_window": f"objective-collapse alarm: warn once when an objective has not varied within any group "
    f"(varpo/frac_signal/<name> = 0) for this many consecutive steps (default {DEFAULT_WINDOW}; null = off; "
    "V1 varpo trainer modes only)",
    "estimator_options": "{option: value}: the estimator's own options (register_estimator(..., options=...)) and "
    "the end of an anneal it declares (docs/extending.md)",
}


NO_STEP = (
    "varpo: algorithm.varpo.{key} needs the training step, which only varpo's trainer hooks provide: use "
    "trainer.v1.trainer_mode=varpo (V1) or trainer.use_v1=false (the legacy RayPPOTrainer.fit, wrapped by the "
    "plug-in); a recipe that calls verl's compute_advantage from its own loop does not pass the step"
)


@contextmanager
def needs_step() -> Iterator[None]:
    """Turn the contract's :class:`varpo.step.MissingStep` into verl's one-line :data:`NO_STEP` error."""
    try:
        yield
    except MissingStep as exc:
        raise RuntimeError(NO_STEP.format(key=exc.option)) from None


class ConfigError(ValueError):
    """A verl config that cannot run with varpo (all problems in one message)."""


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


#: old verl-only option names -> the one name both engines use (accepted, with a deprecation warning):
#: :data:`varpo.step.DEPRECATED`.
DEPRECATED_KEYS = DEPRECATED
WHERE = "algorithm.varpo."
_ESTIMATOR = "algorithm.adv_estimator"


def _sigma_ema(raw: Mapping[str, Any], number) -> float | None:
    """``sigma_ema`` as on TRL (a decay, or ``true`` for 0.9)."""
    if raw.get("sigma_ema") is True:
        return 0.9
    if raw.get("sigma_ema") is False:
        return None
    return number("sigma_ema")


def _tuple(value: Any, cast, key: str) -> tuple | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, str | int | float):
        value = [value]
    if not isinstance(value, Sequence):
        raise ConfigError(f"algorithm.varpo.{key} must be a list, got {value!r}")
    try:
        return tuple(cast(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"algorithm.varpo.{key}: {exc}") from None


@dataclass(frozen=True)
class VarpoSettings:
    """Parsed ``algorithm.varpo`` block (all optional; an absent block means single-reward defaults)."""

    reward_keys: tuple[str, ...] | None = None
    reward_weights: tuple[float, ...] | None = None
    reward_weight_schedule: WeightSchedule | None = None
    vl_norm_alpha: float | None = None
    gvpo_beta: float = 0.1
    sigma_ema: float | None = None
    sigma_ema_shrink: float | None = None
    rvpo_k_end: float | None = None
    advantage_options: Mapping[str, Any] = field(default_factory=dict)
    collapse_window: int | None = DEFAULT_WINDOW
    estimator_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_algorithm(cls, algorithm: Any) -> VarpoSettings:
        """Parse ``config.algorithm.varpo`` (``algorithm`` may be a DictConfig, a dict or None)."""
        raw = None if algorithm is None else _plain(algorithm.get("varpo", None))
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(f"algorithm.varpo must be a mapping of options, got {raw!r}")
        unknown = sorted(set(raw) - set(KEYS))
        if unknown:
            allowed = "\n".join(f"  {k}: {v}" for k, v in KEYS.items())
            raise ConfigError(f"unknown key(s) algorithm.varpo.{unknown}; allowed:\n{allowed}")
        try:
            raw = canonical_names(raw, WHERE)[0]  # the deprecation lines are check_config's warnings
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        keys = _tuple(raw.get("reward_keys"), str, "reward_keys")
        if keys is not None and len(set(keys)) != len(keys):
            raise ConfigError(f"algorithm.varpo.reward_keys has duplicates: {list(keys)}")
        weights = _tuple(raw.get("reward_weights"), float, "reward_weights")
        try:
            schedule = parse_schedule(
                _plain(raw.get("reward_weight_schedule")), field="algorithm.varpo.reward_weight_schedule"
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        options = {k: _plain(raw[k]) for k in OPTIONS if raw.get(k) is not None}
        own = _plain(raw.get("estimator_options")) or {}
        if not isinstance(own, Mapping) or not all(isinstance(k, str) for k in own):
            raise ConfigError(f"algorithm.varpo.estimator_options must be a mapping {{option: value}}, got {own!r}")
        if "saw_offsets" in options:
            options["saw_offsets"] = _tuple(options["saw_offsets"], float, "saw_offsets")

        def number(key: str, default=None):
            value = raw.get(key)
            if value is None:
                return default
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"algorithm.varpo.{key} must be a number, got {value!r}") from None

        try:
            window = check_window(_plain(raw.get("collapse_window", DEFAULT_WINDOW)), "algorithm.varpo.collapse_window")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

        return cls(
            collapse_window=window,
            reward_keys=keys,
            reward_weights=weights,
            reward_weight_schedule=schedule,
            vl_norm_alpha=number("vl_norm_alpha"),
            gvpo_beta=number("gvpo_beta", 0.1),
            sigma_ema=_sigma_ema(raw, number),
            sigma_ema_shrink=number("sigma_ema_shrink"),
            rvpo_k_end=number("rvpo_k_end"),
            advantage_options=options,
            estimator_options=dict(own),
        )

    @property
    def num_components(self) -> int:
        return len(self.reward_keys) if self.reward_keys else 1

    @property
    def names(self) -> tuple[str, ...]:
        return self.reward_keys or ("reward",)

    def weights_at(self, step: int | None) -> tuple[float, ...] | None:
        """Component weights at training step ``step`` (:func:`varpo.step.weights_at`)."""
        with needs_step():
            return _weights_at(self.reward_weight_schedule, self.reward_weights, step)

    def option_values(self) -> dict[str, Any]:
        """Every configured option in the contract's vocabulary: the shared ones, ``estimator_options`` and the
        anneal ends set at top level."""
        values = dict(self.advantage_options, **self.estimator_options)
        if self.rvpo_k_end is not None:
            values["rvpo_k_end"] = self.rvpo_k_end
        return values

    def advantage_step(self, method: str, state: StepState | None = None) -> AdvantageStep:
        """The engine contract for ``method`` with these settings; dvao's running σ is ``state``'s (the trainer's,
        :mod:`varpo.verl.state`), or a fresh one per call without a trainer (plain per-batch σ)."""
        ema = None
        if self.uses_sigma_ema:
            args = self.sigma_ema_args()
            ema = varpo.SigmaEMA(*args) if state is None else state.sigma_ema_for(*args)
        return AdvantageStep(
            method,
            self.names,
            self.option_values(),
            reward_weights=self.reward_weights,
            schedule=self.reward_weight_schedule,
            sigma_ema=ema,
            workspace=None if state is None else state.workspace,
            field=_ESTIMATOR,
        )

    def options_at(
        self, method: str, step: int | None, total_steps: int | None
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """``(options for compute_advantages, annealed values to log)`` at ``step``
        (:meth:`varpo.step.AdvantageStep.options_at`)."""
        with needs_step():
            return self.advantage_step(method).options_at(step, total_steps)

    @property
    def uses_sigma_ema(self) -> bool:
        return self.sigma_ema is not None or self.sigma_ema_shrink is not None

    def sigma_ema_args(self) -> tuple[float, float]:
        return (
            0.9 if self.sigma_ema is None else self.sigma_ema,
            0.5 if self.sigma_ema_shrink is None else self.sigma_ema_shrink,
        )

    def validate(self, method: str | None) -> None:
        """Check values with the core library's own validation (raises ConfigError with its message)."""
        try:
            if self.reward_weights is not None and self.reward_keys is None:
                raise ValueError("reward_weights needs reward_keys (one weight per component)")
            if self.reward_weight_schedule is not None:
                if self.reward_weights is not None:
                    raise ValueError("set reward_weights or reward_weight_schedule, not both")
                if self.reward_keys is None:
                    raise ValueError("reward_weight_schedule needs reward_keys (one weight per component)")
                parse_schedule(self.reward_weight_schedule, self.num_components)
            values = self.option_values()
            anneals = {} if method is None else {a.end: a for a in resolve(method, _ESTIMATOR).anneals}
            for end in (e for e in values if e not in anneals and registry.declaring(e)):
                where = ", ".join(f"varpo_{m}" for m in registry.declaring(end))
                raise ValueError(f"{end} only applies to {where}, not {method!r}")
            users = registry.method_only_options().get("sigma_ema", ())  # the estimators declaring they read it
            if self.uses_sigma_ema and method not in users:
                where = ", ".join(f"varpo_{m}" for m in users)
                raise ValueError(f"sigma_ema_* only applies to {where}, not {method!r}")
            if not (math.isfinite(self.gvpo_beta) and self.gvpo_beta > 0):
                raise ValueError(f"gvpo_beta must be a finite number > 0, got {self.gvpo_beta!r}")
            if self.vl_norm_alpha is not None:
                varpo.vl_norm_weights(torch.ones(1), self.vl_norm_alpha)
            if method is not None:
                self.advantage_step(method).check()  # the core's own validation of every value
        except ValueError as exc:
            raise ConfigError(f"algorithm.varpo: {exc}") from None


def _select(cfg: Any, path: str, default: Any = None) -> Any:
    return OmegaConf.select(cfg, path, default=default)


def uses_varpo(cfg: Any) -> bool:
    """Whether the run selects one of our estimators or our policy loss."""
    return (
        _select(cfg, "algorithm.adv_estimator") in METHOD_OF_ESTIMATOR
        or _select(cfg, "actor_rollout_ref.actor.policy_loss.loss_mode") == POLICY_LOSS_NAME
    )


def uses_gvpo(cfg: Any) -> bool:
    return _select(cfg, "actor_rollout_ref.actor.policy_loss.loss_mode") == POLICY_LOSS_NAME


def _plugin_policy_error() -> str | None:
    policy = os.getenv("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower()
    if policy == "auto":
        return None
    if policy != "none" and "varpo" in {p.strip() for p in policy.split(",")}:
        return None
    return (
        f"VERL_USE_EXTERNAL_PLUGINS={policy!r} stops verl from loading the varpo plug-in in its Ray workers; "
        "unset it or add 'varpo' to the list"
    )


#: ``algorithm.filter_groups.metric`` that makes varpo's V1 modes judge each group with the estimator
#: (:mod:`varpo.verl.group_filter`); also the deprecated per-sample key of :func:`varpo.verl.rewards.signal_code`.
SIGNAL_METRIC = "varpo_signal"


def _filter_groups_problems(
    cfg: Any, method: str | None, settings: VarpoSettings, use_v1: bool, our_mode: bool
) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` for ``algorithm.filter_groups``. verl's V1 replay buffer evicts a group whose metric
    (one scalar per sample: ``reward`` = the summed score, or a ``reward_extra_info`` key) is constant; with
    ``metric=varpo_signal`` varpo's V1 modes evict a group iff the estimator gives it no signal instead."""
    if not _select(cfg, "algorithm.filter_groups.enable", False):
        return [], []
    if not use_v1:
        return [], [
            "algorithm.filter_groups is ignored: verl 0.9.1's legacy trainer (trainer.use_v1=false) has no group "
            "filter; DAPO filtering needs the V1 trainer (trainer.v1.trainer_mode=varpo)"
        ]
    metric = _select(cfg, "algorithm.filter_groups.metric")
    if metric == SIGNAL_METRIC:
        if method is None or not settings.reward_keys or not our_mode:
            return [
                f"algorithm.filter_groups.metric={SIGNAL_METRIC} judges each group with a varpo_* estimator on "
                "algorithm.varpo.reward_keys in varpo's V1 trainer modes (trainer.v1.trainer_mode=varpo); "
                "with a single reward use metric=reward"
            ], []
        return [], []
    if method is None or not settings.reward_keys:
        return [], []
    # the estimator declares whether its zero-advantage groups are exactly those with a constant weighted-sum
    # reward (registry.EstimatorInfo.sum_filter), i.e. whether verl's DAPO filter on the summed reward is right
    if not resolve(method, _ESTIMATOR).sum_filter:
        return [
            f"algorithm.filter_groups.metric={metric!r} with varpo_{method}: DAPO would drop groups whose summed "
            "reward (or one component) is constant although another component varies, which carry signal for "
            f"{method}; set algorithm.filter_groups.metric={SIGNAL_METRIC} (evicts a group iff {method} gives it "
            "no signal)"
        ], []
    if metric in settings.reward_keys:
        return [
            f"algorithm.filter_groups.metric={metric!r} is one component; varpo_{method} has signal when the "
            f"weighted sum varies: use metric=score (same weights) or {SIGNAL_METRIC}"
        ], []
    return [], []


def check_config(cfg: Any) -> list[str]:
    """Validate how ``algorithm.varpo`` combines with the rest of a composed verl config.

    Returns warnings; raises :class:`ConfigError` listing every error. A config that does not use varpo and has
    no ``algorithm.varpo`` block passes untouched.
    """
    estimator = _select(cfg, "algorithm.adv_estimator")
    method = METHOD_OF_ESTIMATOR.get(estimator)
    gvpo = uses_gvpo(cfg)
    has_block = _select(cfg, "algorithm.varpo") is not None
    if not (method or gvpo):
        if has_block:
            raise ConfigError(
                f"algorithm.varpo is set but neither algorithm.adv_estimator ({estimator!r}) is one of "
                f"{sorted(METHOD_OF_ESTIMATOR)} nor policy_loss.loss_mode is {POLICY_LOSS_NAME!r}"
            )
        return []

    settings = VarpoSettings.from_algorithm(_select(cfg, "algorithm"))
    settings.validate(method)
    errors: list[str] = []
    warnings: list[str] = canonical_names(_plain(_select(cfg, "algorithm.varpo")) or {}, WHERE)[1]

    plugin_error = _plugin_policy_error()
    if plugin_error:
        errors.append(plugin_error)

    use_v1 = bool(_select(cfg, "trainer.use_v1", True))
    mode = _select(cfg, "trainer.v1.trainer_mode", "sync")
    our_mode = use_v1 and mode in TRAINER_MODES
    mode_hint = (
        "set trainer.v1.trainer_mode=varpo (or varpo_colocate_async / varpo_separate_async), "
        "or use the legacy trainer with trainer.use_v1=false"
    )

    if settings.reward_keys and method is None:
        errors.append("algorithm.varpo.reward_keys needs a varpo_* advantage estimator")
    if settings.reward_keys and use_v1 and not our_mode:
        errors.append(
            f"reward components {list(settings.reward_keys)} do not reach advantage estimators in verl's V1 "
            f"trainer mode {mode!r} (its _compute_advantage reads only uid/rm_scores from TransferQueue): {mode_hint}"
        )
    if method in registry.multi_reward_methods() and not settings.reward_keys:
        warnings.append(
            f"varpo_{method} with a single reward (no algorithm.varpo.reward_keys): it degenerates to a "
            "single-component estimator; list the reward function's component keys to use it as intended"
        )
    if settings.reward_keys and _select(cfg, "algorithm.use_kl_in_reward", False):
        warnings.append(
            "algorithm.use_kl_in_reward is ignored by varpo estimators with reward_keys (components come from the "
            "reward function, as in verl's gdpo); use actor_rollout_ref.actor.use_kl_loss instead"
        )
    if settings.reward_keys and _select(cfg, "reward.custom_reward_function.path") is None:
        warnings.append(
            "algorithm.varpo.reward_keys must be keys of the dict your reward function returns; "
            "reward.custom_reward_function.path is unset (varpo's: pkg://varpo.verl.rewards, name compute_score)"
        )

    if _select(cfg, "algorithm.varpo.collapse_window") is not None and not our_mode:
        warnings.append(
            "algorithm.varpo.collapse_window has no effect outside varpo's V1 trainer modes (the legacy trainer and "
            f"verl's own modes discard the estimator's diagnostics): {mode_hint.split(', or')[0]}"
        )

    filter_errors, filter_warnings = _filter_groups_problems(cfg, method, settings, use_v1, our_mode)
    errors += filter_errors
    warnings += filter_warnings

    if settings.vl_norm_alpha is not None:
        agg = _select(cfg, "actor_rollout_ref.actor.loss_agg_mode")
        if method is None:
            errors.append("algorithm.varpo.vl_norm_alpha is applied by varpo_* estimators; select one")
        if gvpo:
            errors.append("VL Norm re-weights a per-token loss; GVPO's loss is per sequence — drop vl_norm_alpha")
        if agg != VL_NORM_AGG_MODE:
            errors.append(
                f"VL Norm needs actor_rollout_ref.actor.loss_agg_mode={VL_NORM_AGG_MODE} (got {agg!r}): advantages "
                "scaled by L^-α/mean L^-α are exactly VL Norm only under that aggregation"
            )
        if _select(cfg, "actor_rollout_ref.actor.loss_scale_factor") is None:
            max_len = _select(cfg, "data.max_response_length")
            warnings.append(
                "VL Norm: actor_rollout_ref.actor.loss_scale_factor is unset, so verl divides by each micro-batch's "
                f"padded length; set it to the maximum response length (e.g. {max_len}) for the paper's constant M"
            )

    if gvpo:
        actor = "actor_rollout_ref.actor"
        if not our_mode:
            errors.append(
                "varpo_gvpo needs group ids and whole groups in every micro-batch, which only varpo's V1 trainer "
                "modes provide: set trainer.use_v1=true trainer.v1.trainer_mode=varpo"
            )
        if _select(cfg, f"{actor}.shuffle", False):
            errors.append(f"varpo_gvpo: {actor}.shuffle=true would split groups across mini/micro-batches; set false")
        if _select(cfg, f"{actor}.use_kl_loss", False):
            errors.append(f"varpo_gvpo: GVPO's regularization is gvpo_beta; set {actor}.use_kl_loss=false")
        corr = "algorithm.rollout_correction"
        if any(_select(cfg, f"{corr}.{k}") for k in ("rollout_is", "rollout_rs", "bypass_mode")):
            errors.append(
                f"varpo_gvpo has no importance ratio and needs every row of a group: unset {corr}.rollout_is, "
                f"{corr}.rollout_rs and {corr}.bypass_mode"
            )
        if _select(cfg, "distillation.enabled", False):
            errors.append("varpo_gvpo cannot be combined with distillation (a different worker loss)")
        n = _select(cfg, "actor_rollout_ref.rollout.n", 1)
        if n < 2:
            errors.append(f"varpo_gvpo needs actor_rollout_ref.rollout.n >= 2 (got {n})")
        if method not in (None, "dr_grpo"):
            warnings.append(
                f"varpo_gvpo with varpo_{method}: GVPO's target is the centered reward (paper: varpo_dr_grpo); "
                "the loss re-centers any advantage per group"
            )
        elif method is None and not (estimator == "grpo" and not _select(cfg, "algorithm.norm_adv_by_std_in_grpo")):
            warnings.append(
                f"varpo_gvpo with adv_estimator={estimator!r}: the paper uses centered rewards "
                "(algorithm.adv_estimator=varpo_dr_grpo)"
            )

    if errors:
        raise ConfigError("varpo cannot run this verl config:\n- " + "\n- ".join(errors))
    return warnings
