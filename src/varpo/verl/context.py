"""Per-call side channels from verl's trainers to our registered functions.

verl calls a registered advantage estimator with only ``token_level_rewards``, ``response_mask``, ``index`` (uid)
and ``config``, and a registered policy loss with only log-probs, advantages and the mask. Reward components and
group ids are not in those signatures, so the code that *does* see them (our V1 trainer mode, the legacy
``compute_advantage`` wrapper, our worker loss) opens a context for the duration of that one call and the
registered function reads it. ``contextvars`` keeps this per-thread/per-task and strictly scoped: nothing survives
the call, and a registered function that finds no context fails with a message saying which mode provides it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class AdvantageInputs:
    """Row-aligned per-sample columns for one ``compute_advantage`` call, plus what the estimator reports back.

    ``columns`` maps a name (``"uid"``, reward component keys) to ``N`` values in the row order of the batch
    being scored; ``stats`` receives :attr:`varpo.AdvantageOutput.stats` for logging.
    """

    columns: Mapping[str, Any]
    stats: dict[str, float] = field(default_factory=dict)
    #: optimizer steps completed before this batch (0 for the first; :func:`varpo.schedules.step_of_verl`), for
    #: ``reward_weight_schedule`` and ``rvpo_k_end``; ``None`` when the calling trainer is unknown.
    step: int | None = None
    #: the run's number of training steps (verl's ``total_training_steps``), for ``rvpo_k_end``.
    total_steps: int | None = None
    #: training state the trainer owns and checkpoints (:mod:`varpo.verl.state`), e.g. dvao's running σ.
    state: Any = None


@dataclass(frozen=True)
class LossGroups:
    """Group ids of the rows of one policy-loss call (one micro-batch) and GVPO's settings."""

    group_ids: Sequence[Any]
    gvpo_beta: float
    group_size: int | None = None


_ADVANTAGE: ContextVar[AdvantageInputs | None] = ContextVar("varpo_verl_advantage_inputs", default=None)
_LOSS: ContextVar[LossGroups | None] = ContextVar("varpo_verl_loss_groups", default=None)


@contextmanager
def advantage_inputs(
    columns: Mapping[str, Any], step: int | None = None, total_steps: int | None = None, state: Any = None
) -> Iterator[AdvantageInputs]:
    """Expose ``columns`` to varpo estimators called inside the block.

    An already active context wins: our V1 trainer mode opens one with the components it fetched from
    TransferQueue, and the legacy wrapper it then passes through (verl's V1 code calls the same
    ``compute_advantage``) must not replace it with the V1 ``non_tensor_batch``, which holds only ``uid``.
    """
    outer = _ADVANTAGE.get()
    if outer is not None:
        yield outer
        return
    inputs = AdvantageInputs(columns, step=step, total_steps=total_steps, state=state)
    token = _ADVANTAGE.set(inputs)
    try:
        yield inputs
    finally:
        _ADVANTAGE.reset(token)


def current_advantage_inputs() -> AdvantageInputs | None:
    return _ADVANTAGE.get()


@contextmanager
def loss_groups(group_ids: Sequence[Any], *, gvpo_beta: float, group_size: int | None = None) -> Iterator[LossGroups]:
    """Expose the micro-batch's group ids (uids, in row order) to ``varpo_gvpo`` called inside the block."""
    groups = LossGroups(list(group_ids), float(gvpo_beta), group_size)
    token = _LOSS.set(groups)
    try:
        yield groups
    finally:
        _LOSS.reset(token)


def current_loss_groups() -> LossGroups | None:
    return _LOSS.get()


def as_list(values: Any) -> list[Any]:
    """Per-sample values as a plain list, whatever container verl/TransferQueue hands over.

    Handles numpy arrays, tensordict ``NonTensorStack``/``LinkedList``, lists and tuples; unwraps per-element
    ``NonTensorData`` (what TransferQueue returns for a single non-tensor value).
    """
    from tensordict import NonTensorData

    if isinstance(values, NonTensorData):
        values = values.data
    out = values.tolist() if hasattr(values, "tolist") and not isinstance(values, list | tuple) else list(values)
    return [v.data if isinstance(v, NonTensorData) else v for v in out]


def group_index(uids: Sequence[Any]) -> np.ndarray:
    """Dense int64 group ids ``[N]`` from uids: equal uid <=> equal id, whatever the row order."""
    keys = np.asarray([str(u) for u in uids], dtype=object)
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(keys.astype(str), return_inverse=True)
    return inverse.astype(np.int64).reshape(-1)
