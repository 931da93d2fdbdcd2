"""Row bookkeeping for the V1 trainer modes, kept free of verl's trainer imports so it is testable on its own.

* :func:`reward_components` turns a TransferQueue ``kv_batch_get`` result into row-aligned component columns.
* :func:`group_aligned_order` is GVPO's replacement for verl's row-level DP balancing: the same verl partitioner,
  applied to whole uid groups.
"""

from __future__ import annotations

from typing import Any

import torch
from verl.utils.seqlen_balancing import calculate_workload, get_seqlen_balanced_partitions

from varpo.verl.context import as_list


def reward_components(data: Any, keys: tuple[str, ...]) -> dict[str, list]:
    """Row-aligned columns ``{"uid": [...], key: [...]}`` from a TransferQueue ``kv_batch_get`` result.

    Components come from each sample's ``extra_fields["reward_extra_info"]`` (the reward-loop path, verl's default);
    a key found there for no sample falls back to a top-level field of that name (where verl's colocated reward
    model path ``_compute_reward_colocate`` writes them). A component missing for one sample becomes ``None``
    (NaN, "missing", in the core); a key found nowhere is a configuration error.
    """
    fields = set(data.keys())
    extra = as_list(data["extra_fields"]) if "extra_fields" in fields else []
    infos = [ef.get("reward_extra_info", {}) if isinstance(ef, dict) else {} for ef in extra]
    columns: dict[str, list] = {"uid": as_list(data["uid"])}
    for key in keys:
        if any(key in info for info in infos):
            columns[key] = [info.get(key) for info in infos]
        elif key in fields:
            columns[key] = as_list(data[key])
        else:
            available = sorted({k for info in infos for k in info})
            raise KeyError(
                f"reward component {key!r} (algorithm.varpo.reward_keys) is in no sample's reward_extra_info; "
                f"the reward function returned keys {available}"
            )
    return columns


def group_aligned_order(
    uids: list[Any], seq_lens: list[int], *, dp_size: int, group_size: int, batch_multiple: int
) -> tuple[list[int], list[list[int]]]:
    """Row order that gives every DP rank whole uid groups, contiguously, balanced by group workload.

    Returns ``(order, partitions)``: ``order`` for ``KVBatchMeta.reorder``; ``partitions[r]`` the original row
    indices on rank ``r`` (for verl's balance metrics). Raises ``ValueError`` when the batch cannot be split into
    whole groups (incomplete groups, or a size verl would pad with synthetic rows).
    """
    groups: dict[str, list[int]] = {}
    for row, uid in enumerate(uids):
        groups.setdefault(str(uid), []).append(row)
    bad = {uid: len(rows) for uid, rows in groups.items() if len(rows) != group_size}
    if bad:
        sample = dict(list(bad.items())[:3])
        raise ValueError(
            f"varpo_gvpo needs every group complete with rollout.n={group_size} samples; got sizes {sample} "
            "(failed rollouts or multi-output agent loops); set trainer.v1.sampler.sync_refill_failed_groups=true "
            "or use single-output agent loops"
        )
    if len(uids) % batch_multiple:
        raise ValueError(
            f"varpo_gvpo: {len(uids)} rows is not a multiple of {batch_multiple} (lcm of DP size and PPO mini-batch "
            "rows); verl would pad with synthetic rows that break group alignment. Make data.train_batch_size a "
            "multiple of actor.ppo_mini_batch_size and of the DP size"
        )
    if len(groups) % dp_size:
        raise ValueError(f"varpo_gvpo: {len(groups)} groups cannot be split evenly over {dp_size} DP ranks")
    workload = calculate_workload(torch.tensor(seq_lens, dtype=torch.int64)).tolist()
    members = list(groups.values())
    group_workload = [sum(workload[r] for r in rows) for rows in members]
    group_partitions = get_seqlen_balanced_partitions(group_workload, k_partitions=dp_size, equal_size=True)
    partitions = [[row for g in part for row in members[g]] for part in group_partitions]
    return [row for part in partitions for row in part], partitions
