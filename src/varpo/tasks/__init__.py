"""Multi-objective tasks: verifiable (tool calling, math, countdown, constraints: the learnable K-objective testbed)
and judged (rubric, judge; see varpo.judge); ``custom``: your own TRL reward functions and data file.

    import varpo.tasks
    task = varpo.tasks.get_task("toolcall")           # "math", "countdown"; options as keyword arguments
    ds = task.generate(n=100, seed=0)                  # datasets.Dataset: prompt, gold completion, reward columns
    task.reward_funcs                                  # [correctness, format]: TRL reward functions, column order K
    task.score(ds[0]["completion"], **ds[0])           # {"correctness": 3.0, "format": 1.0}
    varpo.tasks.evaluate(task, [(row, samples), ...])  # means, avg@k, pass@k, all-objectives rate

See docs/tasks.md for prompt formats, reward definitions and data layouts.
"""

from __future__ import annotations

from typing import Any

from varpo.registry import load_plugins
from varpo.tasks.base import RewardFn, Task
from varpo.tasks.constraints import ConstraintsTask
from varpo.tasks.countdown import CountdownTask
from varpo.tasks.custom import CustomTask
from varpo.tasks.evaluation import EvalResult, evaluate, pass_at_k
from varpo.tasks.judged import JudgeTask
from varpo.tasks.math import MathTask
from varpo.tasks.rubric import RubricTask
from varpo.tasks.toolcall import ToolCallTask

TASKS: dict[str, type[Task]] = {
    "toolcall": ToolCallTask,
    "math": MathTask,
    "countdown": CountdownTask,
    "constraints": ConstraintsTask,
    "rubric": RubricTask,
    "judge": JudgeTask,
    "custom": CustomTask,
}


def register_task(name: str, cls: type[Task], *, replace: bool = False) -> type[Task]:
    """Make ``get_task(name, **options)`` (and ``task=<name>`` in a run spec or verl's ``reward_kwargs``) build
    ``cls(**options)``: a :class:`Task` subclass (a dataclass whose fields are its options). In another process
    (sweep runs, verl workers) ship the call as a plug-in (``VARPO_PLUGINS`` or a ``varpo.methods`` entry point,
    loaded on the first unknown name). Returns ``cls``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"task name must be a Python identifier (it is used in config values), got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"task {name!r}: expected a subclass of varpo.tasks.Task, got {cls!r}")
    if name in TASKS and TASKS[name] is not cls and not replace:
        raise ValueError(f"task {name!r} is already registered; pass replace=True to override it")
    TASKS[name] = cls
    return cls


def task_names() -> tuple[str, ...]:
    """Names of all tasks (built-in, registered, and those the plug-ins register), in registration order."""
    load_plugins()
    return tuple(TASKS)


def get_task(name: str, **options: Any) -> Task:
    """The task called `name` with its options set (see each task class for the options it takes)."""
    if isinstance(name, str) and name not in TASKS:
        load_plugins()
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    cls = TASKS[name]
    try:
        return cls(**options)
    except TypeError as e:
        from dataclasses import fields

        valid = sorted(f.name for f in fields(cls) if f.init)
        raise TypeError(f"task {name!r} takes options {valid}; got {sorted(options)}") from e


__all__ = [
    "TASKS",
    "ConstraintsTask",
    "CountdownTask",
    "CustomTask",
    "EvalResult",
    "JudgeTask",
    "MathTask",
    "RewardFn",
    "RubricTask",
    "Task",
    "ToolCallTask",
    "evaluate",
    "get_task",
    "pass_at_k",
    "register_task",
    "task_names",
]
