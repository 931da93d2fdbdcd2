"""The legacy trainer (``trainer.use_v1=false``): ``ray_trainer.compute_advantage`` and three ``RayPPOTrainer`` methods.

Why: the legacy ``RayPPOTrainer.fit`` puts every reward component into ``batch.non_tensor_batch`` and then calls
the module-level ``compute_advantage(batch, adv_estimator=..., ...)``, which hands ``non_tensor_batch`` only to the
estimator literally named ``gdpo``, and hands no estimator the training step (verl 0.9.1 keeps it in
``trainer.global_steps``; only the generation batch's ``meta_info`` carries it, ``ray_trainer.py`` ~1489, and the
batch reaching ``compute_advantage`` does not). So, with verl's functions and behaviour otherwise unchanged:

* ``compute_advantage`` (module global): for ``varpo_*`` estimators only, runs verl's function inside
  :func:`varpo.verl.state.advantage_context` with that ``non_tensor_batch`` and, when called from ``fit``, the
  trainer's step, run length and state; every other estimator goes straight through;
* ``RayPPOTrainer.fit``: records which trainer is running (a ``contextvars`` variable, alive for the call);
* ``RayPPOTrainer._save_checkpoint`` / ``_load_checkpoint``: after verl's own, save / restore varpo's trainer state
  (dvao's running σ̄) in the same ``global_step_<n>`` folder (:func:`varpo.verl.state.save` / ``load``).

What it relies on (checked here at install time and by ``tests/verl``; a verl upgrade that moves any of it makes
the plug-in fail loudly instead of silently training on the wrong rewards or the wrong step):

* ``ray_trainer.compute_advantage`` exists and takes ``(data, adv_estimator, ...)``;
* ``RayPPOTrainer.fit`` looks it up as a module global (so replacing the attribute takes effect);
* ``RayPPOTrainer`` has ``_save_checkpoint`` and ``_load_checkpoint``.

verl's V1 helper ``verl.trainer.ppo.v1.utils`` imports the same function by name; whichever object it holds,
behaviour there is unchanged, because an outer context opened by our V1 trainer mode takes precedence.
"""

from __future__ import annotations

import functools
import inspect
import logging
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from varpo.verl import state
from varpo.verl.settings import METHOD_OF_ESTIMATOR

logger = logging.getLogger("varpo.verl")

TARGET = "verl.trainer.ppo.ray_trainer.compute_advantage"
#: RayPPOTrainer methods wrapped (after verl's own code runs, or around it for fit).
METHODS = ("fit", "_save_checkpoint", "_load_checkpoint")

_RUNNING: ContextVar[Any] = ContextVar("varpo_verl_legacy_trainer", default=None)


class HookError(ImportError):
    """verl no longer has what the legacy hook wraps."""


class _NoTrainer:
    """Stands for "no trainer known": no step, no run length, state that lives for one call."""


def _estimator_name(adv_estimator: Any) -> str:
    return str(getattr(adv_estimator, "value", adv_estimator))


def check_target(module: ModuleType) -> Any:
    """Return the function to wrap, or raise :class:`HookError` naming what moved."""
    original = getattr(module, "compute_advantage", None)
    if original is None or not callable(original):
        raise HookError(f"varpo: {TARGET} is gone; the legacy-trainer hook for reward components cannot be installed")
    params = list(inspect.signature(getattr(original, "__varpo_wraps__", original)).parameters)
    if params[:2] != ["data", "adv_estimator"]:
        raise HookError(f"varpo: {TARGET} changed its signature to {params}; expected (data, adv_estimator, ...)")
    trainer = getattr(module, "RayPPOTrainer", None)
    missing = [m for m in METHODS if not callable(getattr(trainer, m, None))]
    if missing:
        raise HookError(f"varpo: verl's RayPPOTrainer has no {missing}; the legacy-trainer hooks cannot be installed")
    fit = _unwrapped(trainer.fit)
    if "compute_advantage" not in fit.__code__.co_names:
        raise HookError(
            f"varpo: RayPPOTrainer.fit no longer calls the module-level {TARGET}; wrapping it would have no effect"
        )
    return original


def _unwrapped(fn: Any) -> Any:
    return getattr(fn, "__varpo_wraps__", fn)


def running_trainer() -> Any:
    """The ``RayPPOTrainer`` whose ``fit`` is running in this thread, or ``None``."""
    return _RUNNING.get()


def _wrap_methods(trainer_cls: type) -> None:
    """Wrap ``fit`` / ``_save_checkpoint`` / ``_load_checkpoint`` of ``trainer_cls``; idempotent."""
    if getattr(trainer_cls.fit, "__varpo_wraps__", None) is not None:
        return
    fit, save, load = (getattr(trainer_cls, m) for m in METHODS)

    @functools.wraps(fit)
    def wrapped_fit(self, *args, **kwargs):
        token = _RUNNING.set(self)
        try:
            return fit(self, *args, **kwargs)
        finally:
            _RUNNING.reset(token)

    @functools.wraps(save)
    def wrapped_save(self, *args, **kwargs):
        out = save(self, *args, **kwargs)
        state.save(self)
        return out

    @functools.wraps(load)
    def wrapped_load(self, *args, **kwargs):
        out = load(self, *args, **kwargs)
        state.load(self)
        return out

    for name, original, wrapper in zip(METHODS, (fit, save, load), (wrapped_fit, wrapped_save, wrapped_load)):
        wrapper.__varpo_wraps__ = original
        setattr(trainer_cls, name, wrapper)


def install(module: ModuleType | None = None) -> Any:
    """Wrap ``module.compute_advantage`` and ``module.RayPPOTrainer``'s methods (default module: verl's
    ``ray_trainer``); idempotent. Returns the ``compute_advantage`` wrapper."""
    if module is None:
        import verl.trainer.ppo.ray_trainer as module
    original = check_target(module)
    _wrap_methods(module.RayPPOTrainer)
    if getattr(original, "__varpo_wraps__", None) is not None:
        return original

    @functools.wraps(original)
    def compute_advantage(data, adv_estimator, *args, **kwargs):
        if _estimator_name(adv_estimator) not in METHOD_OF_ESTIMATOR:
            return original(data, adv_estimator, *args, **kwargs)
        # Outside fit (a direct call) there is no trainer: no step, and a fresh state for this call only.
        trainer = running_trainer()
        with state.advantage_context(trainer if trainer is not None else _NoTrainer(), data.non_tensor_batch):
            return original(data, adv_estimator, *args, **kwargs)

    compute_advantage.__varpo_wraps__ = original
    module.compute_advantage = compute_advantage
    logger.debug("varpo: wrapped %s", TARGET)
    return compute_advantage
