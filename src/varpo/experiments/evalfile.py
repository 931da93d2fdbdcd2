"""Reading a run's ``eval.json``: either a valid result or the reason it is not one.

A run counts as finished exactly when its ``eval.json`` passes :func:`read_eval`, and the sweep (resume) and the
report (scores) use this one function, so they always agree. Valid = a JSON object whose ``objectives`` is a
non-empty mapping of objective name -> finite number and whose ``all`` is a finite number; ``curve`` (optional) a
list. Anything else — an empty or truncated file, invalid JSON, a list, a missing block, a NaN or string score —
is *unreadable*, with a one-line reason (``"truncated or invalid JSON at line 3 column 1: Expecting value"``,
``"objectives['format'] is NaN"``), never a silent "missing".
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from varpo.checks import is_real

MISSING = "missing"


_is_number = is_real  # a finite real number, never a bool (varpo.checks)


def check_eval(result: Any) -> str | None:
    """Why ``result`` (parsed eval.json) is not a valid result, or None when it is."""
    if not isinstance(result, dict):
        return f"not a JSON object (a {type(result).__name__})"
    objectives = result.get("objectives")
    if not isinstance(objectives, dict) or not objectives:
        return "no 'objectives' mapping" if objectives is None else "'objectives' is not a non-empty mapping"
    for name, value in objectives.items():
        if not _is_number(value):
            what = "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)
            return f"objectives[{name!r}] is {what}, not a finite number"
    if not _is_number(result.get("all")):
        return "no finite 'all' rate" if "all" in result else "no 'all' rate"
    if "curve" in result and not isinstance(result["curve"], list):
        return "'curve' is not a list"
    return None


def read_eval(path: str | os.PathLike) -> tuple[dict | None, str | None]:
    """``(result, None)`` for a valid eval.json, ``(None, MISSING)`` when there is none, ``(None, reason)`` when it
    exists but is unreadable (see the module doc)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, MISSING
    except OSError as err:
        return None, f"cannot be read: {err.strerror or err}"
    if not raw.strip():
        return None, "empty file"
    try:
        result = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"truncated or invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
    reason = check_eval(result)
    return (None, reason) if reason else (result, None)
