"""The engine contract: one advantage step per generation batch, the same on every engine.

An engine (TRL's :class:`~varpo.trl.VarpoGRPOTrainer`, its dynamic sampling, the verl plug-in's estimators and
replay-buffer filter) builds one :class:`AdvantageStep` from its settings and asks it, per batch, for

* the component weights at the step (:meth:`AdvantageStep.weights_at`: ``reward_weight_schedule`` if set, else
  ``reward_weights``; :mod:`varpo.schedules` for the step convention — optimizer steps completed, 0 for the first
  batch on every engine);
* the estimator options at the step (:meth:`AdvantageStep.options_at`: the estimator's declared anneals applied,
  :func:`varpo.registry.apply_schedules`, e.g. RVPO's ``rvpo_k -> rvpo_k_end``);
* the advantages and the metrics (:meth:`AdvantageStep.compute`: :func:`varpo.compute_advantages` with those
  weights, options and the estimator state, returning :class:`StepResult` whose ``metrics`` carry the one set of
  names both engines log, each under its own prefix);
* the zero-signal group decision for DAPO-style filtering (:meth:`AdvantageStep.signal`,
  :func:`varpo.group_filter.group_signal`, without the running σ, which filtering must not move).

The method is resolved once, when the step is built (:func:`resolve`, the one registry lookup of an
``advantage_method`` in the engines), together with the validation of its options: the shared options of
:class:`varpo.AdvantageOptions`, the estimator's own declared options and the ends of the anneals it declares.

**One option vocabulary.** Both engines use the names below (TRL: config fields; verl: ``algorithm.varpo.<key>``);
:data:`DEPRECATED` maps old verl-only names to them (:func:`canonical_names`: accepted, one deprecation line each).

**Estimator state.** dvao's running σ (:class:`varpo.SigmaEMA`) is training state: the step holds the one its engine
gives it (TRL: one per trainer; verl: one per trainer and ``(decay, shrink)``, :class:`StepState`) and
:meth:`AdvantageStep.state_dict` / :meth:`AdvantageStep.load_state_dict` checkpoint it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from varpo import registry
from varpo.advantages import SHARED_OPTIONS, AdvantageOutput, SigmaEMA, compute_advantages
from varpo.group_filter import GroupSignal, group_signal
from varpo.schedules import WeightSchedule
from varpo.workspace import Workspace

#: the option names both engines accept for the estimator (besides the estimator's own and its anneal ends):
#: the fields of :class:`varpo.AdvantageOptions` an engine sets from its config (``names`` comes from the reward
#: functions, ``sigma_ema`` is the state object built from the ``sigma_ema`` / ``sigma_ema_shrink`` settings).
OPTIONS: tuple[str, ...] = tuple(o for o in SHARED_OPTIONS if o not in ("names", "sigma_ema"))
#: old engine-specific option names -> the one name of both engines (accepted with a deprecation line).
DEPRECATED: dict[str, str] = {"sigma_ema_decay": "sigma_ema"}


class MissingStep(LookupError):
    """An option that moves over training (``option``: ``reward_weight_schedule`` or an anneal's end) is set, but
    the caller gave no step or run length; the engine says where steps come from."""

    def __init__(self, option: str) -> None:
        super().__init__(option)
        self.option = option


def resolve(method: object, field: str = "advantage_method") -> registry.EstimatorInfo:
    """The estimator ``method`` names (built-in, registered or from a plug-in) and its declarations; an unknown
    name is a one-line ``ValueError`` naming ``field`` and the choices. The engines' one lookup of a method name."""
    if isinstance(method, str) and method not in registry.ESTIMATORS:
        registry.load_plugins()
    if not isinstance(method, str) or method not in registry.ESTIMATORS:
        allowed = " | ".join(registry.ESTIMATORS)
        raise ValueError(f"{field}={method!r} is invalid; allowed: {allowed}{registry.unknown_hint()}")
    return registry.estimator_info(method)


def own_options(method: str, info: registry.EstimatorInfo | None = None) -> set[str]:
    """The option names only ``method`` takes: its declared options and the ends of its declared anneals."""
    info = registry.estimator_info(method) if info is None else info
    return set(info.options) | {a.end for a in info.anneals}


def weights_at(
    schedule: WeightSchedule | None, reward_weights: Sequence[float] | None, step: float | None
) -> tuple[float, ...] | None:
    """Component weights ``[K]`` at ``step``: the schedule's if set, else ``reward_weights`` (None: uniform 1/K).
    A schedule without a step raises :class:`MissingStep`."""
    if schedule is None:
        return None if reward_weights is None else tuple(reward_weights)
    if step is None:
        raise MissingStep("reward_weight_schedule")
    return tuple(schedule.at(step))


def canonical_names(raw: Mapping[str, Any], where: str = "") -> tuple[dict[str, Any], list[str]]:
    """``(raw with deprecated names renamed, one deprecation line per renamed key)``; ``where`` prefixes the names
    in messages (verl: ``"algorithm.varpo."``). Both the old and the new name set is a one-line ``ValueError``."""
    out = dict(raw)
    lines: list[str] = []
    for old, new in DEPRECATED.items():
        if out.get(old) is None:
            out.pop(old, None)
            continue
        if out.get(new) is not None:
            raise ValueError(f"{where.rstrip('.') or 'options'}: set {new} or its deprecated name {old}, not both")
        out[new] = out.pop(old)
        lines.append(f"{where}{old} is deprecated; use {where}{new} (the same name on both engines)")
    return out, lines


@dataclass
class StepResult:
    """One batch's advantage step: the core's output and what the engines log.

    ``metrics`` (one set of names for both engines; TRL logs stats as ``adv/<key>`` and ``reward/<name>/mean|std``,
    verl everything as ``varpo/<key>``): :attr:`varpo.AdvantageOutput.present_stats` (``weight/<name>``,
    ``frac_signal/<name>``, ``reward_mean/<name>``, the estimator's declared diagnostics such as ``saw_cv/<name>``,
    ...) plus :attr:`scheduled`.
    """

    output: AdvantageOutput
    #: values that move with the step: ``reward_weight/<name>`` (with a schedule) and every annealed option whose
    #: end is set (e.g. ``rvpo_k``).
    scheduled: dict[str, float] = field(default_factory=dict)
    #: the keyword options passed to :func:`varpo.compute_advantages` (without the state object).
    options: dict[str, Any] = field(default_factory=dict)
    #: the weights passed (None: uniform 1/K).
    weights: Any = None

    @property
    def advantages(self) -> Tensor:
        return self.output.advantages

    @property
    def stats(self) -> dict[str, float]:
        return self.output.present_stats

    @property
    def metrics(self) -> dict[str, float]:
        return {**self.output.present_stats, **self.scheduled}


class AdvantageStep:
    """The advantage step of one run: ``method`` resolved once, its options validated, weights and anneals at a
    step, estimator state, advantages and metrics of a batch.

    Args:
        method: the estimator name (:func:`resolve`).
        names: the ``K`` component names (metric names, ``AdvantageOptions.names``).
        options: option values in the one vocabulary: any of :data:`OPTIONS`, the estimator's own declared options
            and the ends of its declared anneals (e.g. ``rvpo_k_end``). Another key is a one-line ``ValueError``.
        reward_weights: ``[K]`` base weights (None: uniform 1/K); unused while ``schedule`` is set.
        schedule: weights over steps (:class:`varpo.schedules.WeightSchedule`).
        sigma_ema: dvao's running σ (:class:`varpo.SigmaEMA`) this step updates on training batches, or None.
        workspace: the tile buffers of the fast path (:class:`varpo.Workspace`), reused across batches; None: the
            step owns a new one (a trainer that builds a step per call passes its own, e.g. ``StepState.workspace``).
        field: the name of the method setting in messages.
    """

    def __init__(
        self,
        method: str,
        names: Sequence[str],
        options: Mapping[str, Any] | None = None,
        *,
        reward_weights: Sequence[float] | None = None,
        schedule: WeightSchedule | None = None,
        sigma_ema: SigmaEMA | None = None,
        workspace: Workspace | None = None,
        field: str = "advantage_method",
    ) -> None:
        self.info = resolve(method, field)
        # one step per trainer: its buffers are paged in once, not on every batch (not training state: no checkpoint)
        self.workspace = Workspace() if workspace is None else workspace
        self.method = method
        self.names = tuple(names)
        known = set(OPTIONS) | own_options(method, self.info)
        # None is "not set" (TRL passes every config field): dropped when the method does not take the option
        values = {k: v for k, v in (options or {}).items() if k in known or v is not None}
        unknown = sorted(set(values) - known)
        if unknown:  # the core's wording (compute_advantages), raised before any batch
            own = sorted(own_options(method, self.info))
            mine = f"its own options: {own}" if own else "no options of its own"
            raise ValueError(
                f"unknown advantage option(s) {unknown} for advantage method {method!r} ({mine}); "
                f"shared options: {sorted(OPTIONS)}"
            )
        self.options = values
        self.reward_weights = None if reward_weights is None else tuple(float(w) for w in reward_weights)
        self.schedule = schedule
        self.sigma_ema = sigma_ema
        #: the annealed options whose end is set: the ones that move, and are logged
        self.annealing = tuple(a.option for a in self.info.anneals if values.get(a.end) is not None)

    # -- what moves with the step ------------------------------------------------------------------------------

    def weights_at(self, step: float | None) -> tuple[float, ...] | None:
        """Component weights ``[K]`` at ``step`` (:func:`weights_at`)."""
        return weights_at(self.schedule, self.reward_weights, step)

    def options_at(self, step: float | None, total_steps: int | None) -> tuple[dict[str, Any], dict[str, float]]:
        """``(keyword options for compute_advantages, annealed values to log)`` at ``step`` of ``total_steps``.

        The estimator's declared anneals are applied (:func:`varpo.registry.apply_schedules`; the ends never reach
        the estimator); an end that is set without a step or run length raises :class:`MissingStep`. Only the
        annealed options whose end is set are logged (a constant option is the configured value)."""
        try:
            options, annealed = registry.apply_schedules(self.method, self.options, step, total_steps)
        except LookupError as exc:
            raise MissingStep(exc.args[0]) from None
        options["names"] = list(self.names)
        return options, {k: v for k, v in annealed.items() if k in self.annealing}

    def scheduled(self, step: float | None, total_steps: int | None) -> dict[str, float]:
        """What moves with the step, under its metric name: annealed options and ``reward_weight/<name>``."""
        values = dict(self.options_at(step, total_steps)[1])
        if self.schedule is not None:
            values.update({f"reward_weight/{n}": w for n, w in zip(self.names, self.weights_at(step), strict=True)})
        return values

    # -- one batch -----------------------------------------------------------------------------------------------

    def compute(
        self,
        rewards: Tensor,
        group_ids: Tensor,
        *,
        step: float | None,
        total_steps: int | None,
        weights: Tensor | Sequence[float] | None = None,
        train: bool = True,
        stats: bool = True,
    ) -> StepResult:
        """Advantages of one batch (``rewards [N, K]``, ``group_ids [N]``) at ``step``.

        ``weights`` overrides :meth:`weights_at` (TRL passes its own float32 ``reward_weights``, kept equal to it by
        the trainer, so TRL's code and varpo's see the same numbers). ``train=False`` (evaluation) leaves the
        running σ out: only training batches move it."""
        options, annealed = self.options_at(step, total_steps)
        if weights is None:
            weights = self.weights_at(step)
        ema = self.sigma_ema if train else None
        out = compute_advantages(
            rewards, group_ids, self.method, weights, stats=stats, sigma_ema=ema, workspace=self.workspace, **options
        )
        scheduled = dict(annealed)
        if self.schedule is not None:
            # the numbers passed, as they are (a float tensor's values; a tuple's floats, not float32-rounded)
            w = weights.tolist() if isinstance(weights, Tensor) else [float(v) for v in weights]
            scheduled.update({f"reward_weight/{n}": float(v) for n, v in zip(self.names, w, strict=True)})
        return StepResult(out, scheduled, options, weights)

    def signal(
        self,
        rewards: Tensor,
        group_size: int,
        *,
        step: float | None,
        total_steps: int | None,
        weights: Tensor | Sequence[float] | None = None,
    ) -> GroupSignal:
        """Which groups of ``rewards [P·G, K]`` (contiguous groups) carry signal under this step's estimator,
        weights and options (:func:`varpo.group_filter.group_signal`); the running σ is left out."""
        options = self.options_at(step, total_steps)[0]
        if weights is None:
            weights = self.weights_at(step)
        return group_signal(rewards, group_size, self.method, weights, options)

    def check(self) -> None:
        """Run the estimator once on a two-sample dummy batch with the configured values (start and end of each
        anneal), so a bad value of any option fails before training, with the core's one-line message."""
        k = len(self.names)
        options = self.options_at(0, 1)[0]
        dummy = torch.tensor([[0.0] * k, [1.0] * k])
        ids = torch.zeros(2, dtype=torch.long)
        weights = self.weights_at(0)
        ema = None if self.sigma_ema is None else SigmaEMA(self.sigma_ema.decay, self.sigma_ema.shrink)
        compute_advantages(dummy, ids, self.method, weights, sigma_ema=ema, **options)
        for a in self.info.anneals:  # an anneal's end must be a valid value of its option
            if self.options.get(a.end) is not None:
                try:
                    ends = dict(options, **{a.option: self.options[a.end]})
                    compute_advantages(dummy, ids, self.method, weights, **ends)
                except ValueError as exc:
                    raise ValueError(f"{a.end}: {exc}") from None

    # -- state ---------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The estimator state to checkpoint: ``{"sigma_ema": SigmaEMA.state_dict()}``, ``{}`` without state."""
        return {} if self.sigma_ema is None else {"sigma_ema": self.sigma_ema.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; a one-line ``ValueError`` for a malformed entry. A key this step has no
        state for is ignored (a checkpoint of a run with ``sigma_ema`` resumed without it)."""
        if not isinstance(state, Mapping):
            raise ValueError(f"advantage step state must be a mapping, got {type(state).__name__}")
        if self.sigma_ema is not None and "sigma_ema" in state:
            self.sigma_ema.load_state_dict(state["sigma_ema"])


@dataclass
class StepState:
    """Estimator state a trainer owns when it builds a step per call (verl): one :class:`varpo.SigmaEMA` per
    ``(decay, shrink)`` (a run uses one; the key keeps two configurations apart). Checkpointed as
    ``{"sigma_ema": [SigmaEMA.state_dict(), ...]}``."""

    sigma_ema: dict[tuple[float, float], SigmaEMA] = field(default_factory=dict)
    #: the fast path's tile buffers, reused by every step built with this state (not checkpointed: scratch memory)
    workspace: Workspace = field(default_factory=Workspace)

    def sigma_ema_for(self, decay: float, shrink: float) -> SigmaEMA:
        return self.sigma_ema.setdefault((decay, shrink), SigmaEMA(decay, shrink))

    def state_dict(self) -> dict:
        return {"sigma_ema": [ema.state_dict() for ema in self.sigma_ema.values()]}

    def load_state_dict(self, state: Mapping[str, Any], source: str = "state") -> None:
        """Restore :meth:`state_dict`; ``source`` names the file in the one-line ``ValueError``."""
        entries = state.get("sigma_ema") if isinstance(state, Mapping) else None
        if not isinstance(entries, list):
            raise ValueError(f"{source}: expected {{'sigma_ema': [...]}}, got {state!r:.80}")
        restored = {}
        for entry in entries:
            ema = SigmaEMA()
            try:
                ema.load_state_dict(entry)
            except ValueError as exc:
                raise ValueError(f"{source}: {exc}") from None
            restored[(ema.decay, ema.shrink)] = ema
        self.sigma_ema = restored


__all__ = [
    "DEPRECATED",
    "OPTIONS",
    "AdvantageStep",
    "MissingStep",
    "StepResult",
    "StepState",
    "canonical_names",
    "own_options",
    "resolve",
    "weights_at",
]
