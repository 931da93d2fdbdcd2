"""A reward function that raises costs only the failing samples' component; a component failing on every sample
of a batch stops the run with a clear error."""

from __future__ import annotations

import math

import pytest

from varpo.trl import IsolatedReward, RewardFunctionError, read_metrics

from .conftest import length


def flaky(completions, **kwargs):
    """Raises on the batch and on every third sample when retried alone."""
    if len(completions) > 1 and any(len(c) % 3 == 0 for c in completions):
        raise ZeroDivisionError("batch contains a bad sample")
    if len(completions[0]) % 3 == 0:
        raise ValueError("bad sample")
    return [0.5 + len(c) / 100 for c in completions]


def broken(completions, **kwargs):
    raise RuntimeError("grader crashed")


def test_isolated_reward_unit():
    wrapped = IsolatedReward(flaky, "flaky")
    out = wrapped(prompts=["p"] * 4, completions=["abc", "ab", "abcdef", "a"], ground_truth=["x"] * 4, trainer_state=1)
    assert out[0] is None and out[2] is None and out[1] == pytest.approx(0.52) and out[3] == pytest.approx(0.51)
    assert wrapped.pop_errors() == 2 and wrapped.pop_errors() == 0
    assert wrapped.__name__ == "flaky"
    with pytest.raises(RewardFunctionError, match="'broken' failed on all 2 samples.*RuntimeError: grader crashed"):
        IsolatedReward(broken, "broken")(prompts=["p", "q"], completions=["a", "b"])


def test_training_survives_failing_samples(make_trainer):
    trainer = make_trainer(reward_funcs=[length, flaky], advantage_method="dvao", max_steps=3)
    trainer.train()
    errors = [r["reward/flaky/errors"] for r in read_metrics(trainer.args.output_dir) if "reward/flaky/errors" in r]
    assert len(errors) == 3 and sum(errors) > 0
    missing = sum(int(math.isnan(v)) for r in trainer.trace.rollouts for v in r["rewards"][:, 1].tolist())
    assert missing == sum(errors)
    for r in trainer.trace.rollouts:  # a missing component never turns into a NaN advantage
        assert not r["advantages"].isnan().any()


def test_component_failing_everywhere_stops(make_trainer):
    trainer = make_trainer(reward_funcs=[length, broken], advantage_method="dvao")
    with pytest.raises(RewardFunctionError, match="reward function 'broken' failed on all 8 samples"):
        trainer.train()


def stringy(completions, **kwargs):
    """Returns strings (and other non-numbers) for some samples: TRL would die on them with "too many dimensions"."""
    return [["x"], "0.5", {"r": 1}, None, 0.25, True][: len(completions)] + [0.5] * max(0, len(completions) - 6)


def test_non_numbers_are_isolated_like_exceptions(caplog):
    wrapped = IsolatedReward(stringy, "stringy")
    out = wrapped(prompts=["p"] * 6, completions=["a"] * 6)
    # list, str, dict: missing + counted; None: missing, not an error; numbers (bool included) pass as float
    assert out == [None, None, None, None, 0.25, 1.0] and all(type(v) is float for v in out[4:])
    assert wrapped.pop_errors() == 3
    assert "reward function 'stringy' failed on 3/6 samples" in caplog.text and "not a number" in caplog.text
    with pytest.raises(RewardFunctionError, match="'words' failed on all 2 samples.*not a number"):
        IsolatedReward(lambda completions, **kw: ["good", "bad"], "words")(prompts=["p", "q"], completions=["a", "b"])
    # a batch that returns the wrong number of values is retried sample by sample
    calls = []

    def short(completions, **kw):
        calls.append(len(completions))
        return [0.5] if len(completions) == 1 else [0.5]

    assert IsolatedReward(short, "short")(prompts=["p"] * 3, completions=["a"] * 3) == [0.5] * 3
    assert calls == [3, 1, 1, 1]


def test_training_survives_a_reward_returning_strings(make_trainer):
    trainer = make_trainer(reward_funcs=[length, stringy], advantage_method="dvao", max_steps=1)
    trainer.train()  # before: TypeError/ValueError "too many dimensions 'str'" from torch.tensor in TRL
    errors = [r["reward/stringy/errors"] for r in read_metrics(trainer.args.output_dir) if "reward/stringy/errors" in r]
    assert errors == [3.0]  # one generation batch, three non-numbers in it
    rewards = trainer.trace.rollouts[0]["rewards"][:, 1]
    assert rewards.isnan().sum().item() == 4  # 3 non-numbers + 1 None in the first six samples
    assert not trainer.trace.rollouts[0]["advantages"].isnan().any()
