"""varpo on TRL: every varpo estimator, policy loss and loss aggregation through TRL's ``GRPOTrainer``.

    from varpo.trl import VarpoGRPOConfig, VarpoGRPOTrainer
    args = VarpoGRPOConfig(output_dir="runs/x", advantage_method="dvao", loss_aggregation="vl_norm")
    trainer = VarpoGRPOTrainer(model, reward_funcs=[correctness, format], args=args, train_dataset=ds,
                               processing_class=tokenizer)
    trainer.train()

See ``docs/engine.md`` for every field and the TRL methods that are overridden.
"""

from varpo.trl.config import VarpoGRPOConfig
from varpo.trl.metrics import METRICS_FILE, MetricsJSONLCallback, read_metrics, repair_metrics
from varpo.trl.rewards import IsolatedReward, RewardFunctionError
from varpo.trl.trainer import Trace, VarpoGRPOTrainer, shuffle_groups

__all__ = [
    "METRICS_FILE",
    "IsolatedReward",
    "MetricsJSONLCallback",
    "RewardFunctionError",
    "Trace",
    "VarpoGRPOConfig",
    "VarpoGRPOTrainer",
    "read_metrics",
    "repair_metrics",
    "shuffle_groups",
]
