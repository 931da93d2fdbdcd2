"""Shared test data for the verl plug-in: a verl DataProto built the way verl's trainers build it.

Groups (uid -> size): a:5, b:3, c:2, d:4 — unequal sizes, all >= 2 (verl gives singletons mean 0 / std 1, varpo
gives them 0; see docs/verl.md), rows in shuffled order. Three components per sample: ``acc`` and ``fmt`` in
{0, 1}, ``len`` in [0, 1]; group ``d`` is constant in every component (a zero-signal group).
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf

KEYS = ("acc", "fmt", "len")
GROUPS = {"a": 5, "b": 3, "c": 2, "d": 4}


def make_rows(seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Shuffled uids ``[N]`` and components ``[N, 3]``."""
    rng = np.random.default_rng(seed)
    uids, rewards = [], []
    for uid, size in GROUPS.items():
        for _ in range(size):
            uids.append(uid)
            if uid == "d":
                rewards.append([1.0, 1.0, 0.5])
            else:
                rewards.append([float(rng.integers(0, 2)), float(rng.integers(0, 2)), float(rng.random())])
    perm = rng.permutation(len(uids))
    return [uids[i] for i in perm], np.asarray(rewards)[perm]


def make_batch(
    seed: int = 0, *, equal_lengths: bool = False, resp_len: int = 8, prompt_len: int = 3, pad_rows: int = 0
):
    """A DataProto like the legacy trainer's at advantage time: uid + components in non_tensor_batch.

    ``pad_rows`` appends V1-style synthetic padding rows (own uid, empty response_mask, copied components).
    Returns ``(data, uids, rewards, lengths)``.
    """
    from verl import DataProto

    uids, rewards = make_rows(seed)
    rng = np.random.default_rng(seed + 1)
    n = len(uids)
    lengths = np.full(n, resp_len) if equal_lengths else rng.integers(1, resp_len + 1, size=n)
    if pad_rows:
        uids = uids + ["pad"] * pad_rows
        rewards = np.concatenate([rewards, np.repeat(rewards[:1], pad_rows, axis=0)])
        lengths = np.concatenate([lengths, np.zeros(pad_rows, dtype=lengths.dtype)])
        n += pad_rows
    response_mask = (torch.arange(resp_len)[None, :] < torch.as_tensor(lengths)[:, None]).to(torch.float32)
    token_level = torch.zeros(n, resp_len)
    for i in range(n):
        if lengths[i] > 0:
            token_level[i, lengths[i] - 1] = float(rewards[i].sum())
    prompts = torch.ones(n, prompt_len, dtype=torch.long)
    attention_mask = torch.cat([torch.ones(n, prompt_len), response_mask], dim=1).long()
    non_tensor = {"uid": np.asarray(uids, dtype=object)}
    non_tensor.update({k: rewards[:, j].copy() for j, k in enumerate(KEYS)})
    data = DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": torch.ones(n, resp_len, dtype=torch.long),
            "attention_mask": attention_mask,
            "response_mask": response_mask,
            "token_level_rewards": token_level,
        },
        non_tensors=non_tensor,
    )
    return data, uids, rewards, torch.as_tensor(lengths)


def algo_config(**varpo_options) -> OmegaConf:
    """``config.algorithm`` as verl passes it to estimators (a DictConfig), with an ``algorithm.varpo`` block."""
    cfg = {"adv_estimator": "grpo", "norm_adv_by_std_in_grpo": True, "gamma": 1.0, "lam": 1.0}
    if varpo_options:
        cfg["varpo"] = varpo_options
    return OmegaConf.create(cfg)


def group_ids(uids: list[str]) -> torch.Tensor:
    """Integer ids by first appearance (independent of the plug-in's own uid mapping)."""
    first: dict[str, int] = {}
    return torch.tensor([first.setdefault(u, len(first)) for u in uids])


def compose(overrides: list[str], config_name: str = "ppo_trainer"):
    """verl's trainer config composed exactly as ``main_ppo`` would (no Ray, no GPUs)."""
    from varpo.verl.train import compose_config

    return compose_config(overrides, config_name=config_name)
