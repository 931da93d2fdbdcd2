"""Failure isolation for reward functions.

TRL calls each reward function once on the whole generation batch, so one exception (a grader crashing on one odd
completion) would kill the run. :class:`IsolatedReward` wraps a TRL-signature reward function: when the batch call
raises, it retries sample by sample, and every sample that still raises gets ``None`` for that component (TRL turns
it into NaN; varpo's estimators treat NaN as *missing* and leave it out of that component's statistics). Failures are
counted so the trainer can log ``reward/<name>/errors``. If the component fails for *every* sample of the batch the
function is broken rather than unlucky, and :class:`RewardFunctionError` stops the run with the first error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class RewardFunctionError(RuntimeError):
    """A reward function raised for every sample of a batch."""


class IsolatedReward:
    """Wrap ``func(prompts=..., completions=..., **columns) -> list[float | None]`` so exceptions stay per sample.

    Attributes:
        __name__: the wrapped function's name (TRL uses it for metric keys and the column index).
        errors: failed samples since the last :meth:`pop_errors`.
    """

    def __init__(self, func: Callable, name: str) -> None:
        self.func = func
        self.__name__ = name
        self.errors = 0
        self._warned = False

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        try:
            return list(self.func(prompts=prompts, completions=completions, **kwargs))
        except Exception as batch_error:  # noqa: BLE001 - any grader bug must be isolated, not fatal
            first_error = batch_error
        n = len(completions)
        out: list[float | None] = []
        failed = 0
        for i in range(n):
            sample = {k: (v[i : i + 1] if _per_sample(v, n) else v) for k, v in kwargs.items()}
            try:
                out.extend(list(self.func(prompts=prompts[i : i + 1], completions=completions[i : i + 1], **sample)))
            except Exception:  # noqa: BLE001
                out.append(None)
                failed += 1
        if failed == n:
            raise RewardFunctionError(
                f"reward function '{self.__name__}' failed on all {n} samples of the batch; first error: "
                f"{type(first_error).__name__}: {first_error}"
            ) from first_error
        self.errors += failed
        if failed and not self._warned:
            self._warned = True
            logger.warning(
                "reward function '%s' raised on %d/%d samples (scored as missing; counted in reward/%s/errors): %s: %s",
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


def _per_sample(value, n: int) -> bool:
    """Dataset columns (and ``completion_ids``) are lists with one entry per sample; trainer hooks are not."""
    return isinstance(value, list) and len(value) == n
