"""Strict reading of a judge's reply: one JSON object, checked against the expected keys. Never ``eval``.

A reply is accepted when it *is* a JSON object, optionally wrapped in a Markdown code fence (```json ... ```), or,
failing that, when the text between its first ``{`` and its last ``}`` is one (judges often add a sentence around
the object). Anything else is unparseable and every dimension of that sample becomes missing. Replies longer than
``MAX_REPLY_CHARS`` are rejected before parsing, so a runaway judge costs bounded time and memory.

Per key, the value checks are strict (a bad value makes *that* key missing, the others still count):

* scores (:func:`read_scores`): a finite number (``bool`` is not a number) or ``{"score": number}`` (SAW's layout),
  inside the dimension's declared ``[low, high]``; out-of-range values are rejected, not clipped.
* criteria (:func:`read_verdicts`): JSON ``true``/``false`` or the strings "yes"/"no"/"true"/"false"/"met"/
  "not met" (any case), or ``{"met": ...}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from varpo.checks import is_real

MAX_REPLY_CHARS = 65_536
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)
_TRUE = {"true", "yes", "met", "y"}
_FALSE = {"false", "no", "not met", "unmet", "n"}


class ReplyError(ValueError):
    """The reply is not a single JSON object."""


def json_object(reply: Any) -> dict[str, Any]:
    """The JSON object in ``reply``; :class:`ReplyError` (one line, saying why) otherwise."""
    if not isinstance(reply, str):
        raise ReplyError(f"reply is {type(reply).__name__}, not text")
    if len(reply) > MAX_REPLY_CHARS:
        raise ReplyError(f"reply has {len(reply)} characters (limit {MAX_REPLY_CHARS})")
    text = reply.strip()
    fenced = _FENCE.match(text)
    candidates = [fenced.group(1)] if fenced else [text]
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):  # ValueError: also a number beyond int()'s digit limit
            continue
        if isinstance(value, dict):
            return value
    raise ReplyError(f"reply is not a JSON object: {text[:80]!r}")


def _number(value: Any) -> float | None:
    if isinstance(value, Mapping) and "score" in value:
        value = value["score"]
    # not a bool, not NaN/inf, not an int beyond float's range (a 400-digit "score")
    return float(value) if is_real(value) else None


def read_scores(obj: Mapping[str, Any], ranges: Mapping[str, tuple[float, float]]) -> dict[str, float | None]:
    """``{dimension: raw score or None}`` for each dimension in ``ranges`` (``{name: (low, high)}``)."""
    out: dict[str, float | None] = {}
    for name, (low, high) in ranges.items():
        value = _number(obj.get(name))
        out[name] = value if value is not None and low <= value <= high else None
    return out


def _verdict(value: Any) -> bool | None:
    if isinstance(value, Mapping) and "met" in value:
        value = value["met"]
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def read_verdicts(obj: Mapping[str, Any], ids: Sequence[str]) -> dict[str, bool | None]:
    """``{criterion id: met?}`` for each id; None where the reply omits it or gives no yes/no answer."""
    return {cid: _verdict(obj.get(cid)) for cid in ids}
