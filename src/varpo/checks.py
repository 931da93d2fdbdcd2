"""Checks of plain values from untrusted input: is it a finite real number, is it an integer (never a bool).

``True`` is an ``int`` in Python and ``nan`` a ``float``; a config value ``yes`` or ``.nan`` parsed from YAML must
not pass as the number 1 or as a weight. Every module that validates a number from a user, a file or a registered
function asks here, so "number" means the same thing everywhere.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable


def is_real(value: object) -> bool:
    """A finite real number that is not a bool (int, float, numpy numbers; not NaN or ±inf, not a string, not an
    int beyond float's range)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float (a 400-digit "score")
        return False


def is_int(value: object) -> bool:
    """An integer that is not a bool (int, numpy integers)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def check_real(
    name: str, value: object, allowed: str, ok: Callable[[float], bool] | None = None, shown: object = None
) -> float:
    """``float(value)``, or a one-line ``ValueError`` "<name> must be <allowed>, got <value>" unless ``value``
    :func:`is_real` and satisfies ``ok`` (``shown`` replaces the value in the message, e.g. the whole sequence)."""
    if not is_real(value) or (ok is not None and not ok(value)):
        raise ValueError(f"{name} must be {allowed}, got {(value if shown is None else shown)!r}")
    return float(value)
