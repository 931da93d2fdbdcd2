"""What happens when a reward function raises: ``reward_errors="isolate"`` (default) or ``"raise"``.

TRL calls each reward function once on the whole generation batch, so one exception (a grader crashing on one odd
completion) would kill the run. :class:`IsolatedReward` wraps a TRL-signature reward function:

* ``isolate``: one call on the whole batch, as TRL does (a batched grader such as the LLM judge keeps its one
  request per batch). Only if that call raises (or returns the wrong number of values) is the function re-scored
  row by row, each row once, to find the failing rows; a row that fails alone gets ``None`` for that component
  (TRL turns it into NaN; varpo's estimators treat NaN as *missing* and leave it out of that component's
  statistics) and is counted, so the trainer logs ``reward/<name>/errors``. A row the batch call already scored
  is never scored again. If the component fails for *every* sample of the batch the function is broken rather
  than unlucky, and :class:`RewardFunctionError` stops the run with the first error.
* ``raise``: the same batch call; any failure stops the run with a one-line :class:`RewardFunctionError` naming
  the function and the row (when the batch call raised, rows are re-scored one by one until the first that fails
  alone, so the error can name it).

A value that is not a number (a string, a list, a dict; TRL's ``torch.tensor`` would kill the run with "too many
dimensions 'str'") is a failure of that sample too: in ``isolate`` mode it is scored missing, counted and warned
about exactly like an exception (it is not re-scored: the function answered); in ``raise`` mode it stops the run.
Numbers (``int``, ``float``, ``bool``, numpy and 0-d torch scalars) are passed on as ``float``; ``None`` and NaN stay missing without counting as errors (the documented way to say "not applicable").

A deliberate stop is not a grader error: :class:`~varpo.judge.judge.JudgeOutageError` (the judge's
``judge_max_failure_rate`` policy) passes through both modes unchanged, without re-scoring any row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from varpo.judge.judge import JudgeOutageError

#: exceptions that stop the run by design: re-raised as they are, never isolated or re-scored row by row
STOPS = (JudgeOutageError,)
logger = logging.getLogger(__name__)

REWARD_ERROR_MODES = ("isolate", "raise")


class RewardFunctionError(RuntimeError):
    """A reward function raised for every sample of a batch (isolate) or at all (raise)."""


class IsolatedReward:
    """Wrap ``func(prompts=..., completions=..., **columns) -> list[float | None]`` (see module docstring).

    Attributes:
        __name__: the wrapped function's name (TRL uses it for metric keys and the column index).
        errors: failed samples since the last :meth:`pop_errors`.
        calls: calls of ``func`` so far (one per batch, plus one per row of a batch whose call raised).
    """

    def __init__(self, func: Callable, name: str, mode: str = "isolate") -> None:
        if mode not in REWARD_ERROR_MODES:
            raise ValueError(f"reward_errors={mode!r} is invalid; allowed: {' | '.join(REWARD_ERROR_MODES)}")
        self.func = func
        self.__name__ = name
        self.mode = mode
        self.errors = 0
        self.calls = 0
        self._warned = False

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        n = len(completions)
        self.calls += 1
        try:
            out = _values(self.func(prompts=prompts, completions=completions, **kwargs), n)
        except STOPS:
            raise
        except Exception as batch_error:  # noqa: BLE001 - any grader bug must be isolated, not fatal
            out = self._rows(prompts, completions, kwargs)
            if self.mode == "raise" and not any(isinstance(v, _Invalid) for v in out):
                raise RewardFunctionError(
                    f"reward function '{self.__name__}' failed on the batch of {n} although every row scores alone: "
                    f"{_one_line(batch_error)} (reward_errors=raise)"
                ) from batch_error
        failed = [i for i, v in enumerate(out) if isinstance(v, _Invalid)]
        if failed and self.mode == "raise":
            i = failed[0]
            raise RewardFunctionError(
                f"reward function '{self.__name__}' failed on row {i} of {n} ({_excerpt(completions[i])}): "
                f"{_one_line(out[i].error)} (reward_errors=raise; reward_errors=isolate scores failing rows as missing)"
            ) from out[i].error
        first_error = out[failed[0]].error if failed else None
        if n and len(failed) == n:
            raise RewardFunctionError(
                f"reward function '{self.__name__}' failed on all {n} samples of the batch; first error: "
                f"{_one_line(first_error)}"
            ) from first_error
        self.errors += len(failed)
        if failed and not self._warned:
            self._warned = True
            logger.warning(
                "reward function '%s' failed on %d/%d samples (scored as missing; counted in reward/%s/errors): %s",
                self.__name__,
                len(failed),
                n,
                self.__name__,
                _one_line(first_error),
            )
        return [None if isinstance(v, _Invalid) else v for v in out]

    def _rows(self, prompts: list, completions: list, kwargs: dict) -> list:
        """The batch call failed as a whole: score each row once, alone. In ``raise`` mode stop at the first row
        that fails (the run stops anyway)."""
        n = len(completions)
        out: list = []
        for i in range(n):
            sample = {k: (v[i : i + 1] if _per_sample(v, n) else v) for k, v in kwargs.items()}
            self.calls += 1
            try:
                (value,) = _values(
                    self.func(prompts=prompts[i : i + 1], completions=completions[i : i + 1], **sample), 1
                )
            except STOPS:
                raise
            except Exception as err:  # noqa: BLE001
                value = _Invalid(err)
            out.append(value)
            if self.mode == "raise" and isinstance(value, _Invalid):
                break
        return out

    def pop_errors(self) -> int:
        """Return and reset the failure count."""
        count, self.errors = self.errors, 0
        return count


class _Invalid:
    """A sample whose reward is unusable; ``error`` says why (the exception, or what the function returned)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _values(output, n: int) -> list:
    """The ``n`` rewards of one call as ``float | None | _Invalid``; raises when ``output`` is not ``n`` values."""
    if isinstance(output, (str, bytes, dict)) or not hasattr(output, "__iter__"):
        raise TypeError(f"returned {type(output).__name__}, not a list of {n} rewards")
    values = list(output)
    if len(values) != n:
        raise ValueError(f"returned {len(values)} rewards for {n} completions")
    return [_number(v) for v in values]


def _number(value) -> float | None | _Invalid:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        return _Invalid(TypeError(f"returned {value!r} ({type(value).__name__}), not a number"))
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as err:  # e.g. a torch tensor of more than one element
        return _Invalid(TypeError(f"returned {type(value).__name__} that is not one number: {err}"))


def _one_line(error: BaseException | None) -> str:
    """``Type: message`` on one line (a grader's multi-line message or traceback text is folded)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def _excerpt(completion) -> str:
    """A short, one-line view of the completion a row holds (for the error message)."""
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):  # conversational
        completion = completion[-1].get("content", "")
    text = " ".join(str(completion).split())
    return f"completion {text[:60]!r}" + ("..." if len(text) > 60 else "")


def _per_sample(value, n: int) -> bool:
    """Dataset columns (and ``completion_ids``) are lists with one entry per sample; trainer hooks are not."""
    return isinstance(value, list) and len(value) == n
