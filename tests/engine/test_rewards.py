"""A reward function that raises costs only the failing samples' component; a component failing on every sample
of a batch stops the run with a clear error."""

from __future__ import annotations

import logging
import math

import pytest

from varpo.judge.judge import JudgeOutageError
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
    assert wrapped.calls == 1 + 4  # the batch call raised: each row re-scored once, alone
    good = IsolatedReward(flaky, "flaky")
    assert good(prompts=["p"] * 3, completions=["ab", "a", "abcd"]) == pytest.approx([0.52, 0.51, 0.54])
    assert good.calls == 1 and good.pop_errors() == 0  # a batch that scores is never re-scored
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


def test_raise_mode_stops_with_one_line_naming_function_and_row():
    wrapped = IsolatedReward(flaky, "flaky", mode="raise")
    assert wrapped(prompts=["p"] * 2, completions=["ab", "a"]) == [pytest.approx(0.52), pytest.approx(0.51)]
    assert wrapped.calls == 1
    with pytest.raises(RewardFunctionError) as err:
        wrapped(prompts=["p"] * 3, completions=["ab", "abc", "a"])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("reward function 'flaky' failed on row 1 of 3 (completion 'abc'): ValueError: bad sample")
    assert wrapped.calls == 1 + 1 + 2  # the batch, then rows until the first that fails alone
    # a function that fails only on the whole batch: the batch error, said so
    batch_only = IsolatedReward(lambda completions, **kw: [1.0] if len(completions) == 1 else 1 / 0, "b", "raise")
    with pytest.raises(RewardFunctionError, match="'b' failed on the batch of 2 although every row scores alone"):
        batch_only(prompts=["p"] * 2, completions=["a", "b"])
    with pytest.raises(ValueError, match="reward_errors='skip' is invalid; allowed: isolate | raise"):
        IsolatedReward(flaky, "flaky", mode="skip")


def test_reward_errors_config(make_trainer):
    from varpo.trl import VarpoGRPOConfig

    with pytest.raises(ValueError, match="reward_errors='ignore' is invalid; allowed: isolate | raise"):
        VarpoGRPOConfig(output_dir="/tmp/unused", reward_errors="ignore")
    trainer = make_trainer(reward_funcs=[length, flaky], advantage_method="dvao", reward_errors="raise")
    with pytest.raises(RewardFunctionError, match="reward_errors=raise"):
        trainer.train()


def absent(completions, **kwargs):
    """A component that is missing for the whole batch (e.g. a judge that was down)."""
    return [None] * len(completions)


def test_absent_reward_is_not_logged_as_zero_and_each_value_has_one_name(make_trainer):
    trainer = make_trainer(reward_funcs=[length, absent], advantage_method="grpo", max_steps=2)
    trainer.train()
    records = [r for r in read_metrics(trainer.args.output_dir) if "reward/length/mean" in r]
    assert len(records) == 2
    for r in records:
        assert "reward/absent/mean" not in r and "reward/absent/std" not in r  # not 0.0 (TRL: null)
        assert r["adv/weight/absent"] == 0.0 and r["adv/weight/length"] == 1.0  # the no-signal rule
        assert not any(k.startswith(("rewards/", "adv/reward_mean/", "adv/reward_std/")) for k in r)
        assert not {"reward", "reward_std", "frac_reward_zero_std"} & set(r)


# What stringy returns for a completion of length L: _KINDS[L % 6] (list, str, dict: not numbers; None: missing).
_KINDS = (["x"], "0.5", {"r": 1}, None, 0.25, True)


def stringy(completions, **kwargs):
    """Returns strings (and other non-numbers) for some samples: TRL would die on them with "too many dimensions"."""
    return [_KINDS[len(c) % 6] for c in completions]


def test_non_numbers_are_isolated_like_exceptions(caplog):
    wrapped = IsolatedReward(stringy, "stringy")
    out = wrapped(prompts=["p"] * 6, completions=["a" * i for i in range(6)])
    # list, str, dict: missing + counted; None: missing, not an error; numbers (bool included) pass as float
    assert out == [None, None, None, None, 0.25, 1.0] and all(type(v) is float for v in out[4:])
    assert wrapped.pop_errors() == 3 and wrapped.calls == 1  # the function answered: nothing is re-scored
    assert "reward function 'stringy' failed on 3/6 samples" in caplog.text and "not a number" in caplog.text
    with pytest.raises(RewardFunctionError, match="'words' failed on all 2 samples.*not a number"):
        IsolatedReward(lambda completions, **kw: ["good", "bad"], "words")(prompts=["p", "q"], completions=["a", "b"])
    with pytest.raises(RewardFunctionError, match="'stringy' failed on row 0 of 2.*not a number.*reward_errors=raise"):
        IsolatedReward(stringy, "stringy", mode="raise")(prompts=["p"] * 2, completions=["abcdef", "a"])
    # a batch call that returns the wrong number of values is re-scored row by row, each row once
    calls = []

    def short(completions, **kw):
        calls.append(len(completions))
        return [0.5, 0.5] if completions[0] == "two" else [0.5]

    wrapped = IsolatedReward(short, "short")
    assert wrapped(prompts=["p"] * 3, completions=["a", "two", "b"]) == [0.5, None, 0.5]
    assert wrapped.pop_errors() == 1 and calls == [3, 1, 1, 1]


def test_training_survives_a_reward_returning_strings(make_trainer):
    seen: list[str] = []

    def recorded(completions, **kwargs):
        seen.extend(completions)
        return stringy(completions, **kwargs)

    recorded.__name__ = "stringy"
    trainer = make_trainer(reward_funcs=[length, recorded], advantage_method="dvao", max_steps=1)
    trainer.train()  # before: TypeError/ValueError "too many dimensions 'str'" from torch.tensor in TRL
    bad = sum(len(c) % 6 in (0, 1, 2) for c in seen)
    none = sum(len(c) % 6 == 3 for c in seen)
    assert len(seen) == 8 and bad > 0  # one generation batch of 8, scored in one call (non-numbers: no retry)
    errors = [r["reward/stringy/errors"] for r in read_metrics(trainer.args.output_dir) if "reward/stringy/errors" in r]
    assert errors == [float(bad)]
    rewards = trainer.trace.rollouts[0]["rewards"][:, 1]
    assert rewards.isnan().sum().item() == bad + none
    assert not trainer.trace.rollouts[0]["advantages"].isnan().any()


def test_a_judge_outage_stop_passes_through_isolation_unchanged():
    calls = []

    def judge_down(completions, **kwargs):
        calls.append(len(completions))
        raise JudgeOutageError("the judge failed more than 0.5 of the judgments ...")

    for mode in ("isolate", "raise"):
        calls.clear()
        with pytest.raises(JudgeOutageError, match="the judge failed more than 0.5"):
            IsolatedReward(judge_down, "judged", mode)(prompts=["p"] * 3, completions=["a", "b", "c"])
        assert calls == [3]  # a deliberate stop: not re-scored row by row, not turned into RewardFunctionError


def nothing(completions, **kwargs):
    return [None] * len(completions)


def test_rows_without_any_reward_are_one_varpo_line_not_trls_row_dump(make_trainer, caplog):
    trainer = make_trainer(reward_funcs=[nothing], advantage_method="grpo", max_steps=2)
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert not [r for r in caplog.records if r.getMessage().startswith("All reward functions returned None")]
    said = [r.getMessage() for r in caplog.records if "no reward from any reward function" in r.getMessage()]
    assert said == [
        "8/8 samples of a batch have no reward from any reward function (every component missing, e.g. "
        "the judge failed): advantage 0, no learning signal; said once, adv/frac_unscorable tracks it per step"
    ]
    records = [r for r in read_metrics(trainer.args.output_dir) if "adv/frac_unscorable" in r]
    assert [r["adv/frac_unscorable"] for r in records] == [1.0, 1.0]
