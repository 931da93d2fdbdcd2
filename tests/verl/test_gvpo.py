"""varpo_gvpo: verl's policy-loss call signature, worker loss, and whole groups through verl's micro-batching."""

from __future__ import annotations

import math

import pytest
import torch
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.utils import tensordict_utils as tu
from verl.workers.config import ActorConfig, PolicyLossConfig
from verl.workers.engine.utils import prepare_micro_batches

import varpo
import varpo.verl.plugin  # noqa: F401
from tests.verl.helpers import group_ids
from varpo.verl.batching import group_aligned_order
from varpo.verl.context import loss_groups
from varpo.verl.losses import worker_loss

N_PER_GROUP, BETA = 4, 0.1


def actor_config(**overrides) -> ActorConfig:
    kwargs = dict(strategy="fsdp", rollout_n=N_PER_GROUP, ppo_micro_batch_size_per_gpu=1)
    kwargs.update(overrides)
    return ActorConfig(policy_loss=PolicyLossConfig(loss_mode="varpo_gvpo"), **kwargs)


def rollout(num_groups: int, seed: int = 0, max_len: int = 6):
    """Shuffled uids (whole groups of 4), lengths, per-row log-prob leaves, old log-probs, centered rewards."""
    g = torch.Generator().manual_seed(seed)
    uids = [f"u{i // N_PER_GROUP}" for i in range(num_groups * N_PER_GROUP)]
    perm = torch.randperm(len(uids), generator=g).tolist()
    uids = [uids[i] for i in perm]
    lengths = torch.randint(1, max_len + 1, (len(uids),), generator=g)
    rewards = torch.rand(len(uids), generator=g, dtype=torch.float64)
    centered = varpo.compute_advantages(rewards, group_ids(uids), "dr_grpo").advantages
    logps = [(-torch.rand(int(n), generator=g, dtype=torch.float64)).requires_grad_() for n in lengths]
    old = [lp.detach() - 0.3 * torch.rand(lp.shape, generator=g, dtype=torch.float64) for lp in logps]
    return uids, lengths, logps, old, centered


def padded(rows, width):
    return torch.stack([torch.nn.functional.pad(r, (0, width - r.numel())) for r in rows])


def core_loss(uids, lengths, logps, old, centered):
    width = int(lengths.max())
    mask = (torch.arange(width)[None] < lengths[:, None]).to(torch.float64)
    per_seq, _ = varpo.policy_loss(
        "gvpo",
        logprobs=padded(logps, width),
        old_logprobs=padded(old, width),
        advantages=centered,
        mask=mask,
        group_ids=group_ids(uids),
        gvpo_beta=BETA,
    )
    return varpo.aggregate_loss(per_seq, torch.ones_like(per_seq), "token_mean")


def grads(loss, leaves):
    return torch.autograd.grad(loss, leaves, allow_unused=False)


def test_policy_loss_with_verl_signature_has_core_gradient():
    uids, lengths, logps, old, centered = rollout(3)
    width = int(lengths.max())
    mask = (torch.arange(width)[None] < lengths[:, None]).to(torch.float64)
    fn = get_policy_loss_fn("varpo_gvpo")
    with loss_groups(uids, gvpo_beta=BETA, group_size=N_PER_GROUP):
        loss, metrics = fn(
            old_log_prob=padded(old, width),
            log_prob=padded(logps, width),
            advantages=centered.unsqueeze(-1).to(torch.float64) * mask,
            response_mask=mask.bool(),
            loss_agg_mode="token-mean",
            config=actor_config(),
            rollout_is_weights=None,
        )
    want = core_loss(uids, lengths, logps, old, centered)
    torch.testing.assert_close(loss, want)
    for a, b in zip(grads(loss, logps), grads(want, logps)):
        torch.testing.assert_close(a, b)
    assert {"actor/varpo_gvpo/implicit_reward_mean", "actor/varpo_gvpo/gvpo_loss_mean"} <= set(metrics)


def test_policy_loss_fails_loudly_without_groups_or_with_split_groups():
    uids, lengths, logps, old, centered = rollout(2)
    width = int(lengths.max())
    mask = torch.arange(width)[None] < lengths[:, None]
    args = dict(
        old_log_prob=padded(old, width),
        log_prob=padded(logps, width),
        advantages=centered.unsqueeze(-1) * mask,
        response_mask=mask,
        config=actor_config(),
    )
    fn = get_policy_loss_fn("varpo_gvpo")
    with pytest.raises(RuntimeError, match="trainer_mode=varpo"):
        fn(**args)
    half = {k: (v[:6] if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    with loss_groups(uids[:6], gvpo_beta=BETA, group_size=N_PER_GROUP), pytest.raises(ValueError, match="whole"):
        fn(**half)


def micro_batch_source(uids, lengths, logps, old, centered) -> tuple:
    """Per-row dicts as TransferQueue stores them, and a function building the engine's flat log-prob output."""
    rows, prompt_lens = [], [2 + i % 3 for i in range(len(uids))]  # ragged, so TensorDict stores them nested
    for i, uid in enumerate(uids):
        n, prompt_len = int(lengths[i]), prompt_lens[i]
        rows.append(
            {
                "uid": uid,
                "prompts": torch.ones(prompt_len, dtype=torch.long),
                "responses": torch.ones(n, dtype=torch.long),
                "input_ids": torch.ones(prompt_len + n, dtype=torch.long),
                "response_mask": torch.ones(n, dtype=torch.long),
                "old_log_probs": old[i],
                "advantages": torch.full((n,), float(centered[i]), dtype=torch.float64),
                "row": torch.tensor(i),
            }
        )

    def model_output(micro) -> dict:
        # The engine's log-probs cover prompt + response, shifted left by one token (no_padding_2_padding).
        flat = [
            torch.cat([torch.zeros(prompt_lens[r] - 1, dtype=torch.float64), logps[r], torch.zeros(1)])
            for r in micro["row"].tolist()
        ]
        return {"log_probs": torch.cat(flat)}

    return rows, model_output


@pytest.mark.parametrize("dynamic", [False, True])
def test_whole_groups_survive_verl_batching_and_sum_to_the_full_batch_loss(dynamic):
    """Our group-aligned DP order + verl's force_group_size: every micro-batch holds whole groups and the
    per-micro-batch worker losses (verl's real ppo_loss) add up to the core's full-batch GVPO loss."""
    num_groups, dp = 4, 2
    uids, lengths, logps, old, centered = rollout(num_groups, seed=1)
    rows, model_output = micro_batch_source(uids, lengths, logps, old, centered)
    total = len(rows)
    order, _ = group_aligned_order(
        uids, [3 + int(n) for n in lengths], dp_size=dp, group_size=N_PER_GROUP, batch_multiple=math.lcm(dp, total)
    )
    config = actor_config(use_dynamic_bsz=dynamic)
    rank_losses = []
    for rank in range(dp):  # verl dispatches contiguous chunks of the reordered batch to DP ranks
        chunk = tu.list_of_dict_to_tensordict([rows[i] for i in order[rank * total // dp : (rank + 1) * total // dp]])
        tu.assign_non_tensor(chunk, force_group_size=N_PER_GROUP)  # what _update_actor puts in extra_info
        mini_batches = tu.make_iterator(
            chunk, mini_batch_size=total // dp, epochs=1, dataloader_kwargs={"shuffle": False}
        )
        rank_loss = 0.0
        for mini in mini_batches:
            tu.assign_non_tensor(
                mini,
                use_dynamic_bsz=dynamic,
                micro_batch_size_per_gpu=1,
                max_token_len_per_gpu=40,
                dp_size=dp,
                batch_num_tokens=int(lengths.sum()),
                global_batch_size=total,
            )
            micro_batches, _ = prepare_micro_batches(mini)
            assert len(micro_batches) >= 2
            for micro in micro_batches:
                loss, metrics = worker_loss(config, model_output(micro), micro, gvpo_beta=BETA, group_size=N_PER_GROUP)
                rank_loss = rank_loss + loss
        rank_losses.append(rank_loss)
    ddp = sum(rank_losses) / dp  # DDP/FSDP average gradients over ranks
    want = core_loss(uids, lengths, logps, old, centered)
    torch.testing.assert_close(ddp, want)
    for a, b in zip(grads(ddp, logps), grads(want, logps)):
        torch.testing.assert_close(a, b)


def test_stock_row_order_splits_groups_and_is_rejected():
    """Without group alignment (rows in verl's order, micro-batches of 3 rows), GVPO refuses the partial groups."""
    uids, lengths, logps, old, centered = rollout(2, seed=2)
    rows, model_output = micro_batch_source(uids, lengths, logps, old, centered)
    mini = tu.list_of_dict_to_tensordict(rows[:6])
    tu.assign_non_tensor(
        mini,
        use_dynamic_bsz=False,
        micro_batch_size_per_gpu=3,
        dp_size=1,
        batch_num_tokens=int(lengths.sum()),
        global_batch_size=8,
    )
    micro = prepare_micro_batches(mini)[0][0]
    with pytest.raises(ValueError, match="whole groups"):
        worker_loss(actor_config(), model_output(micro), micro, gvpo_beta=BETA, group_size=N_PER_GROUP)


def test_group_aligned_order_refuses_incomplete_groups_and_padding():
    uids = ["a"] * 4 + ["b"] * 3 + ["c"] * 4
    with pytest.raises(ValueError, match="complete"):
        group_aligned_order(uids, [5] * 11, dp_size=1, group_size=4, batch_multiple=1)
    with pytest.raises(ValueError, match="multiple"):
        group_aligned_order(["a"] * 4 + ["b"] * 4, [5] * 8, dp_size=2, group_size=4, batch_multiple=16)
    with pytest.raises(ValueError, match="evenly"):
        group_aligned_order(["a"] * 4 + ["b"] * 4 + ["c"] * 4, [5] * 12, dp_size=2, group_size=4, batch_multiple=2)
    order, parts = group_aligned_order(["b", "a", "b", "a"], [1, 9, 1, 9], dp_size=2, group_size=2, batch_multiple=2)
    assert sorted(map(sorted, parts)) == [[0, 2], [1, 3]] and sorted(order) == [0, 1, 2, 3]
