"""The one wrapped function: ``verl.trainer.ppo.ray_trainer.compute_advantage`` (legacy trainer, ``use_v1=false``).

Why: the legacy ``RayPPOTrainer.fit`` puts every reward component into ``batch.non_tensor_batch`` and then calls
the module-level ``compute_advantage(batch, adv_estimator=..., ...)``, which hands ``non_tensor_batch`` only to the
estimator literally named ``gdpo``. Our wrapper keeps verl's function and behaviour unchanged and, for ``varpo_*``
estimators only, runs it inside :func:`varpo.verl.context.advantage_inputs` with that ``non_tensor_batch``.

What it relies on (checked here at install time and by ``tests/verl``; a verl upgrade that moves any of it makes
the plug-in fail loudly instead of silently training on the wrong rewards):

* ``ray_trainer.compute_advantage`` exists and takes ``(data, adv_estimator, ...)``;
* ``RayPPOTrainer.fit`` looks it up as a module global (so replacing the attribute takes effect).

verl's V1 helper ``verl.trainer.ppo.v1.utils`` imports the same function by name; whichever object it holds,
behaviour there is unchanged, because an outer context opened by our V1 trainer mode takes precedence.
"""

from __future__ import annotations

import functools
import inspect
import logging
from types import ModuleType
from typing import Any

from varpo.verl.context import advantage_inputs
from varpo.verl.settings import METHOD_OF_ESTIMATOR

logger = logging.getLogger("varpo.verl")

TARGET = "verl.trainer.ppo.ray_trainer.compute_advantage"


class HookError(ImportError):
    """verl no longer has what the legacy hook wraps."""


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
    fit = getattr(trainer, "fit", None)
    if fit is None or "compute_advantage" not in inspect.unwrap(fit).__code__.co_names:
        raise HookError(
            f"varpo: RayPPOTrainer.fit no longer calls the module-level {TARGET}; wrapping it would have no effect"
        )
    return original


def install(module: ModuleType | None = None) -> Any:
    """Wrap ``module.compute_advantage`` (default: verl's ``ray_trainer``); idempotent. Returns the wrapper."""
    if module is None:
        import verl.trainer.ppo.ray_trainer as module
    original = check_target(module)
    if getattr(original, "__varpo_wraps__", None) is not None:
        return original

    @functools.wraps(original)
    def compute_advantage(data, adv_estimator, *args, **kwargs):
        if _estimator_name(adv_estimator) not in METHOD_OF_ESTIMATOR:
            return original(data, adv_estimator, *args, **kwargs)
        step = (getattr(data, "meta_info", None) or {}).get("global_steps")
        with advantage_inputs(data.non_tensor_batch, step=step):
            return original(data, adv_estimator, *args, **kwargs)

    compute_advantage.__varpo_wraps__ = original
    module.compute_advantage = compute_advantage
    logger.debug("varpo: wrapped %s", TARGET)
    return compute_advantage
