"""Symbolic answer equality with math-verify, safe to run as a stand-alone worker process.

This module imports only the standard library and math-verify, so `math_grader` can start it as a child process
by file path (`python symbolic.py`), without importing varpo or torch: the child reads JSON lines
`[gold, pred, timeout_s]` on stdin and answers "1"/"0" per line.

Only math-verify's LaTeX extraction is used. Its plain-expression extraction goes through `sympy.parse_expr`,
which calls `eval` on transformed model output; the LaTeX path parses with latex2sympy's ANTLR grammar, and the only
text it hands to sympy's string parser is a number token the grammar matched (`sympy.Number("42")`).
"""

from __future__ import annotations

import json
import logging
import sys
from functools import lru_cache

# math-verify logs a warning for every timeout; a timeout is an ordinary outcome here (it scores 0).
logging.getLogger("math_verify").setLevel(logging.ERROR)


@lru_cache(maxsize=1)
def _config():
    from math_verify import LatexExtractionConfig

    return [LatexExtractionConfig()]


def _parse(answer: str, timeout_s: int | None):
    from math_verify import parse

    return parse("\\boxed{" + answer + "}", extraction_config=_config(), parsing_timeout=timeout_s)


@lru_cache(maxsize=4096)
def _parse_gold(gold: str, timeout_s: int | None):
    return _parse(gold, timeout_s)


def equal(gold: str, pred: str, timeout_s: int | None) -> bool:
    """math-verify equivalence of two LaTeX answers (the contents of `\\boxed{}`).

    `timeout_s` bounds each parse and comparison with math-verify's SIGALRM timeouts, which only work in the
    main thread; pass None elsewhere (then the caller must bound the time, as `math_grader` does with a worker).
    Timeouts and errors count as "not equal".
    """
    from math_verify import verify

    gold_parsed = _parse_gold(gold, timeout_s)
    pred_parsed = _parse(pred, timeout_s)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout_s))


def _serve() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            gold, pred, timeout_s = json.loads(line)
            ok = equal(str(gold), str(pred), int(timeout_s))
        except Exception:  # a worker must answer every request; a failure is "not equal"
            ok = False
        print("1" if ok else "0", flush=True)


if __name__ == "__main__":
    _serve()
