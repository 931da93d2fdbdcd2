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

* **the reward function** — ``reward.custom_reward_function.path``/``name`` are imported as verl's reward workers
  import them, and called on the first row of the training file (its ``data_source``, ``ground_truth`` and
  ``extra_info``, with the configured ``reward_kwargs``): a typo in the path or name, or varpo's reward without a
  ``reward_kwargs.task`` on data whose ``data_source`` names no task, fails here instead of in the reward workers;
* **data size and groups** — ``data.train_batch_size`` no larger than the training files' rows (verl drops the last
  incomplete batch: a larger batch trains nothing), and ``rollout.n >= 2`` for group estimators (with one
  response per prompt every group advantage is 0).

Each problem is one line naming the fields; :func:`check` returns them all at once (``verl``'s own
``validate_config`` stops at the first one with a long hydra traceback). :func:`run` also says what was checked and
what was skipped (a hub model not in the local cache under ``HF_HUB_OFFLINE=1`` is skipped in a dry run, as
``varpo train --dry-run`` does, and an error for a real launch).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

VARPO_REWARD_PATHS = ("pkg://varpo.verl.rewards", "varpo.verl.rewards")
#: verl estimators whose advantage compares the responses of one prompt (varpo's are all ``varpo_*``)
GROUP_ESTIMATORS = (
    "grpo",
    "grpo_passk",
    "grpo_vectorized",
    "rloo",
    "rloo_vectorized",
    "opo",
    "gpg",
    "reinforce_plus_plus_baseline",
)

JUDGED_TASKS = ("rubric", "judge")  # scored by a judge server: imported, never called, by the pre-flight


@dataclasses.dataclass
class Preflight:
    """What :func:`run` found: ``errors`` (one line each), and what it ``checked`` and ``skipped``."""

    errors: list[str] = dataclasses.field(default_factory=list)
    checked: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


def _get(cfg: Any, path: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, path, default=default)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _reward_key_errors(cfg: Any, keys: tuple[str, ...] | None, first: dict | None = None) -> list[str]:
    path = _get(cfg, "reward.custom_reward_function.path")
    task_name = _get(cfg, "reward.custom_reward_function.reward_kwargs.task")
    if task_name is None and first is not None:
        from varpo.verl.rewards import task_for

        try:
            task_name = task_for(first.get("data_source"))
        except ValueError:
            return []  # reported by the reward check
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


def _file_errors(cfg: Any, report: Preflight | None = None, dry_run: bool = False) -> list[str]:
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
        problems = _model_errors(str(model))
        if problems and dry_run and report is not None and "HF_HUB_OFFLINE=1" in problems[0]:
            report.skipped.append(f"model {model}: not in the local Hugging Face cache (HF_HUB_OFFLINE=1)")
        else:
            errors.extend(problems)
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
    estimator = str(_get(cfg, "algorithm.adv_estimator", ""))
    if n < 2 and (estimator.startswith("varpo_") or estimator in GROUP_ESTIMATORS):
        errors.append(
            f"actor_rollout_ref.rollout.n={n}: algorithm.adv_estimator={estimator} compares the responses of a "
            "prompt; with one response per prompt every advantage is 0 (set rollout.n >= 2)"
        )
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


def _local_train_files(cfg: Any) -> list[Path]:
    value = _get(cfg, "data.train_files")
    paths = [str(v) for v in (value if isinstance(value, list) else [value] if value is not None else [])]
    return [Path(os.path.expanduser(p.removeprefix("file://"))) for p in paths if not _is_remote(p)]


def _read_data(cfg: Any, report: Preflight) -> tuple[int | None, dict | None, list[str]]:
    """(rows of the local training files, their first row, errors); ``None`` where a file is remote/missing."""
    import pyarrow.parquet as pq

    files = _local_train_files(cfg)
    value = _get(cfg, "data.train_files")
    remote = isinstance(value, list) and len(files) < len(value) or not isinstance(value, list) and not files
    rows, first = 0, None
    for path in files:
        if not path.is_file():
            return None, None, []  # reported by the file check
        try:
            parquet = pq.ParquetFile(path)
            rows += parquet.metadata.num_rows
            if first is None and parquet.metadata.num_rows:
                first = parquet.read_row_group(0).slice(0, 1).to_pylist()[0]
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
            return None, None, [f"data.train_files: {path} cannot be read as parquet: {' '.join(str(exc).split())}"]
    if remote:
        report.skipped.append("rows of remote data.train_files (not read here)")
        return None, first, []
    report.checked.append(f"training data: {rows} rows in {len(files)} file(s)")
    return rows, first, []


def _size_errors(cfg: Any, rows: int | None) -> list[str]:
    batch = _get(cfg, "data.train_batch_size")
    if rows is None or not isinstance(batch, int) or batch <= rows:
        return []
    return [
        f"data.train_batch_size ({batch}) is larger than the training data ({rows} rows in data.train_files): "
        "verl drops the incomplete last batch, so no step would run"
    ]


def _reward_errors(cfg: Any, first: dict | None, report: Preflight) -> list[str]:
    """Import the configured reward function as verl does and score ``first`` (the training file's first row)."""
    path = _get(cfg, "reward.custom_reward_function.path")
    name = _get(cfg, "reward.custom_reward_function.name")
    if not path:
        report.skipped.append("reward function: verl's default compute_score (not varpo's)")
        return []
    where = f"reward.custom_reward_function (path={path}, name={name})"
    try:
        from verl.utils.import_utils import load_extern_object

        fn = load_extern_object(module_path=str(path), object_name=str(name))
    except Exception as exc:  # noqa: BLE001 - verl raises FileNotFoundError/AttributeError/RuntimeError/ImportError
        return [f"{where} cannot be loaded: {type(exc).__name__}: {' '.join(str(exc).split())}"]
    if not callable(fn):
        return [f"{where} is not callable"]
    batched = _get(cfg, "reward.reward_manager.name") == "batch"
    judged = _get(cfg, "reward.custom_reward_function.reward_kwargs.task") in JUDGED_TASKS
    if first is None or batched or judged:
        why = "a judged or batch reward (a judge is not called)" if batched or judged else "no local training row"
        report.skipped.append(f"reward function {name} from {path} imported, not called: {why}")
        return []
    kwargs = dict(_get(cfg, "reward.custom_reward_function.reward_kwargs") or {})
    dropped = kwargs.pop("tokenizer", None)
    truth = (
        (first.get("reward_model") or {}).get("ground_truth") if isinstance(first.get("reward_model"), dict) else None
    )
    extra = first.get("extra_info") if isinstance(first.get("extra_info"), dict) else {}
    solution = str(extra.get("completion", "")) if isinstance(extra, dict) else ""
    try:
        result = fn(
            data_source=first.get("data_source"), solution_str=solution, ground_truth=truth, extra_info=extra, **kwargs
        )
    except Exception as exc:  # noqa: BLE001 - whatever the reward raises is what the reward workers would raise
        return [
            f"{where} fails on the first row of data.train_files (data_source={first.get('data_source')!r}): "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        ]
    shown = result.get("score") if isinstance(result, dict) else result
    note = " (without reward_kwargs.tokenizer)" if dropped is not None else ""
    report.checked.append(f"reward function {name} from {path}: scored the first training row{note}: score={shown!r}")
    return []


def run(cfg: Any, reward_keys: tuple[str, ...] | None = None, dry_run: bool = False) -> Preflight:
    """Every pre-flight check of ``cfg``: problems, and what was checked and skipped (see the module doc)."""
    report = Preflight()
    rows, first, data_errors = _read_data(cfg, report)
    report.errors += [
        *_reward_key_errors(cfg, reward_keys, first),
        *_file_errors(cfg, report, dry_run),
        *data_errors,
        *_reward_errors(cfg, first, report),
        *_size_errors(cfg, rows),
        *_batch_errors(cfg),
    ]
    if reward_keys:
        report.checked.append(f"reward keys {list(reward_keys)}")
    report.checked.append("data and model paths, batch-size arithmetic")
    return report


def check(cfg: Any, reward_keys: tuple[str, ...] | None = None) -> list[str]:
    """Every pre-flight problem of ``cfg`` as one-line messages ([] = ready to launch)."""
    return run(cfg, reward_keys).errors
