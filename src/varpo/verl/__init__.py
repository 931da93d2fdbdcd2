"""varpo on stock verl 0.9: a plug-in, not a fork.

verl loads :mod:`varpo.verl.plugin` from the ``verl.plugins`` entry point on every ``import verl`` (driver,
TaskRunner, engine and reward workers). The plug-in registers

* advantage estimators ``varpo_grpo``, ``varpo_dr_grpo``, ``varpo_ac``, ``varpo_gdpo``, ``varpo_dvao``,
  ``varpo_saw``, ``varpo_rvpo`` — thin adapters over :func:`varpo.compute_advantages`;
* the policy loss ``varpo_gvpo`` — a thin adapter over :func:`varpo.policy_loss` (``"gvpo"``);
* V1 trainer modes ``varpo``, ``varpo_colocate_async``, ``varpo_separate_async`` that carry per-component rewards
  from TransferQueue to advantage time and keep GVPO groups whole in every micro-batch;
* one wrapped function for the legacy trainer (``verl.trainer.ppo.ray_trainer.compute_advantage``), which
  exposes ``non_tensor_batch`` (the reward components) to our estimators.

Options live under ``algorithm.varpo`` (hydra: ``+algorithm.varpo.<key>=...``, see :mod:`varpo.verl.settings`).
``python -m varpo.verl.train`` validates them before handing over to verl's ``main_ppo``. Importing this package
does not import verl; only the submodules that need it do.
"""

ESTIMATOR_PREFIX = "varpo_"
POLICY_LOSS_NAME = "varpo_gvpo"
TRAINER_MODES = ("varpo", "varpo_colocate_async", "varpo_separate_async")

__all__ = ["ESTIMATOR_PREFIX", "POLICY_LOSS_NAME", "TRAINER_MODES"]
