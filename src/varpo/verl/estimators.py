"""The ``varpo_*`` advantage estimators: verl's estimator signature in, :func:`varpo.compute_advantages` out.

Each registered function only translates data: it builds the ``[N, K]`` reward matrix (components from the
active :mod:`varpo.verl.context`, or ``token_level_rewards.sum(-1)`` when no ``reward_keys`` are configured), maps
uids to group ids (grouping by uid value, never by position: verl reorders rows in ``_balance_batch``), calls the
core, optionally applies VL Norm's length weights (:func:`varpo.vl_norm_weights`) and broadcasts the sequence
advantage over ``response_mask``. No formula lives here.

Rows with an empty ``response_mask`` (the V1 trainer's synthetic padding samples) are marked unscorable (all
components NaN): they get advantage 0 and stay out of every batch statistic (GDPO/RVPO whitening, SAW's CV,
VL Norm's mean).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

import varpo
from varpo.verl.context import as_list, current_advantage_inputs, group_index
from varpo.verl.settings import METHOD_OF_ESTIMATOR, VarpoSettings, needs_step

# dvao's running σ̄ is training state owned (and checkpointed) by the trainer: varpo.verl.state. A call from code
# that opens no varpo context (a recipe calling verl's compute_advantage itself) gets a fresh EMA per call, i.e.
# plain per-batch σ — never state hidden in this module.

_NO_COMPONENTS = (
    "varpo_{method}: algorithm.varpo.reward_keys={keys} but no reward components reached the estimator. With "
    "verl's V1 trainer set trainer.v1.trainer_mode=varpo; with the legacy trainer (trainer.use_v1=false) the "
    "varpo plug-in must be loaded (check for a 'varpo verl plug-in failed to load' error at startup)."
)


def _component(columns: Mapping[str, Any], key: str, n: int) -> np.ndarray:
    if key not in columns:
        available = sorted(k for k in columns if k != "uid")
        raise KeyError(
            f"reward component {key!r} (algorithm.varpo.reward_keys) not found in the reward function's output; "
            f"available keys: {available}"
        )
    values = as_list(columns[key])
    if len(values) != n:
        raise ValueError(f"reward component {key!r} has {len(values)} values for {n} rows")
    out = np.empty(n, dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = np.nan if v is None else float(v)
        except (TypeError, ValueError):
            raise TypeError(f"reward component {key!r} row {i}: {v!r} is not a number") from None
    return out


def reward_matrix(
    settings: VarpoSettings, method: str, token_level_rewards: torch.Tensor, index: np.ndarray, extra: Any = None
) -> torch.Tensor:
    """``[N, K]`` float64 rewards: configured components (NaN = missing) or the summed token-level reward."""
    n = token_level_rewards.shape[0]
    if not settings.reward_keys:
        return token_level_rewards.detach().to("cpu", torch.float64).sum(-1, keepdim=True)
    inputs = current_advantage_inputs()
    columns = inputs.columns if inputs is not None and inputs.columns else extra
    if not columns or not any(k in columns for k in settings.reward_keys):
        raise RuntimeError(_NO_COMPONENTS.format(method=method, keys=list(settings.reward_keys)))
    if "uid" in columns:
        uids = [str(u) for u in as_list(columns["uid"])]
        if uids != [str(u) for u in index]:
            raise RuntimeError(
                "varpo: reward components are not row-aligned with the batch being scored (uid order differs); "
                "a verl change reordered rows between the component source and compute_advantage"
            )
    return torch.from_numpy(np.stack([_component(columns, k, n) for k in settings.reward_keys], axis=1))


def compute(
    method: str,
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl advantage-estimator contract: returns ``(advantages, returns)``, both ``[N, T]`` (the same tensor)."""
    if index is None:
        raise ValueError(f"varpo_{method} groups samples by uid; verl passed no index (non_tensor_batch['uid'])")
    settings = VarpoSettings.from_algorithm(config)
    index = np.asarray(as_list(index), dtype=object)
    rewards = reward_matrix(settings, method, token_level_rewards, index, kwargs.get("non_tensor_batch"))
    lengths = response_mask.detach().to("cpu").sum(-1).to(torch.float64)
    rewards[lengths <= 0] = float("nan")  # synthetic padding rows: unscorable, out of all statistics
    inputs = current_advantage_inputs()
    step, total = (None, None) if inputs is None else (inputs.step, inputs.total_steps)
    # the engine contract: options, anneals and weights at the step, the trainer's running σ, metric names
    advantage_step = settings.advantage_step(method, None if inputs is None else inputs.state)
    ids = torch.from_numpy(group_index(index))
    with needs_step():
        # Diagnostics only when varpo's trainer is there to log them (stock verl discards them).
        result = advantage_step.compute(rewards, ids, step=step, total_steps=total, stats=inputs is not None)
    adv = result.advantages.to(torch.float64)
    if settings.vl_norm_alpha is not None:
        adv = adv * varpo.vl_norm_weights(lengths, settings.vl_norm_alpha)
    if inputs is not None:
        # absent components are not logged (never as 0); reward_weight/<key> and annealed options (rvpo_k)
        inputs.stats.update(result.metrics)
    scores = adv.to(token_level_rewards.device, token_level_rewards.dtype).unsqueeze(-1)
    scores = scores * response_mask.to(scores.dtype)
    return scores, scores


def make_estimator(method: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """A distinct, named function per method (verl's registry requires one function object per name)."""

    def estimator(token_level_rewards, response_mask, index=None, config=None, **kwargs):
        return compute(method, token_level_rewards, response_mask, index=index, config=config, **kwargs)

    estimator.__name__ = estimator.__qualname__ = f"varpo_{method}"
    estimator.__doc__ = f"verl advantage estimator for varpo.compute_advantages(method={method!r})."
    return estimator


class _Estimators(Mapping):
    """Live ``varpo_<method> -> adapter`` over the core registry; one cached function object per name (verl's
    registry accepts re-registering the same object, not a new one)."""

    def __init__(self) -> None:
        self._made: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {}

    def __getitem__(self, name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        method = METHOD_OF_ESTIMATOR[name]
        if name not in self._made:
            self._made[name] = make_estimator(method)
        return self._made[name]

    def __iter__(self):
        return iter(METHOD_OF_ESTIMATOR)

    def __len__(self) -> int:
        return len(METHOD_OF_ESTIMATOR)


#: registered name -> function, one per varpo method (built-in, registered or from a plug-in).
ESTIMATORS: Mapping[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = _Estimators()
