"""Pre-flight checks of a composed verl config for what otherwise costs GPU-hours: run by the launcher
(``python -m varpo.verl.train``, with and without ``--dry-run``) before Ray starts or a model is loaded.

* **reward keys** — with varpo's reward function (``pkg://varpo.verl.rewards`` and ``reward_kwargs.task``), every
  ``algorithm.varpo.reward_keys`` entry must be one of the task's components (a typo otherwise fails at the first
  advantage step, after rollouts);
* **local files** — ``data.train_files`` / ``data.val_files`` and a local ``actor_rollout_ref.model.path`` must
  exist and be readable (remote URIs such as ``hdfs://`` are skipped; a hub id is checked against the local cache
  only when ``HF_HUB_OFFLINE=1``);
* **batch-size arithmetic** — the micro-batch sizes verl needs without ``use_dynamic_bsz``, and the divisibility
  rules of ``train_batch_size``, ``rollout.n``, ``ppo_mini_batch_size``, the micro-batch size and the GPU count.

Each problem is one line naming the fields; :func:`check` returns them all at once (``verl``'s own
``validate_config`` stops at the first one with a long hydra traceback).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

VARPO_REWARD_PATHS = ("pkg://varpo.verl.rewards", "varpo.verl.rewards")


def _get(cfg: Any, path: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, path, default=default)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _reward_key_errors(cfg: Any, keys: tuple[str, ...] | None) -> list[str]:
    path = _get(cfg, "reward.custom_reward_function.path")
    task_name = _get(cfg, "reward.custom_reward_function.reward_kwargs.task")
    if not keys or path is None or not str(path).rstrip("/").endswith(VARPO_REWARD_PATHS) or task_name is None:
        return []
    from varpo.tasks import get_task

    # the task as the reward function will build it: its options can add components (rubric's max_words: length)
    options = _get(cfg, "reward.custom_reward_function.reward_kwargs.task_options") or {}
    try:
        components = list(get_task(str(task_name), **dict(options)).reward_names)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"reward.custom_reward_function.reward_kwargs: task={task_name!r} task_options={options!r}: {exc}"]
    errors = []
    for key in keys:
        if key not in components:
            close = difflib.get_close_matches(key, components, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append(
                f"algorithm.varpo.reward_keys: {key!r} is not a component of task {task_name!r}{hint}; "
                f"its components: {components}"
            )
    return errors


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _file_errors(cfg: Any) -> list[str]:
    errors = []
    for field in ("data.train_files", "data.val_files"):
        value = _get(cfg, field)
        if value is None:
            if field == "data.train_files":
                errors.append("data.train_files is unset (a local parquet file or a list of them)")
            continue
        for raw in value if isinstance(value, list) else [value]:
            path = str(raw)
            if _is_remote(path):
                continue
            local = Path(os.path.expanduser(path.removeprefix("file://")))
            if not local.exists():
                errors.append(f"{field}: {path} does not exist")
            elif not os.access(local, os.R_OK):
                errors.append(f"{field}: {path} is not readable")
    model = _get(cfg, "actor_rollout_ref.model.path")
    if model is None or str(model) in ("", "???"):
        errors.append("actor_rollout_ref.model.path is unset (a local model directory or a hub id)")
    else:
        errors.extend(_model_errors(str(model)))
    return errors


def _model_errors(model: str) -> list[str]:
    field = "actor_rollout_ref.model.path"
    if _is_remote(model):
        return []
    local = Path(os.path.expanduser(model))
    looks_local = model.startswith(("/", ".", "~")) or local.exists() or model.count("/") != 1
    if looks_local:
        if not local.is_dir():
            return [f"{field}: {model} is not a local model directory (and not a hub id 'org/name')"]
        if not (local / "config.json").is_file():
            return [f"{field}: {model} has no config.json (not a Hugging Face model directory)"]
        if not os.access(local / "config.json", os.R_OK):
            return [f"{field}: {model}/config.json is not readable"]
        return []
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            return [f"{field}: hub model {model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1"]
    return []


def _batch_errors(cfg: Any) -> list[str]:
    actor = "actor_rollout_ref.actor"
    n_gpus = int(_get(cfg, "trainer.n_gpus_per_node", 1)) * int(_get(cfg, "trainer.nnodes", 1))
    batch = _get(cfg, "data.train_batch_size")
    n = _get(cfg, "actor_rollout_ref.rollout.n", 1)
    mini = _get(cfg, f"{actor}.ppo_mini_batch_size")
    errors = []
    if not isinstance(batch, int) or batch < 1:
        return [f"data.train_batch_size={batch!r} must be a positive int"]
    if not isinstance(n, int) or n < 1:
        return [f"actor_rollout_ref.rollout.n={n!r} must be a positive int"]
    if _get(cfg, f"{actor}.use_dynamic_bsz", False):
        return errors
    micro = _get(cfg, f"{actor}.ppo_micro_batch_size_per_gpu")
    if micro is None and _get(cfg, f"{actor}.ppo_micro_batch_size") is None:
        errors.append(
            f"{actor}.ppo_micro_batch_size_per_gpu is unset: set it (sequences per GPU per forward pass) or "
            f"{actor}.use_dynamic_bsz=true"
        )
    for section in ("actor_rollout_ref.rollout", "actor_rollout_ref.ref"):
        if section.endswith("ref") and not (
            _get(cfg, f"{actor}.use_kl_loss") or _get(cfg, "algorithm.use_kl_in_reward")
        ):
            continue
        if _get(cfg, f"{section}.log_prob_micro_batch_size_per_gpu") is None and (
            _get(cfg, f"{section}.log_prob_micro_batch_size") is None
        ):
            errors.append(
                f"{section}.log_prob_micro_batch_size_per_gpu is unset: set it or {actor}.use_dynamic_bsz=true"
            )
    if (batch * n) % n_gpus:
        errors.append(
            f"data.train_batch_size ({batch}) x actor_rollout_ref.rollout.n ({n}) = {batch * n} sequences must be "
            f"divisible by trainer.n_gpus_per_node x trainer.nnodes ({n_gpus})"
        )
    if isinstance(mini, int):
        if mini > batch:
            errors.append(f"{actor}.ppo_mini_batch_size ({mini}) must be <= data.train_batch_size ({batch})")
        elif batch % mini:
            errors.append(f"data.train_batch_size ({batch}) must be a multiple of {actor}.ppo_mini_batch_size ({mini})")
        per_gpu = mini * n / n_gpus
        if isinstance(micro, int) and micro > 0 and (per_gpu != int(per_gpu) or int(per_gpu) % micro):
            errors.append(
                f"{actor}.ppo_mini_batch_size ({mini}) x rollout.n ({n}) / {n_gpus} GPUs = {per_gpu:g} sequences "
                f"per GPU must be a multiple of {actor}.ppo_micro_batch_size_per_gpu ({micro})"
            )
    return errors


def check(cfg: Any, reward_keys: tuple[str, ...] | None = None) -> list[str]:
    """Every pre-flight problem of ``cfg`` as one-line messages ([] = ready to launch)."""
    return [*_reward_key_errors(cfg, reward_keys), *_file_errors(cfg), *_batch_errors(cfg)]
