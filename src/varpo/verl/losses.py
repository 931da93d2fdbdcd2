"""``varpo_gvpo``: verl's policy-loss signature in, :func:`varpo.policy_loss` (``"gvpo"``) out.

GVPO's loss needs to know which rows of a micro-batch form a group (it centers the implicit reward per group),
but verl's policy-loss call carries no uid. verl's worker loss (``verl.workers.utils.losses.ppo_loss``) does see
the micro-batch ``TensorDict`` including ``uid``; :func:`worker_loss` is that same function run inside a
:func:`varpo.verl.context.loss_groups` block. Our V1 trainer mode installs it on the actor workers with verl's
public ``set_loss_fn`` (the mechanism verl itself uses for the critic), so nothing in verl is patched.

Aggregation: GVPO's loss is one value per sequence (already divided by ``|g| - 1``); we reduce it with verl's own
``agg_loss`` in ``seq-mean-token-sum`` mode over a ``[B, 1]`` matrix, i.e. the mean over the sequences of the
global mini-batch using ``config.global_batch_info`` — micro-batch and DP sums then add up to exactly
``varpo.aggregate_loss(loss, ones, "token_mean")`` on the whole mini-batch. ``loss_agg_mode`` still governs
verl's entropy term.
"""

from __future__ import annotations

from typing import Any

import torch

import varpo
from varpo.verl.context import as_list, current_loss_groups, group_index, loss_groups

_NO_GROUPS = (
    "varpo_gvpo needs the group id (uid) of every row of the micro-batch, which verl's policy-loss call does not "
    "carry. varpo's V1 trainer modes provide it: run with trainer.use_v1=true trainer.v1.trainer_mode=varpo "
    "(the legacy trainer is not supported for GVPO)."
)


def gvpo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Registered as ``varpo_gvpo`` (``actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo``)."""
    from verl.trainer.ppo.core_algos import agg_loss

    groups = current_loss_groups()
    if groups is None:
        raise RuntimeError(_NO_GROUPS)
    if rollout_is_weights is not None:
        raise ValueError("varpo_gvpo has no importance ratio; unset algorithm.rollout_correction.rollout_is")
    if len(groups.group_ids) != log_prob.shape[0]:
        raise ValueError(f"varpo_gvpo: {len(groups.group_ids)} group ids for {log_prob.shape[0]} rows")
    per_seq, metrics = varpo.policy_loss(
        "gvpo",
        logprobs=log_prob,
        old_logprobs=old_log_prob,
        advantages=advantages,
        mask=response_mask,
        group_ids=torch.from_numpy(group_index(groups.group_ids)).to(log_prob.device),
        gvpo_beta=groups.gvpo_beta,
        group_size=groups.group_size,
    )
    seq_mask = (response_mask.sum(-1, keepdim=True) > 0).to(per_seq.dtype)  # [B, 1]; padding rows excluded
    batch_info = dict(getattr(config, "global_batch_info", None) or {})
    batch_info.pop("batch_num_tokens", None)  # token counts do not apply to a per-sequence loss
    batch_info.pop("loss_scale_factor", None)
    pg_loss = agg_loss(loss_mat=per_seq, loss_mask=seq_mask, loss_agg_mode="seq-mean-token-sum", **batch_info)
    return pg_loss, {f"actor/varpo_gvpo/{k}": v for k, v in metrics.items()}


def worker_loss(config, model_output, data, dp_group=None, *, gvpo_beta: float, group_size: int | None = None):
    """verl's ``ppo_loss`` with the micro-batch's uids exposed to ``varpo_gvpo`` (installed via ``set_loss_fn``)."""
    from verl.workers.utils import losses as verl_losses

    if "uid" not in data.keys():
        raise RuntimeError("varpo_gvpo: the actor micro-batch has no 'uid' field (verl changed what it sends)")
    with loss_groups(as_list(data["uid"]), gvpo_beta=gvpo_beta, group_size=group_size):
        return verl_losses.ppo_loss(config, model_output, data, dp_group)
