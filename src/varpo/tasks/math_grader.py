"""Final-answer extraction and comparison for math, in bounded time on any thread.

Extraction (`extract_answer`), on the last `tail_chars` characters of the completion (verl's DAPO grader reads
the last 300): the last `\\boxed{…}` / `\\fbox{…}` (balanced braces), else the text after the last `Answer:`
on its line (the Minerva/DAPO convention), else the last number. Answers longer than `MAX_ANSWER_CHARS` count as
no answer.

Comparison (`answers_match`), in this order:
1. both answers plain numbers (integers, decimals, `1,234`, `a/b`, `\\frac{a}{b}`): exact comparison as
   fractions, without sympy;
2. `too_costly(gold, pred)`: a prediction that is a known symbolic-time bomb counts as wrong without being
   parsed (a numeric power tower such as `9^{9^{9}}` or `x^{10^{10}}`, an integer exponent over
   `MAX_EXPONENT_DIGITS` digits, a factorial of a number over `MAX_FACTORIAL_DIGITS` digits or of an expression
   holding a power/factorial, or `\\lim`/`\\int`/`\\sum`/`\\prod`… that the gold does not use: a final answer
   is a value, not an expression to evaluate);
3. otherwise math-verify decides (`symbolic.equal`, LaTeX parsing only) under ONE wall-clock deadline of
   `timeout_s` seconds (default `DEFAULT_TIMEOUT_S` = 0.3) for the whole comparison: gold parse, prediction
   parse and verification together. **A prediction that runs out of time counts as wrong (0).** Definite
   verdicts are cached per (gold, prediction, timeout_s); timeouts are not, so an answer that timed out under a
   passing CPU spike is graded again the next time.

The deadline is a SIGALRM interval timer, which works only in the main thread, so:
* on the main thread, math-verify runs in-process (`symbolic.equal(…, deadline_s=timeout_s)`);
* on any other thread (TRL/verl thread pools, Ray async actors), it runs in a child process that applies the same
  deadline on its own main thread; the caller stops waiting `KILL_GRACE_S` after the deadline (a late answer is
  read and dropped by the next call), and a child that has not answered `HARD_KILL_S` after a request is stuck in
  a C call that no signal interrupts: it is killed and replaced. The child is started and warmed up on first use
  (one to a few seconds, once), then reused; after a kill the next request waits for the replacement to warm up.
So one completion's symbolic grading takes at most about `timeout_s` + `KILL_GRACE_S` (0.4 s by default) off the
main thread, and `timeout_s` plus the signal's latency on it (a single long C call can overshoot there; the
pre-screen exists for the known ones), after the one-time warm-up (`symbolic.warm_up`). Timeouts are counted in
`timeouts()`, and the first one is logged: legitimate answers take 10-100 ms, so regular timeouts mean a policy
emitting bombs or a machine too loaded for the deadline (raise `timeout_s`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

from varpo.tasks import symbolic

MAX_ANSWER_CHARS = 500
DEFAULT_TIMEOUT_S = 0.3  # one completion's whole symbolic comparison, seconds (wall clock)
KILL_GRACE_S = 0.1  # worker path: how long after the deadline the caller stops waiting for the child
HARD_KILL_S = 3.0  # worker path: a child that has not answered this long after a request is killed
MAX_EXPONENT_DIGITS = 4  # `2^{2019}` is an answer; `x^{10000000000}` is a bomb
MAX_FACTORIAL_DIGITS = 4  # `1000!` is evaluated quickly; `(10^{10})!` is not
VERDICT_CACHE = 65536
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


MISSING_GOLDS = frozenset({"", "none", "null", "nan"})


def gold_answer(answer: object) -> str:
    """A gold answer column value as a string; GSM8K-style `… #### 72` keeps only what follows `####`.

    A missing gold (None, NaN, or the strings "", "None", "null", "nan" that null values become when a file is
    written with `str()`) gives "" (callers: "no gold", never a gold string `"None"` that `\\boxed{None}` would
    match)."""
    if answer is None or (isinstance(answer, float) and answer != answer):
        return ""
    text = str(answer).strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    return "" if text.lower() in MISSING_GOLDS else text


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


def answers_match(gold: str, pred: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether the predicted answer equals the gold one (see the module docstring): exact for plain numbers, a
    screened-out bomb is wrong, else math-verify within one `timeout_s` deadline (a timeout is wrong)."""
    g, p = to_number(gold), to_number(pred)
    if g is not None and p is not None:
        return g == p
    if too_costly(gold, pred):
        return False
    return _symbolic_match(gold, pred, float(timeout_s))


# A power whose exponent starts with a number that is itself raised to a numeric power: 9^{9^{9}}, x^{10^{10}},
# 9**9**9, 2^{(10)^{10}}, 9^{-9^{9^{i}}}. (Symbolic towers such as 2^{2^{n}} or e^{-x^2} are not matched.)
_TOWER = re.compile(r"(?:\^|\*\*)[\s{(\-+]*\d[\d.\s]*[})\s]*(?:\^|\*\*)[\s{(\-+]*\d")
_EXPONENT = re.compile(r"(?:\^|\*\*)[\s{(\-+]*(\d+)")
_CALCULUS = re.compile(r"\\(?:lim|int|iint|iiint|oint|sum|prod|coprod|limsup|liminf|sup|inf|max|min)(?![a-zA-Z])")
_CLOSE = {")": "(", "}": "{", "]": "["}
_DIGIT_RUN = re.compile(r"\d+")


def _factorial_operand(text: str, bang: int) -> str:
    """The operand written just before the `!` at index `bang`: a bracketed group or a run of digits/letters."""
    i = bang - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    if i < 0:
        return ""
    if text[i] in _CLOSE:
        close, depth = text[i], 0
        for j in range(i, -1, -1):
            if text[j] == close:
                depth += 1
            elif text[j] == _CLOSE[close]:
                depth -= 1
                if depth == 0:
                    return text[j : i + 1]
        return text[: i + 1]
    j = i
    while j >= 0 and (text[j].isalnum() or text[j] in ".,"):
        j -= 1
    return text[j + 1 : i + 1]


def too_costly(gold: str, pred: str) -> bool:
    """Whether `pred` is a symbolic-time bomb that counts as wrong without being parsed (module docstring, rule 2).

    Linear-time regex and bracket scans over at most `MAX_ANSWER_CHARS` characters. Each rule needs the gold not
    to share the construct (a gold that is itself a power tower or a sum is still compared, within the deadline).
    """
    if _TOWER.search(pred) and not _TOWER.search(gold):
        return True
    if _exponent_digits(pred) > MAX_EXPONENT_DIGITS >= _exponent_digits(gold):
        return True
    if _has_big_factorial(pred) and not _has_big_factorial(gold):
        return True
    calculus = {m[0] for m in _CALCULUS.finditer(pred)}
    return bool(calculus - {m[0] for m in _CALCULUS.finditer(gold)})


def _exponent_digits(text: str) -> int:
    """Digits of the longest integer that starts an exponent (`x^{10000000000}` -> 11)."""
    return max((len(m[1].lstrip("0")) for m in _EXPONENT.finditer(text)), default=0)


def _has_big_factorial(text: str) -> bool:
    """A `!` (not `!=`) after a number over MAX_FACTORIAL_DIGITS digits or a group holding a power/factorial."""
    for i, ch in enumerate(text):
        if ch != "!" or text.startswith("!=", i):
            continue
        operand = _factorial_operand(text, i)
        digits = max((len(d.lstrip("0")) for d in _DIGIT_RUN.findall(operand)), default=0)
        if digits > MAX_FACTORIAL_DIGITS or any(op in operand for op in ("^", "**", "!")):
            return True
    return False


_verdicts: dict[tuple[str, str, float], bool] = {}
_verdicts_lock = threading.Lock()
_timeouts = 0
logger = logging.getLogger(__name__)


def timeouts() -> int:
    """How many symbolic comparisons have run out of time in this process (each scored 0)."""
    return _timeouts


def clear_cache() -> None:
    """Forget cached verdicts (tests use it to make the next call really grade)."""
    with _verdicts_lock:
        _verdicts.clear()


def _symbolic_match(gold: str, pred: str, timeout_s: float) -> bool:
    # Cached: a group of G samples often repeats the same answer. Only definite verdicts are cached; a timeout
    # scores 0 now and is graded again next time (it may have been a CPU spike, not the answer).
    key = (gold, pred, timeout_s)
    with _verdicts_lock:
        if key in _verdicts:
            return _verdicts[key]
    if threading.current_thread() is threading.main_thread():
        verdict = symbolic.equal(gold, pred, timeout_s)
    else:
        verdict = _WORKER.equal(gold, pred, timeout_s)
    if verdict is None:
        global _timeouts
        with _verdicts_lock:
            _timeouts += 1
            if _timeouts == 1:
                logger.warning(
                    "math grading: an answer ran out of its %.2f s deadline and scored 0 (%r); further timeouts "
                    "are counted in varpo.tasks.math_grader.timeouts()",
                    timeout_s,
                    pred[:80],
                )
        return False
    with _verdicts_lock:
        if len(_verdicts) >= VERDICT_CACHE:
            _verdicts.clear()
        _verdicts[key] = verdict
    return verdict


class _Worker:
    """A child process running `symbolic.equal`, shared by all threads of this process (one request at a time).

    Every call returns within its budget `timeout_s + KILL_GRACE_S` (once the child is warm): the child gets the
    part of the budget that is left, minus the grace, as its own deadline. A late answer is not waited for: the
    request is "pending", and the next call first takes its stale answer off the pipe (within its own budget).
    A child that has not answered a request `HARD_KILL_S` after it was sent is stuck in a C call: it is killed
    and replaced, and the next call waits for the replacement to warm up.
    """

    def __init__(self, script: str | None = None) -> None:
        self._script = script or str(Path(symbolic.__file__))
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._ready = False
        self._owner = -1
        self._pending = 0  # requests sent whose answer has not been read
        self._sent_at = 0.0  # when the last request was sent (time.monotonic)
        self._seq = 0  # requests sent so far (the reaper checks it did not move on)

    def _spawn(self) -> None:
        """Start a child; it answers "ready" once warmed up (`_wait_ready` waits for that)."""
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
        self._ready = False
        self._pending = 0
        threading.Thread(target=_pump, args=(self._proc, self._lines), daemon=True).start()

    def _wait_ready(self) -> None:
        try:
            line = self._lines.get(timeout=WORKER_STARTUP_S)
        except queue.Empty:
            line = ""
        if line != "ready":
            self._stop()
            raise RuntimeError("math-verify worker failed to start")
        self._ready = True

    def _stop(self) -> None:
        if self._proc is not None and self._owner == os.getpid():
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._pending = 0

    def _drain(self, until: float) -> bool:
        """Read the answers of earlier requests that timed out; False if one is still missing at `until`."""
        while self._pending:
            try:
                self._lines.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                return False
            self._pending -= 1
        return True

    def _reap_later(self, seq: int) -> None:
        """Kill the child if request `seq` is still unanswered HARD_KILL_S after it was sent (a stuck C call)."""

        def reap() -> None:
            time.sleep(max(0.0, self._sent_at + HARD_KILL_S - time.monotonic()))
            with self._lock:
                if self._seq != seq or not self._pending or self._proc is None:
                    return
                if self._drain(time.monotonic()):
                    return  # it did answer, late
                self._spawn()  # killed; the next call waits for the replacement's "ready"

        threading.Thread(target=reap, daemon=True).start()

    def equal(self, gold: str, pred: str, timeout_s: float) -> bool | None:
        """The child's verdict, or None when the budget `timeout_s + KILL_GRACE_S` ran out (scored as wrong)."""
        with self._lock:
            # A forked process (dataloader, Ray) must not share its parent's child: start its own.
            if self._proc is None or self._proc.poll() is not None or self._owner != os.getpid():
                self._spawn()
            if not self._ready:
                self._wait_ready()  # first start (or after a kill): warm-up, once, outside any budget
            until = time.monotonic() + timeout_s + KILL_GRACE_S
            if not self._drain(until - KILL_GRACE_S):
                return None  # still busy with an earlier runaway request
            deadline = until - KILL_GRACE_S - time.monotonic()
            if deadline <= 0:
                return None
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps([gold, pred, deadline]) + "\n")
                self._proc.stdin.flush()
            except OSError:  # the child died: the next call starts a new one
                self._stop()
                return None
            self._pending, self._sent_at, self._seq = 1, time.monotonic(), self._seq + 1
            try:
                line = self._lines.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                self._reap_later(self._seq)
                return None
            self._pending = 0
            return {"1": True, "0": False}.get(line)  # "T": the child's own deadline passed


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line.strip())


_WORKER = _Worker()
atexit.register(_WORKER._stop)
