"""Public extension API: add an advantage estimator, a policy loss or a loss aggregation without forking varpo.

    import varpo

    def mine(batch, options):                     # batch: varpo.RewardBatch, options: varpo.AdvantageOptions
        adv = batch.zscores(options.eps) @ batch.wbar  # [N]
        return adv, batch.wbar                        # (advantages [N], effective weights [K])

    varpo.register_estimator("mine", mine)         # now advantage_method="mine" works everywhere

Every consumer reads the registries **when it validates**, not at import: ``VarpoGRPOConfig``, the ``varpo``
CLI (``train``/``sweep``), :func:`varpo.experiments.grid.expand_grid` and the verl plug-in (which registers
``varpo_<name>`` for every estimator known when verl loads it). So a method registered before the config is
built is accepted, and one registered later is accepted by the next validation.

Processes that do not run your code (a sweep's per-run subprocesses, verl's Ray workers) find methods through
**plug-ins**, loaded once per process by :func:`load_plugins` before the first lookup:

* the entry-point group ``varpo.methods`` (``[project.entry-points."varpo.methods"] mine = "mypkg.varpo_plugin"``
  in your package's ``pyproject.toml``); the target is a module (importing it registers) or a callable
  (called with no arguments);
* the environment variable ``VARPO_PLUGINS`` — comma-separated module names to import (no packaging needed).

A plug-in that fails to load raises :class:`PluginError` naming it (a silently missing method would only surface
later as "unknown advantage_method"). See ``docs/extending.md`` for the contract of each kind and the test kit
(:mod:`varpo.testing`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

PLUGIN_GROUP = "varpo.methods"
PLUGIN_ENV = "VARPO_PLUGINS"


class PluginError(RuntimeError):
    """A ``varpo.methods`` entry point or a ``VARPO_PLUGINS`` module failed to load (the CLI: one line, exit 2)."""


def unknown_hint() -> str:
    """What to add to an unknown-method error: how a method of one's own is found in every process."""
    return (
        f"; a method of your own must be registered in this process: name its module in {PLUGIN_ENV}=<module> "
        f"or a {PLUGIN_GROUP!r} entry point (docs/extending.md)"
    )


@dataclass(frozen=True)
class Anneal:
    """An option the estimator anneals over training: ``option`` goes from its configured value (the start) to the
    value of the engine-side option ``end`` by ``fn(start, end, step, total_steps)`` (e.g.
    :func:`varpo.schedules.linear_anneal`). The engines compute the value at each step (:func:`apply_schedules`),
    pass it as ``option`` and log it under ``option``'s name; ``end`` itself never reaches the estimator."""

    option: str
    end: str
    fn: Callable[[float, float | None, float, int], float]
    #: the start when ``option`` is not given (None: the estimator's declared default for ``option``).
    default: float | None = None


@dataclass(frozen=True)
class EstimatorInfo:
    """What the engines need to know about an estimator besides its function (declared at registration, so no
    code elsewhere compares method names).

    Attributes:
        multi_reward: the method's point is combining K >= 2 reward components (verl warns when it runs with one
            reward; docs list it among the multi-reward methods).
        description: one line for ``--help`` texts and docs.
        options: the estimator's own options, name -> default. ``compute_advantages(..., name=value)`` passes them
            to this estimator only (as ``options.extra[name]`` / ``options.name``); the engines take them from
            ``estimator_options`` (TRL config field, verl ``algorithm.varpo.estimator_options``).
        anneals: options annealed over training (:class:`Anneal`); the engines apply them and log the value.
        diagnostics: ``fn(batch, options) -> {key: tensor [K]}``: extra per-component statistics, reported as
            ``<key>/<component name>`` in :attr:`varpo.AdvantageOutput.stats` (absent for a component missing from
            the batch), e.g. SAW's coefficients of variation ``saw_cv``.
        sum_filter: the groups this estimator gives zero advantage are exactly those with a constant weighted-sum
            reward, so a DAPO group filter on the summed reward (verl's ``filter_groups.metric=score``) is exact.
        reads: the fields of :class:`varpo.AdvantageOptions` that only this estimator uses (saw: ``saw_base``,
            ``saw_offsets``); an engine rejects a non-default value of one with another method.
    """

    multi_reward: bool = True
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    anneals: tuple[Anneal, ...] = ()
    diagnostics: Callable | None = None
    sum_filter: bool = False
    reads: tuple[str, ...] = ()


@dataclass(frozen=True)
class LossInfo:
    """Policy-loss traits. ``per_sequence``: returns ``[B, 1]`` (one loss per sequence, needs ``group_ids``)."""

    per_sequence: bool = False
    description: str = ""


@dataclass(frozen=True)
class AggregationInfo:
    """Aggregation traits. ``needs_max_length``: uses M (the maximum response length)."""

    needs_max_length: bool = False
    description: str = ""


#: The method tables: name -> function, built-ins (registered by :mod:`varpo.advantages`, :mod:`varpo.losses` and
#: :mod:`varpo.aggregation` when they are imported) plus whatever the ``register_*`` functions add. The registry owns
#: them; the modules that define methods import the registry, never the reverse.
ESTIMATORS: dict[str, Callable] = {}
POLICY_LOSSES: dict[str, Callable] = {}
AGGREGATORS: dict[str, Callable] = {}
ESTIMATOR_INFO: dict[str, EstimatorInfo] = {}
LOSS_INFO: dict[str, LossInfo] = {}
AGGREGATION_INFO: dict[str, AggregationInfo] = {}

_loaded = False
#: callbacks ``(kind, name)`` run after every registration (the verl plug-in registers ``varpo_<name>`` with verl).
LISTENERS: list[Callable[[str, str], None]] = []


def _notify(kind: str, name: str) -> None:
    for listener in list(LISTENERS):
        listener(kind, name)


def _check_name(kind: str, name: str, fn: Callable, table: dict, replace: bool) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind} name must be a Python identifier (it is used in config values), got {name!r}")
    if not callable(fn):
        raise TypeError(f"{kind} {name!r}: expected a callable, got {type(fn).__name__}")
    if name in table and table[name] is not fn and not replace:
        raise ValueError(f"{kind} {name!r} is already registered; pass replace=True to override it")


def _register(
    kind: str, event: str, table: dict, infos: dict, name: str, fn: Callable, info, replace: bool
) -> Callable:
    """The one registration step of every kind: check the name, store ``fn`` and its info, tell the listeners."""
    _check_name(kind, name, fn, table, replace)
    table[name] = fn
    infos[name] = info
    _notify(event, name)
    return fn


def lookup(table: dict, name, kind: str) -> Callable:
    """``table[name]`` for a method name given at call time (built-in or registered), importing the plug-ins once
    if it is not known yet; anything else is a one-line ``ValueError`` naming the choices."""
    if isinstance(name, str) and name not in table:
        load_plugins()
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {tuple(table)}{unknown_hint()}")
    return table[name]


def register_estimator(
    name: str,
    fn: Callable,
    *,
    multi_reward: bool = True,
    description: str = "",
    options: Mapping[str, Any] | None = None,
    anneals: tuple[Anneal, ...] | list[Anneal] = (),
    diagnostics: Callable | None = None,
    sum_filter: bool = False,
    reads: tuple[str, ...] | list[str] = (),
    replace: bool = False,
) -> Callable:
    """Register ``fn(batch: RewardBatch, options: AdvantageOptions) -> (advantages [N], effective_weights [K])``.

    ``advantages`` may be any float dtype; ``compute_advantages`` zeroes unscorable rows and non-finite values and
    returns float32. ``effective_weights`` (``[K]``, logged as ``adv/weight/<name>``) are then passed through
    :func:`varpo.advantages.no_signal_rule` (``docs/engine.md``): 0 for components without signal, the rest
    renormalized to sum to 1, all 0 when no component has signal.

    ``options`` (name -> default), ``anneals``, ``diagnostics``, ``sum_filter`` and ``reads`` are the declarations of
    :class:`EstimatorInfo`. Returns ``fn``.
    """
    own = dict(options or {})
    for key in own:
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"estimator {name!r}: option names must be Python identifiers, got {key!r}")
    anneals = tuple(anneals)
    for a in anneals:
        if not isinstance(a, Anneal):
            raise TypeError(f"estimator {name!r}: anneals must be varpo.registry.Anneal, got {type(a).__name__}")
        if a.end in own:
            raise ValueError(f"estimator {name!r}: anneal end {a.end!r} is engine-side; do not declare it as an option")
        if a.option not in own and a.default is None:
            raise ValueError(
                f"estimator {name!r}: annealed option {a.option!r} needs a declared default or Anneal.default"
            )
    if diagnostics is not None and not callable(diagnostics):
        raise TypeError(f"estimator {name!r}: diagnostics must be callable, got {type(diagnostics).__name__}")
    info = EstimatorInfo(
        multi_reward=multi_reward,
        description=description,
        options=MappingProxyType(own),
        anneals=anneals,
        diagnostics=diagnostics,
        sum_filter=bool(sum_filter),
        reads=tuple(reads),
    )
    return _register("estimator", "estimator", ESTIMATORS, ESTIMATOR_INFO, name, fn, info, replace)


def register_policy_loss(
    name: str, fn: Callable, *, per_sequence: bool = False, description: str = "", replace: bool = False
) -> Callable:
    """Register ``fn(*, logprobs, old_logprobs, advantages, mask, **options) -> (loss [B, T], metrics dict)``.

    Engines pass ``ppo_clip``'s keywords (``ref_logprobs``, ``beta``, ``clip_low``, ``clip_high``,
    ``importance_sampling_level``); accept ``**kwargs`` for the ones you ignore. Returns ``fn``.
    """
    info = LossInfo(per_sequence=per_sequence, description=description)
    return _register("policy loss", "policy_loss", POLICY_LOSSES, LOSS_INFO, name, fn, info, replace)


def register_aggregation(
    name: str, fn: Callable, *, needs_max_length: bool = False, description: str = "", replace: bool = False
) -> Callable:
    """Register ``fn(per_token_loss [B, T], mask [B, T], scale: LossScale, max_length, alpha) -> scalar``.

    Divide only by the *global* normalizers in ``scale`` (never by this call's own mask sums) so micro-batch
    losses sum to the full-batch loss (see :mod:`varpo.aggregation`). Returns ``fn``.
    """
    info = AggregationInfo(needs_max_length=needs_max_length, description=description)
    return _register("loss aggregation", "aggregation", AGGREGATORS, AGGREGATION_INFO, name, fn, info, replace)


def load_plugins(force: bool = False) -> None:
    """Import every ``varpo.methods`` entry point and ``VARPO_PLUGINS`` module once per process."""
    global _loaded
    if _loaded and not force:
        return
    _loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            target = ep.load()
            if callable(target):
                target()
        except Exception as exc:
            raise PluginError(
                f"varpo plug-in entry point {ep.name!r} ({ep.value}) failed: {type(exc).__name__}: {exc}"
            ) from exc
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise PluginError(f"{PLUGIN_ENV} module {module!r} failed to import: {type(exc).__name__}: {exc}") from exc


def estimators() -> tuple[str, ...]:
    """Names of all advantage estimators (built-in + registered + plug-ins), in registration order."""
    load_plugins()
    return tuple(ESTIMATORS)


def policy_losses() -> tuple[str, ...]:
    load_plugins()
    return tuple(POLICY_LOSSES)


def aggregations() -> tuple[str, ...]:
    load_plugins()
    return tuple(AGGREGATORS)


def multi_reward_methods() -> tuple[str, ...]:
    """Estimators whose point is combining several components (single-reward methods: ``multi_reward=False``)."""
    names = estimators()
    return tuple(n for n in names if ESTIMATOR_INFO.get(n, EstimatorInfo()).multi_reward)


def estimator_info(method: str) -> EstimatorInfo:
    """The declarations of ``method`` (defaults for a name not registered)."""
    if method not in ESTIMATOR_INFO:
        load_plugins()
    return ESTIMATOR_INFO.get(method, EstimatorInfo())


def sum_filter_methods() -> tuple[str, ...]:
    """Estimators declaring ``sum_filter``: DAPO's filter on the summed reward is exact for them."""
    return tuple(n for n in estimators() if ESTIMATOR_INFO.get(n, EstimatorInfo()).sum_filter)


def anneal_ends(method: str | None) -> tuple[str, ...]:
    """The engine-side end keys of ``method``'s annealed options (``()`` for None or an unknown name)."""
    return () if method is None else tuple(a.end for a in estimator_info(method).anneals)


def method_only_options() -> dict[str, tuple[str, ...]]:
    """Option -> the estimators that use it, for options only some estimators use: the declared ``reads`` and
    anneal ends (an engine rejects a non-default value with any other method)."""
    out: dict[str, tuple[str, ...]] = {}
    for name in estimators():
        info = ESTIMATOR_INFO.get(name, EstimatorInfo())
        for option in (*info.reads, *(a.end for a in info.anneals)):
            out[option] = (*out.get(option, ()), name)
    return out


def declaring(end: str) -> tuple[str, ...]:
    """The estimators that declare an anneal ending at ``end`` (for "only applies to ..." messages)."""
    return tuple(n for n in estimators() if end in anneal_ends(n))


def apply_schedules(
    method: str, options: Mapping[str, Any], step: float | None, total_steps: int | None
) -> tuple[dict[str, Any], dict[str, float]]:
    """``(options for compute_advantages, scheduled values)`` at ``step`` of ``total_steps``.

    For each :class:`Anneal` of ``method``: the option's value becomes ``fn(start, end, step, total_steps)`` with
    ``start = options[option]`` (else the declared default) and ``end = options.pop(end)`` (None: held at start).
    The second dict maps every annealed option to its value (what the engines log). An ``end`` that is set while
    ``step`` or ``total_steps`` is None raises :class:`LookupError` naming it (the caller says where steps come from).
    """
    out = dict(options)
    info = estimator_info(method)
    values: dict[str, float] = {}
    for a in info.anneals:
        end = out.pop(a.end, None)
        start = out.get(a.option)
        if start is None:
            start = info.options.get(a.option, a.default)
        if end is not None and (step is None or total_steps is None):
            raise LookupError(a.end)
        value = start if end is None else a.fn(start, end, step, total_steps)
        out[a.option] = values[a.option] = value
    return out, values


def needs_max_length(aggregation: str) -> bool:
    load_plugins()
    return AGGREGATION_INFO.get(aggregation, AggregationInfo()).needs_max_length


def is_per_sequence(loss: str) -> bool:
    load_plugins()
    return LOSS_INFO.get(loss, LossInfo()).per_sequence
