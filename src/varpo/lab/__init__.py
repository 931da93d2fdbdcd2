"""The mechanism lab: a tabular token-level softmax policy over finite response sets with K-vector rewards, trained
with the engines' own ``compute_advantages`` / ``policy_loss`` / ``aggregate_loss`` (see ``docs/lab.md``)."""

from varpo.lab.env import Objective, RewardSpec, from_reward_log, synthetic
from varpo.lab.train import History, LabConfig, Trainer, train

__all__ = ["History", "LabConfig", "Objective", "RewardSpec", "Trainer", "from_reward_log", "synthetic", "train"]
