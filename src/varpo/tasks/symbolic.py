"""Symbolic answer equality with math-verify under one wall-clock deadline, safe to run as a stand-alone worker.

This module imports only the standard library and math-verify, so `math_grader` can start it as a child process
by file path (`python symbolic.py`), without importing varpo or torch: the child reads JSON lines
`[gold, pred, deadline_s]` on stdin and answers "1" (equal), "0" (not equal) or "T" (deadline passed) per line.

Only math-verify's LaTeX extraction is used. Its plain-expression extraction goes through `sympy.parse_expr`,
which calls `eval` on transformed model output; the LaTeX path parses with latex2sympy's ANTLR grammar, and the only
text it hands to sympy's string parser is a number token the grammar matched (`sympy.Number("42")`).

Time bound. math-verify's own timeouts are `signal.alarm(int seconds)` per parse and per comparison, so one
answer could cost three of them (gold parse, prediction parse, comparison). Here its timeouts are switched off and
the whole `equal` call (both parses and the comparison) runs under one `signal.setitimer` deadline of `deadline_s`
seconds (a float). The timer raises `Deadline`, a BaseException so that no `except Exception` inside sympy or
math-verify can swallow it, and it re-arms itself every `REARM_S` until the call unwinds, in case something catches
it anyway; a timer that was already running (pytest-timeout, a caller's alarm) is restored afterwards, minus the
time spent. Like any signal handler it runs between bytecodes, so the overshoot is small except inside one long C
call (a giant integer power); `math_grader.too_costly` screens those answers out before they get here, and the
worker path kills the child process as a last resort. SIGALRM works only in the main thread: elsewhere pass
`deadline_s=None` and bound the time from outside (as `math_grader` does with the worker process).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from functools import lru_cache

# math-verify logs a warning for every timeout, and for timeouts switched off; both are expected here.
logging.getLogger("math_verify").setLevel(logging.ERROR)

REARM_S = 0.02
GOLD_CACHE = 4096


class Deadline(BaseException):
    """The grading deadline passed (a BaseException: library code that catches Exception must not swallow it)."""


@lru_cache(maxsize=1)
def _config():
    from math_verify import LatexExtractionConfig

    return [LatexExtractionConfig()]


def _parse(answer: str):
    from math_verify import parse

    return parse("\\boxed{" + answer + "}", extraction_config=_config(), parsing_timeout=None)


# One answer of each common kind: sympy and math-verify import and initialise a lot lazily, on first use of roots,
# pi, trigonometry, logarithms, intervals, sets, relations and complex numbers (up to a second each on a loaded
# machine), which must not be charged to the first real answer that needs them.
_WARM_UP = (
    ("1+x^2", "x^2+1"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
    ("\\pi", "\\frac{\\pi}{2}"),
    ("\\sin x", "\\log_2 8"),
    ("(1,2)", "[1,2)"),
    ("\\{1,2\\}", "x=3"),
    ("a+bi", "2^{10}"),
    ("44^\\circ", "3\\%"),
)


@lru_cache(maxsize=1)
def warm_up() -> None:
    """Import math-verify and sympy and exercise their lazily initialised parts once (one to a few seconds),
    outside any deadline, so that no graded answer is charged for it."""
    from math_verify import verify

    for gold, pred in _WARM_UP:
        verify(_parse(gold), _parse(pred), timeout_seconds=None)


_gold_parses: dict[str, object] = {}  # gold -> parsed gold; only parses that finished are kept


def _equal_unbounded(gold: str, pred: str) -> bool:
    from math_verify import verify

    gold_parsed = _gold_parses.get(gold)
    if gold_parsed is None:
        gold_parsed = _parse(gold)
        if len(_gold_parses) >= GOLD_CACHE:
            _gold_parses.clear()
        _gold_parses[gold] = gold_parsed
    pred_parsed = _parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _on_alarm(signum, frame):
    signal.setitimer(signal.ITIMER_REAL, REARM_S)  # fire again if whatever runs now swallows this one
    raise Deadline


def equal(gold: str, pred: str, deadline_s: float | None) -> bool | None:
    """math-verify equivalence of two LaTeX answers (the contents of `\\boxed{}`): True, False, or None when the
    deadline passed first (callers score that as wrong).

    `deadline_s` bounds the whole call (both parses and the comparison) in wall-clock seconds; it needs the main
    thread. Pass None elsewhere (then the caller must bound the time, as `math_grader` does with a worker).
    Parse and comparison errors count as "not equal".
    """
    warm_up()
    if deadline_s is None:
        return _equal_unbounded(gold, pred)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("symbolic.equal with a deadline needs the main thread (SIGALRM)")
    old = signal.signal(signal.SIGALRM, _on_alarm)
    started = time.monotonic()
    outer = (0.0, 0.0)
    try:
        try:
            outer = signal.setitimer(signal.ITIMER_REAL, deadline_s)
            return _equal_unbounded(gold, pred)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            if outer[0] > 0:  # someone else's timer (pytest-timeout, a caller's alarm): give back what is left
                left = outer[0] - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), outer[1])
    except Deadline:
        return None


def _serve() -> None:
    warm_up()
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            gold, pred, deadline_s = json.loads(line)
            verdict = equal(str(gold), str(pred), float(deadline_s))
        except Exception:  # a worker must answer every request; a failure is "not equal"
            verdict = False
        print({True: "1", False: "0", None: "T"}[verdict], flush=True)


if __name__ == "__main__":
    _serve()
