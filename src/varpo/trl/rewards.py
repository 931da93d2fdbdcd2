"""What happens when a reward function raises: ``reward_errors="isolate"`` (default) or ``"raise"``.

TRL calls each reward function once on the whole generation batch, so one exception (a grader crashing on one odd
completion) would kill the run. :class:`IsolatedReward` wraps a TRL-signature reward function:

* ``isolate``: every sample is scored **once, on its own**; a sample that raises gets ``None`` for that component
  (TRL turns it into NaN; varpo's estimators treat NaN as *missing* and leave it out of that component's
  statistics) and is counted, so the trainer logs ``reward/<name>/errors``. No sample is ever scored twice (an
  earlier version retried a failed batch sample by sample, doubling an expensive grader's cost). If the component
  fails for *every* sample of the batch the function is broken rather than unlucky, and
  :class:`RewardFunctionError` stops the run with the first error.
* ``raise``: one call on the whole batch, as TRL does; an exception stops the run with a one-line
  :class:`RewardFunctionError` naming the function (for debugging a grader, or for graders that are much cheaper
  batched — those can also catch their own errors and return ``None`` for the failed rows).

A value that is not a number (a string, a list, a dict; TRL's ``torch.tensor`` would kill the run with "too many
dimensions 'str'") is a failure of that sample too: in ``isolate`` mode it is scored missing, counted and warned
about exactly like an exception (so is a call that returns other than one value for its one completion); in
``raise`` mode it stops the run. Numbers (``int``, ``float``, ``bool``, numpy and 0-d torch scalars) are passed on as
``float``; ``None`` and NaN stay missing without counting as errors (the documented way to say "not applicable").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

REWARD_ERROR_MODES = ("isolate", "raise")


class RewardFunctionError(RuntimeError):
    """A reward function raised for every sample of a batch (isolate) or at all (raise)."""


class IsolatedReward:
    """Wrap ``func(prompts=..., completions=..., **columns) -> list[float | None]`` (see module docstring).

    Attributes:
        __name__: the wrapped function's name (TRL uses it for metric keys and the column index).
        errors: failed samples since the last :meth:`pop_errors`.
        calls: calls of ``func`` so far (one per sample in ``isolate`` mode, one per batch in ``raise`` mode).
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
        if self.mode == "raise":
            self.calls += 1
            try:
                return [_raise_invalid(v) for v in _values(self.func(prompts=prompts, completions=completions, **kwargs), n)]
            except Exception as exc:
                raise RewardFunctionError(
                    f"reward function '{self.__name__}' raised {type(exc).__name__}: {exc} "
                    "(reward_errors=raise; use reward_errors=isolate to score failing samples as missing)"
                ) from exc
        out: list[float | None] = []
        first_error: Exception | None = None
        failed = 0
        for i in range(n):
            sample = {k: (v[i : i + 1] if _per_sample(v, n) else v) for k, v in kwargs.items()}
            self.calls += 1
            try:
                (value,) = _values(self.func(prompts=prompts[i : i + 1], completions=completions[i : i + 1], **sample), 1)
            except Exception as exc:  # noqa: BLE001 - any grader bug must be isolated, not fatal
                value = _Invalid(exc)
            if isinstance(value, _Invalid):
                first_error = first_error or value.error
                failed += 1
                value = None
            out.append(value)
        if n and failed == n:
            raise RewardFunctionError(
                f"reward function '{self.__name__}' failed on all {n} samples of the batch; first error: "
                f"{type(first_error).__name__}: {first_error}"
            ) from first_error
        self.errors += failed
        if failed and not self._warned:
            self._warned = True
            logger.warning(
                "reward function '%s' failed on %d/%d samples (scored as missing; counted in reward/%s/errors): %s: %s",
                self.__name__,
                failed,
                n,
                self.__name__,
                type(first_error).__name__,
                first_error,
            )
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


def _raise_invalid(value: float | None | _Invalid) -> float | None:
    if isinstance(value, _Invalid):
        raise value.error
    return value


def _per_sample(value, n: int) -> bool:
    """Dataset columns (and ``completion_ids``) are lists with one entry per sample; trainer hooks are not."""
    return isinstance(value, list) and len(value) == n
