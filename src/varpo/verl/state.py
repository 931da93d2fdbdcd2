"""Training state a verl trainer owns for varpo: the step, the run length and dvao's running σ, checkpointed.

Why: verl calls a registered estimator with the batch and ``config.algorithm`` only; the training step and any
state that must persist across steps (``varpo.SigmaEMA``) belong to the trainer. Both trainers go through the
functions here — the V1 modes from their overrides, the legacy ``RayPPOTrainer`` through the wrapped methods of
:mod:`varpo.verl.legacy` — so the two cannot drift:

* :func:`advantage_context` opens :func:`varpo.verl.context.advantage_inputs` with the step in varpo's convention
  (optimizer steps completed, :func:`varpo.schedules.step_of_verl`), ``total_training_steps`` and this trainer's
  :class:`VarpoState`;
* :func:`save` / :func:`load` write and read ``varpo_state.json`` in verl's ``global_step_<n>`` checkpoint folder,
  so a resumed run continues dvao's running σ̄ where it stopped (TRL does the same with its checkpoints).

State lives on the trainer object (attribute ``varpo_state``), not in a module: two trainers in one process keep
separate state, and nothing outlives the trainer.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from varpo.schedules import step_of_verl
from varpo.step import StepState
from varpo.verl.context import AdvantageInputs, advantage_inputs

logger = logging.getLogger("varpo.verl")

ATTR = "varpo_state"
FILENAME = "varpo_state.json"


class VarpoState(StepState):
    """Per-trainer state: the engine contract's :class:`varpo.step.StepState` (one ``SigmaEMA`` per
    ``(decay, shrink)``), read from :data:`FILENAME` by default in messages."""

    def load_state_dict(self, state: Mapping[str, Any], source: str = FILENAME) -> None:
        super().load_state_dict(state, source)


def of(trainer: Any) -> VarpoState:
    """The trainer's :class:`VarpoState`, created on first use."""
    state = trainer.__dict__.get(ATTR)
    if state is None:
        state = trainer.__dict__[ATTR] = VarpoState()
    return state


@contextmanager
def advantage_context(trainer: Any, columns: Mapping[str, Any]) -> Iterator[AdvantageInputs]:
    """Expose ``columns``, the step, the run length and the trainer's state to varpo estimators in the block."""
    steps = getattr(trainer, "global_steps", None)
    total = getattr(trainer, "total_training_steps", None)
    with advantage_inputs(
        columns,
        step=None if steps is None else step_of_verl(steps),
        total_steps=None if total is None else int(total),
        state=of(trainer),
    ) as inputs:
        yield inputs


def _folder(trainer: Any) -> str:
    root = trainer.config.trainer.default_local_dir
    if not os.path.isabs(root):
        root = os.path.join(os.getcwd(), root)
    return os.path.join(root, f"global_step_{trainer.global_steps}")


def resumed_folder(trainer: Any) -> str | None:
    """The checkpoint folder verl just resumed from (after its ``_load_checkpoint``), or ``None``."""
    if not getattr(trainer, "global_steps", 0):
        return None
    cfg = trainer.config.trainer
    if cfg.resume_mode == "resume_path" and cfg.get("resume_from_path"):
        path = str(cfg.resume_from_path)
        return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    return _folder(trainer)


def save(trainer: Any) -> str | None:
    """Write the trainer's state next to the checkpoint verl just saved; returns the path (None if no state)."""
    state = trainer.__dict__.get(ATTR)
    if state is None or not state.sigma_ema:
        return None
    folder = _folder(trainer)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, FILENAME)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(state.state_dict(), f)
    os.replace(tmp, path)  # a crash mid-write leaves the previous file or none, never half of one
    return path


def load(trainer: Any) -> str | None:
    """Restore the state saved with the checkpoint verl resumed from; returns the path read (None if none)."""
    folder = resumed_folder(trainer)
    if folder is None:
        return None
    path = os.path.join(folder, FILENAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read varpo's checkpointed state ({exc})") from None
    of(trainer).load_state_dict(raw, source=path)
    logger.info("varpo: restored estimator state from %s", path)
    return path
