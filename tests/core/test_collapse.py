"""The objective-collapse alarm: the ``frac_signal/<name>`` metric's hand values and the tracker's window logic."""

from __future__ import annotations

import math

import pytest
import torch

import varpo
from varpo.collapse import DEFAULT_WINDOW, CollapseAlarm, check_window

NAN = math.nan


def _frac_signal(rewards, groups, method="grpo", names=("a", "b")):
    out = varpo.compute_advantages(
        torch.tensor(rewards, dtype=torch.float64), torch.tensor(groups), method, names=list(names)
    )
    return {k: v for k, v in out.present_stats.items() if k.startswith("frac_signal/")}, out


@pytest.mark.parametrize("method", ["grpo", "dvao", "gdpo"])
def test_constant_in_three_of_four_groups_is_a_quarter(method):
    # objective a varies only in group 2 (0.1 repeated is exactly constant); b varies everywhere
    rewards = [[0.1, 0], [0.1, 1], [0.7, 0], [0.7, 1], [0.3, 0], [0.9, 1], [1.0, 1], [1.0, 0]]
    got, out = _frac_signal(rewards, [0, 0, 1, 1, 2, 2, 3, 3], method)
    assert got == {"frac_signal/a": 0.25, "frac_signal/b": 1.0}
    assert out.stats["frac_zero_std_groups"] == 0.0  # per batch no group is silent: the per-objective view is new


def test_missing_values_and_singleton_groups_are_left_out():
    rewards = [
        [0.5, 1.0],  # group 0: a varies, b has one scorable sample (the other missing): b not counted here
        [0.2, NAN],
        [0.4, 2.0],  # group 1: a constant over its 2 scorable samples (third missing), b varies
        [0.4, 3.0],
        [NAN, 3.0],
        [0.9, 5.0],  # group 2: a singleton group, counted for neither objective
    ]
    got, _ = _frac_signal(rewards, [0, 0, 1, 1, 1, 2])
    assert got == {"frac_signal/a": 0.5, "frac_signal/b": 1.0}


def test_no_qualifying_group_is_absent_not_zero():
    rewards = [[0.5, NAN], [0.2, 1.0], [0.3, NAN], [0.3, 2.0]]  # b has one scorable sample per group
    got, out = _frac_signal(rewards, [0, 0, 1, 1])
    assert got == {"frac_signal/a": 0.5}
    assert "frac_signal/b" in out.absent and out.stats["frac_signal/b"] == 0.0  # finite placeholder, not logged
    got, out = _frac_signal([[1.0, 2.0], [3.0, 4.0]], [0, 1])  # only singleton groups
    assert got == {} and {"frac_signal/a", "frac_signal/b"} <= out.absent
    got, _ = _frac_signal([[1.0, 2.0], [1.0, 2.0]], [0, 0])  # constant: measured 0, present
    assert got == {"frac_signal/a": 0.0, "frac_signal/b": 0.0}


def test_stats_false_has_no_metric():
    out = varpo.compute_advantages(torch.tensor([[0.0], [1.0]]), torch.tensor([0, 0]), "grpo", stats=False)
    assert out.stats == {}


def _feed(alarm, values, name="len"):
    """values: per step frac_signal for one objective (None = absent); returns the steps that warned."""
    warned = []
    for step, v in enumerate(values, start=1):
        stats = {"adv_abs_mean": 0.1} if v is None else {f"frac_signal/{name}": v}
        lines = alarm.update(stats, step=step)
        assert len(lines) <= 1
        if lines:
            assert "\n" not in lines[0] and repr(name) in lines[0]
            warned.append(step)
    return warned


def test_alarm_fires_once_when_the_window_is_reached():
    alarm = CollapseAlarm(3)
    assert _feed(alarm, [0.5, 0, 0, 0, 0, 0, 0]) == [4]  # steps 2, 3, 4 without signal; once, not again at 5..7
    assert alarm.collapsed() == ["len"]


def test_alarm_rearms_after_recovery_and_warns_again():
    alarm = CollapseAlarm(2)
    assert _feed(alarm, [0, 0, 0, 0.25, 0, 0.5, 0, 0, 0]) == [2, 8]
    alarm = CollapseAlarm(2, logged_as="adv/")
    lines = [alarm.update({"frac_signal/x": 0.0}, step=s) for s in (7, 8)]
    assert lines[0] == [] and "step 8" in lines[1][0] and "since step 7" in lines[1][0]
    assert "adv/frac_signal/x = 0" in lines[1][0]


def test_absent_steps_neither_count_nor_reset():
    alarm = CollapseAlarm(3)
    assert _feed(alarm, [0, None, 0, None, None, 0]) == [6]


def test_objectives_are_tracked_separately():
    alarm = CollapseAlarm(2)
    out = []
    for a, b in [(0, 0.5), (0, 0), (0.5, 0), (0, 0.5)]:
        out.append(alarm.update({"frac_signal/a": a, "frac_signal/b": b, "reward_mean/a": 0.0}))
    assert [len(x) for x in out] == [0, 1, 1, 0]
    assert "'a'" in out[1][0] and "'b'" in out[2][0]


def test_window_one_and_off():
    assert _feed(CollapseAlarm(1), [0, 0, 1, 0]) == [1, 4]
    off = CollapseAlarm(None)
    assert not off.enabled and _feed(off, [0] * 50) == []


@pytest.mark.parametrize("bad", [0, -3, 2.5, 20.0, "20", True])
def test_window_validation_is_one_line(bad):
    with pytest.raises(ValueError) as err:
        check_window(bad)
    message = str(err.value)
    assert "\n" not in message and message.startswith("collapse_window=") and "allowed:" in message


def test_window_defaults():
    assert check_window(None) is None and check_window(5) == 5
    assert CollapseAlarm().window == DEFAULT_WINDOW
