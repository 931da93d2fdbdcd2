"""varpo: variance-aware, multi-reward group policy optimization for LLMs.

Core API (pure functions over torch tensors, no trainer, no model)::

    out = varpo.compute_advantages(rewards, group_ids, method="dvao", weights=None, **options)
    per_token, metrics = varpo.policy_loss("ppo_clip", logprobs=..., old_logprobs=..., advantages=..., mask=...)
    loss = varpo.aggregate_loss(per_token, mask, mode="vl_norm", max_length=M, alpha=1.0)

Extension API (``docs/extending.md``): ``varpo.register_estimator(name, fn)``, ``varpo.register_policy_loss``,
``varpo.register_aggregation``; the property-test kit for new methods is :mod:`varpo.testing`.
"""

from varpo.advantages import (
    ESTIMATORS,
    METHODS,
    AdvantageOptions,
    AdvantageOutput,
    RewardBatch,
    SigmaEMA,
    Workspace,
    compute_advantages,
)
from varpo.aggregation import AGGREGATIONS, LossScale, aggregate_loss, loss_scale, vl_norm_weights
from varpo.losses import POLICY_LOSSES, policy_loss
from varpo.registry import register_aggregation, register_estimator, register_policy_loss

__version__ = "0.1.0"

__all__ = [
    "AGGREGATIONS",
    "ESTIMATORS",
    "METHODS",
    "POLICY_LOSSES",
    "AdvantageOptions",
    "AdvantageOutput",
    "LossScale",
    "RewardBatch",
    "SigmaEMA",
    "Workspace",
    "aggregate_loss",
    "compute_advantages",
    "loss_scale",
    "policy_loss",
    "register_aggregation",
    "register_estimator",
    "register_policy_loss",
    "vl_norm_weights",
]
