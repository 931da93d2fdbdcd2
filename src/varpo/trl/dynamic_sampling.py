"""Dynamic sampling for :class:`~varpo.trl.VarpoGRPOTrainer`, DAPO-style (Yu et al. 2025, §3.2 "Dynamic Sampling").

DAPO over-samples and filters out prompts whose G completions all get the same accuracy: their group-relative
advantage is 0, so they add no policy gradient but still dilute the batch. With several reward components the
"same reward" test is the trap noted in SkyRL#2104's GDPO review: a group whose *summed* reward is constant can still
carry signal in one component for a per-objective estimator (gdpo, dvao, ac, rvpo, saw). Here the test is what the
configured estimator does with the round's whole batch (:func:`group_signal`): a group is kept iff some component
with weight > 0 varies in it and either its weighted reward sum varies (DAPO's std > 0, however small) or the
estimator, run on the whole round with the configured method, weights and options (without the dvao running σ,
which filtering must not move), gives the group some ``|A| > ZERO_ATOL``. Batch-level, not per group alone, because
saw (CV weights over the batch) and rvpo (batch-whitened soft-min) couple the groups: run alone, a trade-off group
got 0 and was dropped although the batch gives it ±0.87 (saw) or -0.22 (rvpo). So ``grpo`` drops a group whose
weighted sum is constant, ``gdpo``/``saw``/``rvpo`` keep it when the batch gives it an advantage, and a component
with weight 0 never keeps a group.

Loop (train mode only; evaluation never filters): generate the generation batch TRL's sampler gave; while fewer than
``P = generation_batch_size / G`` signal-carrying groups are collected and fewer than ``dynamic_sampling_max_rounds``
extra rounds were run, generate ``P`` more prompts; keep the first ``P`` kept groups (DAPO's ``batch[:train_bsz]``).
If the cap is hit with ``k < P`` kept groups, ``dynamic_sampling_on_cap`` decides:

* ``train_on_kept``: train on the ``k`` kept groups only. Advantages and the loss normalizers
  (:func:`varpo.loss_scale`) are those of the kept batch, so the step equals a step on a batch built by hand from
  the kept groups. The kept groups are split over ``steps_per_generation`` micro-batches as whole groups (sizes may
  differ by one group; the normalizers are global constants, so gradient accumulation stays exact). When
  ``k < steps_per_generation`` a micro-batch would be empty: it is given a copy of a generated group with
  ``varpo_sample_weight = 0``, which multiplies its loss rows, so it contributes exactly 0 to loss and gradient.
  With ``k = 0`` the policy gradient of the step is 0 (the optimizer still steps, as in GRPO on an all-zero batch).
* ``pad_with_filtered``: fill the batch up to ``P`` groups with filtered groups (most recent first). Batch shape is
  constant; the padding groups have zero advantage under the estimator alone but, like in plain GRPO, count in the
  loss normalizers (and in batch-level statistics such as gdpo's whitening).

Extra prompts are drawn from ``train_dataset`` without replacement by a generator seeded with
``(seed, global_step, round)``: no sampler state, so a resumed run draws the same refill prompts at the same step.
Single process only (DDP ranks would keep different numbers of groups); map-style datasets only; no multimodal
inputs. Metrics (train): ``dynamic_sampling/`` ``extra_rounds``, ``groups_generated``, ``groups_filtered``,
``groups_kept``, ``groups_padded``, ``frac_filtered``, ``filtered_zero_std/<name>`` (filtered groups in which
component ``name`` had zero within-group std), ``frac_zero_std/<name>`` (same over all generated groups),
``generated_tokens`` and ``generated_tokens_per_kept_sample`` (completion tokens of every round / kept samples;
left out when nothing is kept). TRL's per-round metrics (``completions/*``, reward errors) keep the values of the
rounds that contributed groups to the trained batch only (:func:`keep_round_metrics`). A step with no kept group
logs a warning (it trains on nothing, or only on padding).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

# the keep rule lives in the core (shared with verl's replay buffer); re-exported here for existing callers
from varpo.group_filter import ZERO_ATOL, GroupSignal, group_signal, zero_std_components  # noqa: F401

ON_CAP = ("train_on_kept", "pad_with_filtered")
WEIGHT_KEY = "varpo_sample_weight"
_LEFT_PADDED = ("prompt_ids", "prompt_mask")
logger = logging.getLogger(__name__)
_MULTIMODAL = ("pixel_values", "image_grid_thw", "pixel_attention_mask", "image_sizes", "num_images", "num_tiles")


def refill_indices(dataset_size: int, n_prompts: int, seed: int, step: int, round_: int) -> list[int]:
    """``n_prompts`` dataset indices for extra round ``round_`` at optimizer step ``step``, a pure function of its
    arguments (so resuming from a checkpoint reproduces them). Without replacement when the dataset is big enough."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + step * 10_007 + round_) % (2**63 - 1))
    if n_prompts <= dataset_size:
        return torch.randperm(dataset_size, generator=gen)[:n_prompts].tolist()
    return torch.randint(dataset_size, (n_prompts,), generator=gen).tolist()


def concat_batches(batches: Sequence[dict], pad_token_id: int) -> dict:
    """Concatenate TRL generation outputs along samples, re-padding to the longest prompt (left) / completion
    (right). 0-dim tensors (``num_items_in_batch``) are dropped; the caller recomputes them."""
    out = {}
    for key in batches[0]:
        values = [b[key] for b in batches]
        first = values[0]
        if first is None:
            out[key] = None
        elif isinstance(first, list):
            out[key] = [x for v in values for x in v]
        elif first.ndim == 0:
            continue
        elif first.ndim == 1:
            out[key] = torch.cat(values)
        else:
            width = max(v.shape[1] for v in values)
            value = pad_token_id if key in ("prompt_ids", "completion_ids") else 1 if key == "tool_mask" else 0
            left = key in _LEFT_PADDED
            padded = []
            for v in values:
                extra = v.new_full((v.shape[0], width - v.shape[1], *v.shape[2:]), value)
                padded.append(torch.cat([extra, v] if left else [v, extra], dim=1))
            out[key] = torch.cat(padded)
    return out


def select_rows(batch: dict, rows: Tensor) -> dict:
    """Rows ``rows`` (long ``[M]``) of every per-sample entry; 0-dim tensors and None pass through."""
    out = {}
    for key, v in batch.items():
        if v is None or (isinstance(v, Tensor) and v.ndim == 0):
            out[key] = v
        elif isinstance(v, Tensor):
            out[key] = v[rows.to(v.device)]
        else:
            out[key] = [v[i] for i in rows.tolist()]
    return out


@dataclass
class Round:
    batch: dict  # TRL's output for this round (local = global, single process)
    rewards: Tensor  # [N, K]
    signal: GroupSignal


def fill_batch(
    generate: Callable[[list], tuple[dict, Tensor]],
    first_inputs: list,
    refill: Callable[[int], list],
    signal: Callable[[Tensor], GroupSignal],
    *,
    group_size: int,
    max_rounds: int,
    on_cap: str,
) -> tuple[list[Round], list[tuple[int, int]], list[tuple[int, int]], int]:
    """Run the generate → filter → refill loop.

    ``generate(rows) -> (batch, rewards [N, K])``, ``refill(round) -> rows``, ``signal(rewards) -> GroupSignal``.
    Returns ``(rounds, kept, padded, extra_rounds)`` where ``kept`` / ``padded`` are ``(round, group)`` pairs in
    batch order: ``kept`` the first ``P`` signal-carrying groups, ``padded`` the filtered groups added by
    ``pad_with_filtered``.
    """
    target = len(first_inputs) // group_size
    rounds: list[Round] = []
    kept: list[tuple[int, int]] = []
    extra = 0
    inputs = first_inputs
    while True:
        batch, rewards = generate(inputs)
        sig = signal(rewards)
        r = len(rounds)
        rounds.append(Round(batch, rewards, sig))
        kept += [(r, g) for g in sig.keep.nonzero().flatten().tolist()]
        if len(kept) >= target or extra >= max_rounds:
            break
        extra += 1
        inputs = refill(extra)
    kept = kept[:target]
    padded: list[tuple[int, int]] = []
    if len(kept) < target and on_cap == "pad_with_filtered":
        filtered = [(r, g) for r in range(len(rounds)) for g in (~rounds[r].signal.keep).nonzero().flatten().tolist()]
        padded = filtered[::-1][: target - len(kept)]
    return rounds, kept, padded, extra


def assemble(
    rounds: list[Round], groups: list[tuple[int, int]], group_size: int, pad_token_id: int
) -> tuple[dict, Tensor]:
    """The batch made of ``groups`` (``(round, group)`` pairs), ordered by round then as listed, and its rewards
    ``[len(groups)·G, K]`` row-aligned with it (group ``j`` of the result is rows ``j·G .. j·G+G-1``)."""
    parts, rewards = [], []
    offsets = torch.arange(group_size)
    for r, round_ in enumerate(rounds):
        mine = [g for rr, g in groups if rr == r]
        if mine:
            rows = (torch.tensor(mine).unsqueeze(1) * group_size + offsets).flatten()
            parts.append(select_rows(round_.batch, rows))
            rewards.append(round_.rewards[rows.to(round_.rewards.device)])
    return concat_batches(parts, pad_token_id), torch.cat(rewards)


def split_by_groups(
    batch: dict, group_ids: Tensor, num_chunks: int, generator: torch.Generator | None = None
) -> list[dict]:
    """Shuffle whole groups, then cut into ``num_chunks`` micro-batches of whole groups as evenly as possible.

    Chunks may differ by one group (the loss normalizers are global constants, so this is exact). When there are
    fewer groups than chunks, every empty chunk gets a copy of the first group with ``varpo_sample_weight = 0``.
    """
    ids = group_ids.cpu()
    _, counts = torch.unique_consecutive(ids, return_counts=True)
    starts = (torch.cumsum(counts, 0) - counts).tolist()
    counts = counts.tolist()
    order = torch.randperm(len(counts), generator=generator).tolist()
    n = len(order)
    chunks = []
    for c in range(num_chunks):
        mine = order[c * n // num_chunks : (c + 1) * n // num_chunks]
        if mine:
            rows = torch.cat([torch.arange(starts[g], starts[g] + counts[g]) for g in mine])
            chunks.append(select_rows(batch, rows))
        else:
            ballast = select_rows(batch, torch.arange(starts[0], starts[0] + counts[0]))
            ballast[WEIGHT_KEY] = torch.zeros_like(ballast[WEIGHT_KEY])
            chunks.append(ballast)
    return chunks


# ----------------------------------------------------------------------------------------------------------------
# One generation batch (VarpoGRPOTrainer._dynamic_sampling_batch calls generate, _prepare_inputs split)
# ----------------------------------------------------------------------------------------------------------------


def check_setup(num_processes: int, dataset) -> None:
    """One-line errors for setups dynamic sampling does not support."""
    if num_processes > 1:
        raise ValueError(
            f"dynamic_sampling=True needs a single process (got {num_processes}): ranks would keep different "
            "numbers of groups"
        )
    if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__getitem__"):
        raise ValueError("dynamic_sampling=True needs a map-style train_dataset (refill prompts are drawn by index)")


def generate(
    run: Callable[[list], tuple[dict, Tensor]],
    signal: Callable[[Tensor], GroupSignal],
    inputs: list,
    dataset,
    *,
    apply: Callable[[dict, Tensor], dict],
    loss_mask: Callable[[dict], Tensor],
    metrics: dict,
    names: list[str],
    group_size: int,
    seed: int,
    step: int,
    max_rounds: int,
    on_cap: str,
    pad_token_id: int,
    method: str,
) -> dict:
    """The training generation batch with dynamic sampling.

    ``run(rows) -> (TRL's batch, global rewards [N, K])`` generates and scores one round; ``signal(rewards)`` is
    the keep rule (the trainer's advantage step at this step); ``apply(batch, rewards)`` puts varpo advantages and
    loss normalizers of the kept batch in it; ``loss_mask(batch)`` is the loss mask ``[B, T]``; ``metrics`` is the
    trainer's train-metrics table (``key -> list``), which receives the ``dynamic_sampling/*`` values and keeps TRL's
    per-round values of the rounds that contributed (:func:`keep_round_metrics`). Refill prompts come from
    ``dataset`` (:func:`refill_indices` with ``seed`` and ``step``). The batch carries ``varpo_sample_weight`` (1 per
    real sample, 0 on padding)."""

    def checked(rows: list) -> tuple[dict, Tensor]:
        batch, rewards = run(rows)
        _multimodal_check(batch)
        return batch, rewards

    def refill(round_: int) -> list:
        idx = refill_indices(len(dataset), len(inputs) // group_size, seed, step, round_)
        return [dataset[i] for i in idx for _ in range(group_size)]

    before = {key: len(values) for key, values in metrics.items()}
    rounds, kept, padded, extra = fill_batch(
        checked, inputs, refill, signal, group_size=group_size, max_rounds=max_rounds, on_cap=on_cap
    )
    groups = kept + padded
    keep_round_metrics(metrics, before, len(rounds), sorted({r for r, _ in groups}))
    if not kept:
        logger.warning(
            "dynamic sampling: step %d trains on nothing: none of the %d groups generated in %d round(s) carried "
            "signal under %s (%s); raise dynamic_sampling_max_rounds or check the rewards",
            step,
            sum(r.signal.keep.numel() for r in rounds),
            len(rounds),
            method,
            "padded with filtered groups" if padded else "zero policy gradient",
        )
    if groups:
        batch, rewards = assemble(rounds, groups, group_size, pad_token_id)
        batch = apply(batch, rewards)
        batch[WEIGHT_KEY] = torch.ones(rewards.shape[0], device=batch["advantages"].device)
    else:  # train_on_kept with nothing kept: one zero-weight group so every micro-batch has rows; gradient is 0
        batch, rewards = assemble(rounds, [(len(rounds) - 1, 0)], group_size, pad_token_id)
        batch["advantages"] = torch.zeros(rewards.shape[0], device=batch["completion_mask"].device)
        batch["varpo_group_ids"] = torch.zeros(rewards.shape[0], dtype=torch.long, device=batch["advantages"].device)
        for key in ("varpo_num_tokens", "varpo_num_seqs", "varpo_len_pow_sum"):
            batch[key] = torch.tensor(1.0, dtype=torch.float64)
        batch[WEIGHT_KEY] = torch.zeros(rewards.shape[0], device=batch["advantages"].device)
    mask = loss_mask(batch) * batch[WEIGHT_KEY].unsqueeze(1)
    batch["num_items_in_batch"] = mask.sum()
    _log(metrics, rounds, kept, padded, extra, names, group_size, loss_mask)
    return batch


def split(batch: dict, num_chunks: int, *, generation_batch_size: int, per_sequence: bool) -> list[dict]:
    """Micro-batches for ``num_chunks`` (``steps_per_generation``) optimizer sub-steps: TRL's per-sample shuffle and
    even split when the batch is full and the loss is per-token; whole groups otherwise (a per-sequence loss such
    as gvpo, or a short ``train_on_kept`` batch)."""
    from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

    full = batch[WEIGHT_KEY].shape[0] == generation_batch_size and bool(batch[WEIGHT_KEY].all())
    if full and not per_sequence:
        return split_tensor_dict(shuffle_sequence_dict(batch), num_chunks)
    return split_by_groups(batch, batch["varpo_group_ids"], num_chunks)


def keep_round_metrics(metrics: dict, before: dict, n_rounds: int, used_rounds: list[int]) -> None:
    """Make TRL's per-round metrics describe the trained batch: every key that got one value per generation round
    (``reward``, ``rewards/*``, ``frac_reward_zero_std``, ``completions/*``, ``reward/<name>/errors``) keeps only
    the values of the rounds that contributed groups to the batch; a key left without any value is removed (not
    logged as null). Keys set another way (``num_tokens``) are untouched."""
    for key in list(metrics):
        values = metrics[key]
        start = before.get(key, 0)
        if len(values) - start != n_rounds:
            continue
        values[start:] = [values[start + r] for r in used_rounds]
        if not values:
            del metrics[key]


def _multimodal_check(batch: dict) -> None:
    present = [k for k in _MULTIMODAL if batch.get(k) is not None]
    if present:
        raise ValueError(f"dynamic_sampling=True does not support multimodal inputs (batch has {', '.join(present)})")


def _log(
    metrics: dict, rounds: list[Round], kept, padded, extra: int, names: list[str], group_size: int, loss_mask
) -> None:
    keep = torch.cat([r.signal.keep for r in rounds])  # [P_total]
    zero_std = torch.cat([r.signal.zero_std for r in rounds]).to(torch.float64)  # [P_total, K]
    filtered = ~keep
    generated = sum(float(loss_mask(r.batch).sum()) for r in rounds)
    kept_samples = len(kept) * group_size
    metrics["dynamic_sampling/extra_rounds"].append(float(extra))
    metrics["dynamic_sampling/groups_generated"].append(float(keep.numel()))
    metrics["dynamic_sampling/groups_filtered"].append(float(filtered.sum()))
    metrics["dynamic_sampling/groups_kept"].append(float(len(kept)))
    metrics["dynamic_sampling/groups_padded"].append(float(len(padded)))
    metrics["dynamic_sampling/frac_filtered"].append(float(filtered.double().mean()))
    metrics["dynamic_sampling/generated_tokens"].append(generated)
    if kept_samples:  # no kept sample: no value, left out of the record (not a null)
        metrics["dynamic_sampling/generated_tokens_per_kept_sample"].append(generated / kept_samples)
    per_filtered = zero_std[filtered].sum(0).tolist()
    per_all = zero_std.mean(0).tolist()
    for name, count, frac in zip(names, per_filtered, per_all, strict=True):
        metrics[f"dynamic_sampling/filtered_zero_std/{name}"].append(count)
        metrics[f"dynamic_sampling/frac_zero_std/{name}"].append(frac)
