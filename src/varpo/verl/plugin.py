"""verl entry point (``[project.entry-points."verl.plugins"] varpo = "varpo.verl.plugin"``).

verl imports this module on every ``import verl`` — driver, TaskRunner, engine, rollout and reward workers — so
registrations exist wherever verl looks them up (advantages in the TaskRunner, policy losses in the workers).

Loud failure: verl wraps plug-in loading in ``except Exception: logger.debug(...)``, so a broken plug-in would
otherwise surface much later as "Unknown advantage estimator". We log the full traceback at ERROR level (visible
with verl's default WARNING logging) and re-raise. ``python -m varpo.verl.train`` imports this module directly, so
there the error stops the launch.

Registered here:

* ``varpo_<method>`` advantage estimators for every estimator in varpo's registry (:mod:`varpo.verl.estimators`):
  built-ins, ``varpo.methods`` plug-ins (loaded first), and — through a registry listener — any estimator
  registered later with :func:`varpo.register_estimator` in the same process;
* the ``varpo_gvpo`` policy loss (:mod:`varpo.verl.losses`);
* the legacy-trainer hook (:mod:`varpo.verl.legacy`, one wrapped function);
* verl's trl probe answering whether trl has the value-head class verl imports (:mod:`varpo.verl.compat`), so
  building an actor does not fail on the trl that varpo's TRL engine installs;
* V1 trainer modes ``varpo*`` (:mod:`varpo.verl.trainer`) — only when TransferQueue, which verl's V1 trainer
  itself needs, is installed; without it no V1 run is possible at all.
"""

from __future__ import annotations

import importlib.util
import logging

logger = logging.getLogger("varpo.verl")


def register() -> None:
    """Register everything; idempotent (verl's registries accept re-registering the same object)."""
    from verl.trainer.ppo import core_algos

    from varpo import registry
    from varpo.verl import POLICY_LOSS_NAME, compat, legacy
    from varpo.verl.estimators import ESTIMATORS
    from varpo.verl.losses import gvpo_policy_loss

    registry.load_plugins()
    for name, fn in ESTIMATORS.items():
        core_algos.register_adv_est(name)(fn)
    if _on_register not in registry.LISTENERS:
        registry.LISTENERS.append(_on_register)
    core_algos.register_policy_loss(POLICY_LOSS_NAME)(gvpo_policy_loss)
    legacy.install()
    compat.install()
    if importlib.util.find_spec("transfer_queue") is None:
        logger.info("varpo: transfer_queue is not installed, so verl's V1 trainer cannot run; V1 modes not registered")
    else:
        import varpo.verl.trainer  # noqa: F401  (registers the varpo* V1 trainer modes)


def _on_register(kind: str, name: str) -> None:
    """Registry listener: an estimator registered after verl loaded us becomes ``varpo_<name>`` in verl too."""
    if kind != "estimator":
        return
    from verl.trainer.ppo import core_algos

    from varpo.verl import ESTIMATOR_PREFIX
    from varpo.verl.estimators import ESTIMATORS

    key = f"{ESTIMATOR_PREFIX}{name}"
    # One cached adapter per name, which looks the core function up at call time, so replace=True needs nothing.
    core_algos.register_adv_est(key)(ESTIMATORS[key])


try:
    register()
except BaseException:
    logger.error(
        "varpo verl plug-in failed to load (traceback below; verl itself only logs this at debug level): varpo_* "
        "estimators, varpo_gvpo, the legacy hook or the varpo trainer modes may be missing",
        exc_info=True,
    )
    raise
