"""The objective-collapse alarm: one line when an objective has had no within-group variance for a window of steps.

Why: an objective that is constant inside every group (always met, always failed, or scored the same for every
sample of a prompt) gives every estimator a zero deviation for it, so no method can learn it back from those
groups; the testbed found runs that lose an objective this way long before the final evaluation shows it.
:func:`varpo.compute_advantages` measures the signal per objective as ``frac_signal/<name>`` (the fraction of groups
with >= 2 scorable samples in which the objective varies). :class:`CollapseAlarm` watches that metric across
steps; both engines feed it their diagnostics (TRL: ``VarpoGRPOConfig.collapse_window``; verl V1 trainer modes:
``algorithm.varpo.collapse_window``) and log what it returns as a warning.

Engine-agnostic and dependency-free: it reads a ``{stat: value}`` mapping, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from varpo.checks import is_int

#: default window (consecutive steps without signal before the warning); ``None`` turns the alarm off.
DEFAULT_WINDOW = 20
PREFIX = "frac_signal/"


def check_window(value, field: str = "collapse_window") -> int | None:
    """``value`` as a window (an integer >= 1) or ``None`` (off); otherwise a one-line ``ValueError`` naming ``field``."""
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise ValueError(f"{field}={value!r} is invalid; allowed: an integer >= 1 (steps), or null/None to turn it off")
    return value


class CollapseAlarm:
    """Counts, per objective, consecutive steps whose ``frac_signal/<name>`` is 0 and says so once per collapse.

    :meth:`update` takes one step's diagnostics (:attr:`varpo.AdvantageOutput.present_stats`, unprefixed) and
    returns the warnings to log: one for each objective whose no-signal streak reaches
    ``window`` at this step. The streak of an objective that varies again (``frac_signal > 0``) resets, so a later
    collapse warns again. A step where the metric is absent (no group with 2 scorable samples of the objective,
    e.g. the judge was down; ``frac_missing`` tracks that) is no evidence either way: it neither counts nor resets.
    """

    def __init__(self, window: int | None = DEFAULT_WINDOW, logged_as: str = "") -> None:
        self.window = check_window(window)
        self.logged_as = logged_as  # the engine's prefix of the metric in its logs (TRL "adv/", verl "varpo/")
        self.streak: dict[str, int] = {}  # objective -> consecutive steps without signal
        self.since: dict[str, object] = {}  # objective -> first step of the current streak (for the message)

    @property
    def enabled(self) -> bool:
        return self.window is not None

    def collapsed(self) -> list[str]:
        """The objectives whose current no-signal streak has reached the window."""
        return [] if self.window is None else [n for n, s in self.streak.items() if s >= self.window]

    def update(self, stats: Mapping[str, float], step: object = None) -> list[str]:
        """Feed one step's stats (keys ``frac_signal/<name>``, as the core returns them); return the warnings to log
        now."""
        if self.window is None:
            return []
        head = PREFIX
        out = []
        for key, value in stats.items():
            if not key.startswith(head):
                continue
            name = key[len(head) :]
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            if value > 0:
                self.streak[name] = 0
                continue
            if self.streak.get(name, 0) == 0:
                self.since[name] = step
            self.streak[name] = self.streak.get(name, 0) + 1
            if self.streak[name] == self.window:
                out.append(self.message(name, step))
        return out

    def message(self, name: str, step: object = None) -> str:
        since = self.since.get(name)
        where = "" if step is None else f" at step {step}"
        start = "" if since is None else f" (since step {since})"
        return (
            f"objective collapse{where}: {name!r} has not varied within any group for {self.window} consecutive "
            f"steps{start} ({self.logged_as}{PREFIX}{name} = 0), so no advantage method can learn it back from these groups; "
            f"check that its reward is not saturated or constant (said once until it varies again)"
        )
