"""The GVPO off-policy options of :class:`~varpo.trl.VarpoGRPOConfig`: their validation and the dry-run line.

One source for every check of these options: :func:`validate_config` (the config's ``__post_init__``),
:func:`check_external_column` (the training data: called by the trainer when it builds
:class:`varpo.trl.replay.OffPolicyGroups` and by ``varpo train --dry-run`` through :func:`describe`, so the dry run
refuses exactly what the run would).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from varpo.checks import is_int

SELECTIONS = ("most_recent", "uniform", "reward_stratified")


def check_external_column(column: str | None, columns: Sequence[str] | None) -> None:
    """One-line ``ValueError`` when ``gvpo_external_column`` is set and not a column of the training data (``columns``
    None: unknown, e.g. a streaming dataset; not checked)."""
    if column is not None and columns is not None and column not in columns:
        raise ValueError(
            f"gvpo_external_column={column!r} is not a column of the training data (columns: {', '.join(columns)})"
        )


def describe(cfg, columns: Sequence[str] | None = None, num_prompts: int | None = None) -> str:
    """One line for ``varpo train --dry-run``; refuses an external column that the training data lacks, and says
    when history can never be used (a prompt recurs only every ⌈prompts / prompts-per-generation⌉ generations)."""
    ext = cfg.gvpo_external_column
    check_external_column(ext, columns)
    h, g = cfg.gvpo_history_per_group, cfg.num_generations
    parts = [f"{g - h - (ext is not None)}+ fresh"]
    if h:
        stale = "no limit" if cfg.gvpo_max_staleness is None else f"<= {cfg.gvpo_max_staleness} steps"
        reuse = "re-scored" if cfg.gvpo_rescore_history else "rewards reused"
        parts.append(f"up to {h} historical ({cfg.gvpo_history_selection}, age {stale}, {reuse})")
    if ext is not None:
        parts.append(f"1 external from column {ext!r}")
    caps = f"buffer {cfg.gvpo_buffer_per_prompt}/prompt, {cfg.gvpo_buffer_total} total"
    line = f"groups of {g}: " + " + ".join(parts) + (f"; {caps}" if h else "")
    per_generation = (cfg.generation_batch_size or 0) // g
    if h and num_prompts and per_generation:
        every = math.ceil(num_prompts / per_generation) * cfg.steps_per_generation  # optimizer steps between visits
        if cfg.max_steps > 0 and every >= cfg.max_steps:
            line += f"; NOTE: a prompt recurs every {every} steps >= max_steps={cfg.max_steps}: no history will be used"
        elif cfg.gvpo_max_staleness is not None and every > cfg.gvpo_max_staleness:
            line += f"; NOTE: a prompt recurs every {every} steps > gvpo_max_staleness: history is always too stale"
        else:
            line += f"; a prompt recurs every {every} steps"
    return line


# ----------------------------------------------------------------------------------------------------------------
# Config validation (called from VarpoGRPOConfig.__post_init__; same one-line message format)
# ----------------------------------------------------------------------------------------------------------------

_DEFAULTS = {
    "gvpo_history_selection": "most_recent",
    "gvpo_max_staleness": None,
    "gvpo_buffer_per_prompt": 16,
    "gvpo_buffer_total": 8192,
    "gvpo_rescore_history": False,
}


def validate_config(cfg) -> None:
    """Refuse invalid off-policy options; ``cfg`` is a ``VarpoGRPOConfig`` (before TRL's own checks)."""

    def fail(name: str, allowed: str) -> None:
        raise ValueError(f"{name}={getattr(cfg, name)!r} is invalid; allowed: {allowed}")

    h, ext = cfg.gvpo_history_per_group, cfg.gvpo_external_column
    if not is_int(h) or h < 0:
        fail("gvpo_history_per_group", "an int >= 0")
    if ext is not None and (not isinstance(ext, str) or not ext or ext == "prompt"):
        fail("gvpo_external_column", "a dataset column name other than 'prompt', or null")
    if cfg.gvpo_history_selection not in SELECTIONS:
        fail("gvpo_history_selection", " | ".join(SELECTIONS))
    if cfg.gvpo_max_staleness is not None and (not is_int(cfg.gvpo_max_staleness) or cfg.gvpo_max_staleness < 1):
        fail("gvpo_max_staleness", "an int >= 1 (optimizer steps) or null (no limit)")
    for name in ("gvpo_buffer_per_prompt", "gvpo_buffer_total"):
        if not is_int(getattr(cfg, name)) or getattr(cfg, name) < 1:
            fail(name, "an int >= 1")
    if not isinstance(cfg.gvpo_rescore_history, bool):
        fail("gvpo_rescore_history", "true | false")
    on = h > 0 or ext is not None
    if on and cfg.policy_loss != "gvpo":
        name = "gvpo_history_per_group" if h > 0 else "gvpo_external_column"
        fail(
            name,
            f"{0 if h > 0 else None} with policy_loss={cfg.policy_loss!r} (its importance ratio needs π_s, unknown "
            "for historical/external responses; only gvpo is valid for any π_s, GVPO Thm 3.2)",
        )
    if h == 0:
        for name, default in _DEFAULTS.items():
            if getattr(cfg, name) != default:
                fail(name, f"its default {default!r} (it is only used with gvpo_history_per_group > 0)")
    if on:
        slots = h + (ext is not None)
        if slots > cfg.num_generations - 1:
            fail(
                "gvpo_history_per_group",
                f"at most num_generations - 1{' - 1 (the external slot)' if ext is not None else ''} = "
                f"{cfg.num_generations - 1 - (ext is not None)} (every group keeps >= 1 fresh sample)",
            )
        if getattr(cfg, "use_vllm", False):
            fail(
                "use_vllm",
                "False with gvpo_history_per_group/gvpo_external_column (vLLM generation of a partial "
                "batch is not wired yet)",
            )
