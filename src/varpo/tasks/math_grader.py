"""Final-answer extraction and comparison for math, in bounded time on any thread.

Extraction (`extract_answer`), on the last `tail_chars` characters of the completion (verl's DAPO grader reads
the last 300): the last `\\boxed{…}` / `\\fbox{…}` (balanced braces), else the text after the last `Answer:`
on its line (the Minerva/DAPO convention), else the last number. Answers longer than `MAX_ANSWER_CHARS` count as
no answer.

Comparison (`answers_match`): when both answers are plain numbers (integers, decimals, `1,234`, `a/b`,
`\\frac{a}{b}`), they are compared exactly as fractions, without sympy. Otherwise math-verify decides
(`symbolic.equal`, LaTeX parsing only). math-verify bounds its work with SIGALRM, which works only in the main
thread, so:
* on the main thread it runs in-process with `timeout_s` per parse/comparison;
* on any other thread (TRL/verl thread pools, Ray async actors) it runs in a child process that is killed when it
  overruns `3·timeout_s + 2` seconds. The child is started on first use (about a second), then reused.
A timeout counts as a wrong answer.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import subprocess
import sys
import threading
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from varpo.tasks import symbolic

MAX_ANSWER_CHARS = 500
WORKER_STARTUP_S = 120.0
# Runs symbolic.py as a script without its folder (or the cwd) on sys.path: this package's `math.py` and
# `io.py` would otherwise shadow the standard library modules of the same names inside the worker.
_LAUNCH = (
    "import os, runpy, sys; script = sys.argv[1]; "
    "sys.path[:] = [p for p in sys.path if p not in ('', os.path.dirname(script))]; "
    "runpy.run_path(script, run_name='__main__')"
)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_LINE = re.compile(r"Answer\s*:(.*)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_PLAIN = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+]?\.\d+")
_RATIO = re.compile(r"([-+]?\d+)\s*/\s*(\d+)")
_FRAC = re.compile(r"(-?)\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")


def last_boxed(text: str) -> str | None:
    """Contents of the last `\\boxed{…}` or `\\fbox{…}` with balanced braces, or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i]
    return None


def extract_answer(text: str, tail_chars: int = 1000) -> str | None:
    """The final answer written in `text` (see the module docstring for the order of rules), or None."""
    tail = text[-tail_chars:] if tail_chars > 0 else text
    answer = last_boxed(tail)
    if answer is None:
        lines = _ANSWER_LINE.findall(tail)
        if lines and lines[-1].strip():
            answer = lines[-1]
    if answer is None:
        numbers = _NUMBER.findall(tail)
        answer = numbers[-1] if numbers else None
    if answer is None:
        return None
    answer = answer.strip()
    return answer if answer and len(answer) <= MAX_ANSWER_CHARS else None


def gold_answer(answer: object) -> str:
    """A gold answer column value as a string; GSM8K-style `… #### 72` keeps only what follows `####`."""
    text = str(answer).strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    return text


def to_number(answer: str) -> Fraction | None:
    """`answer` as an exact number if it is a plain one (see module docstring), else None."""
    s = answer.strip().replace("\\!", "").replace("\\,", "").replace("{,}", ",").replace("\\$", "")
    s = s.strip("$ ").rstrip(".").strip()
    if _PLAIN.fullmatch(s):
        return Fraction(s.replace(",", "").replace("+", ""))
    if m := _RATIO.fullmatch(s):
        return Fraction(int(m[1]), int(m[2])) if int(m[2]) else None
    if m := _FRAC.fullmatch(s):
        value = Fraction(int(m[2]), int(m[3])) if int(m[3]) else None
        return -value if value is not None and m[1] else value
    return None


def answers_match(gold: str, pred: str, timeout_s: int = 2) -> bool:
    """Whether the predicted answer equals the gold one (exact for plain numbers, else math-verify)."""
    g, p = to_number(gold), to_number(pred)
    if g is not None and p is not None:
        return g == p
    return _symbolic_match(gold, pred, timeout_s)


@lru_cache(maxsize=65536)
def _symbolic_match(gold: str, pred: str, timeout_s: int) -> bool:
    # Cached: a group of G samples often repeats the same answer, and a runaway one costs a whole timeout.
    if threading.current_thread() is threading.main_thread():
        return symbolic.equal(gold, pred, timeout_s)
    return _WORKER.equal(gold, pred, timeout_s)


class _Worker:
    """A child process running `symbolic.equal`, shared by all threads of this process (one request at a time)."""

    def __init__(self, script: str | None = None) -> None:
        self._script = script or str(Path(symbolic.__file__))
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._owner = -1

    def _start(self) -> None:
        self._stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, self._script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._owner = os.getpid()
        self._lines = queue.Queue()
        threading.Thread(target=_pump, args=(self._proc, self._lines), daemon=True).start()
        if self._lines.get(timeout=WORKER_STARTUP_S) != "ready":
            raise RuntimeError("math-verify worker failed to start")

    def _stop(self) -> None:
        if self._proc is not None and self._owner == os.getpid():
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def equal(self, gold: str, pred: str, timeout_s: int) -> bool:
        with self._lock:
            # A forked process (dataloader, Ray) must not share its parent's child: start its own.
            if self._proc is None or self._proc.poll() is not None or self._owner != os.getpid():
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(json.dumps([gold, pred, timeout_s]) + "\n")
            self._proc.stdin.flush()
            try:
                return self._lines.get(timeout=3 * timeout_s + 2) == "1"
            except queue.Empty:
                self._stop()  # runaway sympy: kill it; the next call starts a fresh worker
                return False


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line.strip())


_WORKER = _Worker()
atexit.register(_WORKER._stop)
