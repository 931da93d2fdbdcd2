"""register_task: a task of one's own is found by get_task and the run spec's task name check, like a built-in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import varpo.tasks
from varpo.tasks import TASKS, CountdownTask, get_task, register_task, task_names


@dataclass
class ShortCountdown(CountdownTask):
    """Countdown with a smaller default number of numbers (a task of one's own, reusing a built-in's rewards)."""


@pytest.fixture()
def registered():
    register_task("short_countdown", ShortCountdown)
    yield "short_countdown"
    TASKS.pop("short_countdown", None)


def test_registered_task_is_built_by_get_task(registered):
    task = get_task(registered)
    assert isinstance(task, ShortCountdown)
    assert registered in task_names()
    assert task.reward_names == CountdownTask().reward_names
    row = task.generate(2, seed=0)[0]
    assert task.score(row["completion"], **row)[task.reward_names[0]] == pytest.approx(1.0)


def test_registering_again_needs_replace(registered):
    register_task(registered, ShortCountdown)  # the same class again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        register_task(registered, CountdownTask)
    register_task(registered, CountdownTask, replace=True)
    assert type(get_task(registered)) is CountdownTask


def test_bad_registrations_are_one_line_errors():
    with pytest.raises(ValueError, match="identifier"):
        register_task("not a name", ShortCountdown)
    with pytest.raises(TypeError, match="subclass of varpo.tasks.Task"):
        register_task("nope", object)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")
    assert varpo.tasks.register_task is register_task
