"""verl reward function: one key per reward component plus ``"score"``, graded by :mod:`varpo.tasks`.

Use it with::

    reward.custom_reward_function.path=pkg://varpo.verl.rewards
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.task=toolcall      # or math / countdown (default: from data_source)
    +algorithm.varpo.reward_keys=[correctness,format]                # the task's reward names

verl's reward managers call ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=,
**reward_kwargs)`` once per response and copy every key of the returned dict into ``reward_extra_info``; the
``"score"`` entry becomes the token-level reward (logging, DAPO filtering, single-reward estimators) while our
multi-reward estimators read the component keys. A component that does not apply to a sample (the grader returns
``None``) is reported as NaN, which the core treats as *missing* rather than 0.

How a verl row maps to the grader's columns (``RewardFn.columns``): ``extra_info`` fields first; a dict
``ground_truth`` (e.g. Countdown's ``{"target", "numbers"}``) is merged; a plain ``ground_truth`` fills every
still-missing column (ToolRL's ``ground_truth``, math's ``answer``). This makes the stock verl datasets of the
papers (DAPO-Math-17k, GSM8K/MATH, ToolRL's ``rlla_4k``, TinyZero Countdown) usable as they are.

Judged tasks (``rubric``, ``judge``; :mod:`varpo.judge`) use the batched entry point with verl's batch reward
manager, so one generation batch costs one concurrent, cached judge pass (one request per sample for all K
dimensions) instead of one blocking call per response::

    reward.reward_manager.name=batch
    reward.custom_reward_function.name=compute_score_batch
    +reward.custom_reward_function.reward_kwargs.task=rubric
    +reward.custom_reward_function.reward_kwargs.task_options.judge_base_url=http://judge:8000/v1
    +reward.custom_reward_function.reward_kwargs.task_options.judge_model=Qwen/Qwen2.5-7B-Instruct

The judge reads the prompt from ``extra_info.prompt`` (written by the judged tasks' ``to_verl``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from varpo.tasks import Task, get_task

logger = logging.getLogger(__name__)
#: deprecated per-sample key (see signal_code); ``algorithm.filter_groups.metric=varpo_signal`` now makes varpo's V1
#: modes judge each group with the estimator on its components (varpo.verl.group_filter), not read this value.
SIGNAL_KEY = "varpo_signal"


def _plain(value: Any) -> Any:
    """OmegaConf containers (hydra reward_kwargs) to plain Python, recursively."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - verl always brings omegaconf
        return value
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


@functools.lru_cache(maxsize=16)
def _tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path)


@functools.lru_cache(maxsize=32)
def _task(name: str, options_json: str, tokenizer: str | None) -> Task:
    options = json.loads(options_json)
    if tokenizer is not None:
        options["tokenizer"] = _tokenizer(tokenizer)
    task = get_task(name, **options)
    if "score" in task.reward_names:
        raise ValueError(f"task {name!r} has a reward named 'score', which verl reserves for the scalar reward")
    return task


#: verl ``data_source`` values of the public datasets our tasks grade (verl's own preprocessing scripts, the papers'
#: releases), lower case; ``varpo/<task>`` (what ``Task.to_verl`` writes) and a bare task name are read directly.
DATA_SOURCES = {
    "openai/gsm8k": "math",
    "gsm8k": "math",
    "lighteval/math": "math",
    "digitallearninggmbh/math-lighteval": "math",
    "huggingfaceh4/math-500": "math",
    "math": "math",
    "math_dapo": "math",
    "math_dapo_reasoning": "math",
    "bytedtsinghua-sia/dapo-math-17k": "math",
    "rlla": "toolcall",
    "toolrl": "toolcall",
    "countdown": "countdown",
    "jiayi-pan/countdown-tasks-3to4": "countdown",
}


def task_for(data_source: Any, task: str | None = None) -> str:
    """The varpo task that grades a row: ``task`` when set, else the one its ``data_source`` names (``varpo/<task>``,
    a task name, or a public source in :data:`DATA_SOURCES`); otherwise a one-line ValueError asking for
    ``reward_kwargs.task``."""
    from varpo.tasks import TASKS

    if task:
        return str(task)
    source = str(data_source or "").strip()
    name = source.removeprefix("varpo/")
    if name in TASKS:
        return name
    if source.lower() in DATA_SOURCES:
        return DATA_SOURCES[source.lower()]
    known = sorted({*DATA_SOURCES, *(f"varpo/{t}" for t in TASKS)})
    raise ValueError(
        f"varpo.verl.rewards: data_source {source!r} names no varpo task; set "
        f"+reward.custom_reward_function.reward_kwargs.task=<{'|'.join(TASKS)}> (data sources read directly: {known})"
    )


def task_row(task: Task, ground_truth: Any, extra_info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The grader's row (column name -> value) for one verl sample."""
    row = dict(extra_info) if isinstance(extra_info, Mapping) else {}
    if isinstance(ground_truth, Mapping):
        row.update(ground_truth)
    elif ground_truth is not None:
        for fn in task.reward_funcs:
            for column in fn.columns:
                row.setdefault(column, ground_truth)
    return row


def _weights(weights: Any, names: Sequence[str]) -> dict[str, float]:
    weights = _plain(weights)
    if weights is None:
        return dict.fromkeys(names, 1.0)
    if isinstance(weights, Mapping):
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"score weights for unknown rewards {sorted(unknown)}; rewards are {list(names)}")
        return {n: float(weights.get(n, 0.0)) for n in names}
    if len(weights) != len(names):
        raise ValueError(f"score weights {weights} must have one entry per reward {list(names)}")
    return {n: float(w) for n, w in zip(names, weights)}


def compute_score(
    data_source: str | None = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    *,
    task: str | None = None,
    task_options: Mapping[str, Any] | None = None,
    tokenizer: str | None = None,
    weights: Any = None,
    **_ignored: Any,
) -> dict[str, float]:
    """Score one response: ``{"score": Σ_k w_k r_k over present components, <reward name>: r_k, ...}``.

    Args (``reward_kwargs`` from the config): ``task`` (default: :func:`task_for` the row's ``data_source``), ``task_options`` (keyword options
    of :func:`varpo.tasks.get_task`, e.g. ``{max_tokens: 4000}``), ``tokenizer`` (name/path, for token-counting
    rewards such as math ``length``; verl passes only the decoded text), ``weights`` (list or name->weight mapping
    for ``"score"``, default 1 each). Other keyword arguments verl may add are ignored.
    """
    name = task_for(data_source, task)
    options = json.dumps(_plain(task_options) or {}, sort_keys=True)
    grader = _task(name, options, None if tokenizer is None else str(tokenizer))
    values = grader.score(solution_str, **task_row(grader, _plain(ground_truth), _plain(extra_info)))
    components = {k: (math.nan if v is None else float(v)) for k, v in values.items()}
    w = _weights(weights, list(components))
    score = sum(w[k] * v for k, v in components.items() if not math.isnan(v))
    return {"score": float(score), **components, SIGNAL_KEY: signal_code(components)}


def compute_score_batch(
    data_sources: Sequence[str] | None = None,
    solution_strs: Sequence[str] = (),
    ground_truths: Sequence[Any] = (),
    extra_infos: Sequence[Mapping[str, Any]] | None = None,
    *,
    task: str | None = None,
    task_options: Mapping[str, Any] | None = None,
    tokenizer: str | None = None,
    weights: Any = None,
    **_ignored: Any,
) -> list[dict[str, float]]:
    """verl's batch reward manager entry point: :func:`compute_score` for a whole batch, one dict per response.

    Judged reward functions (those with a ``judge``) are called once on the whole batch: the first one sends one
    request per sample through the judge's concurrency-bounded runner and the K-1 others read its memo. Rule-based
    ones score each response as :func:`compute_score` does. Same ``reward_kwargs`` as :func:`compute_score`.
    """
    n = len(solution_strs)
    sources = list(data_sources) if data_sources is not None else []
    names = {task_for(s, task) for s in sources} if sources else {task_for(None, task)}
    if len(names) != 1:
        raise ValueError(f"varpo.verl.rewards: set reward_kwargs.task (the batch mixes tasks {sorted(names)})")
    options = json.dumps(_plain(task_options) or {}, sort_keys=True)
    grader = _task(names.pop(), options, None if tokenizer is None else str(tokenizer))
    infos = list(extra_infos) if extra_infos is not None else [None] * n
    truths = list(ground_truths) if ground_truths is not None else [None] * n
    rows = [task_row(grader, _plain(truths[i]), _plain(infos[i])) for i in range(n)]
    components: dict[str, list[float | None]] = {}
    for fn in grader.reward_funcs:
        if getattr(fn, "judge", None) is not None:
            columns = {c: [row.get(c) for row in rows] for c in fn.columns}
            components[fn.__name__] = fn(
                prompts=[row.get("prompt", "") for row in rows], completions=solution_strs, **columns
            )
        else:
            components[fn.__name__] = [fn.score(solution_strs[i], **rows[i]) for i in range(n)]
    judges = {id(fn.judge): fn.judge for fn in grader.reward_funcs if getattr(fn, "judge", None) is not None}
    for judge in judges.values():
        logger.info("varpo judge: %s", judge.pop_metrics())
    w = _weights(weights, list(components))
    out = []
    for i in range(n):
        values = {k: (math.nan if v[i] is None else float(v[i])) for k, v in components.items()}
        score = float(sum(w[k] * v for k, v in values.items() if not math.isnan(v)))
        out.append({"score": score, **values, SIGNAL_KEY: signal_code(values)})
    return out


#: bits of a signal code: small enough that the sum of a group's codes is an exact float64 integer for any group of
#: fewer than 2^21 samples, so verl's ``np.std(metric) == 0.0`` test holds exactly for a constant group (48-bit codes
#: made a constant group of 100 look varied in 75 of 200 draws: its float64 mean is rounded).
SIGNAL_BITS = 32


def signal_code(components: Mapping[str, float]) -> float:
    """Deprecated: one float that is equal for two samples iff their whole component vectors are equal.

    Returned as ``varpo_signal`` by :func:`compute_score` for one more release, then dropped. It was verl's DAPO
    filter metric: verl evicts a group whose metric has ``np.std == 0``, so filtering on this code evicted a group
    only when *every* component was constant. A per-sample value cannot see the group, so groups whose
    per-objective advantages cancel (K = 2, equal weights, constant sum under gdpo/ac/saw/rvpo: every advantage 0)
    were kept and trained on zero advantage. ``algorithm.filter_groups.metric=varpo_signal`` now selects
    :mod:`varpo.verl.group_filter` in varpo's V1 modes, which reads the components and applies the estimator's own
    rule; nothing in varpo reads this value, and ``check_config`` rejects the metric with verl's own trainer modes.

    A 32-bit BLAKE2b digest of the values' ``repr``, an integer below 2^32 so that ``np.std`` of a constant group
    is exactly 0 for any group size below 2^21; NaN (missing) is a value like any other.
    """
    text = json.dumps([[k, repr(float(v))] for k, v in sorted(components.items())])
    digest = hashlib.blake2b(text.encode(), digest_size=SIGNAL_BITS // 8).digest()
    return float(int.from_bytes(digest, "big"))
