"""One judgment per sample, K rewards: :class:`JudgeRewards` and its TRL-signature reward functions.

    judge = JudgeRewards(ScoreScheme(parse_dimensions(["quality", "conciseness"])),
                         OpenAIBackend("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct"), "tldr")
    trainer = VarpoGRPOTrainer(..., reward_funcs=[*judge.reward_funcs, rule_based_fn])

TRL calls each reward function once per generation batch, in order. The first judged function of a batch renders
every sample's request, serves what it can from the in-memory memo and the on-disk cache, sends the rest through
the :class:`~varpo.judge.runner.JudgeRunner` in one batched, concurrency-bounded pass, and memoises every
sample's K values keyed by the request hash; the K-1 other functions of the same batch find all their samples in
the memo and send nothing. The memo keeps only the latest batch's samples (bounded memory).

Missing values: a sample whose judgment failed (no reply after retries, timeout, batch deadline, a reply with no
usable dimension: unparseable, ``{}``, every value out of range) gets ``judge_failure`` in every dimension — None
by default, or a penalty — and is never cached; a reply that omits or garbles one dimension gets None there only.
TRL turns None into NaN and varpo's estimators leave NaN out of that component's statistics. The completion is
untrusted input: it reaches the judge only inside :func:`delimit`'s markers, and a reply is parsed without ever
raising (any problem: a failure). Counts go to the trainer's metrics through
TRL's ``log_metric`` hook (``judge/requests``, ``judge/cache_hits``, ``judge/failures``, ``judge/retries``,
``judge/missing``, ``judge/latency`` = mean seconds per sent request, ``judge/batch_seconds``; a mean with nothing
to average is left out, never 0), or, without a trainer, accumulate until :meth:`JudgeRewards.pop_metrics`.

Outages: by default a judge that stays down only makes its rewards missing. ``max_failure_rate`` (the
``judge_max_failure_rate`` option) stops the run with :class:`JudgeOutageError` instead once more than that
fraction of a batch's judgments failed in each of ``failure_window`` judged batches in a row (a run that would
otherwise go on learning nothing from the judge). :meth:`JudgeRewards.summary` holds the whole run's totals for the
end-of-run report.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from varpo.checks import is_int, is_real
from varpo.judge.cache import JudgeCache, request_key
from varpo.judge.parse import ReplyError, json_object
from varpo.judge.runner import JudgeRunner
from varpo.judge.templates import Template, load_template
from varpo.text import completion_text, conversation_text

logger = logging.getLogger(__name__)
BASE_FIELDS = {"prompt", "completion"}
METRICS = ("requests", "cache_hits", "failures", "retries", "missing", "latency", "batch_seconds")
#: the run's totals kept for :meth:`JudgeRewards.summary`
TOTALS = (
    "batches",
    "judged",
    "failures",
    "requests",
    "cache_hits",
    "retries",
    "failing_batches",
    "longest_failing_streak",
)


def delimit(text: str) -> str:
    """The policy's completion as a delimited block of untrusted data for the judge prompt.

    The markers carry an id derived from the text (sha256), so a completion cannot forge its own end marker and
    "close" the block to write instructions after it; being a function of the text, it keeps requests (and cache
    keys) deterministic. The shipped templates tell the judge that what is between the markers is data to grade,
    never instructions (``docs/judge.md``, "Reward hacking").
    """
    tag = "UNTRUSTED_RESPONSE_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"<<<{tag}\n{text}\n{tag}>>>"


def failure_value(policy: Any) -> float | None:
    """``judge_failure`` -> the value a failed judgment gets: ``"missing"`` (None: left out of the statistics, so
    the group mean is imputed) or a penalty in [0, 1] (the normalised reward scale); else a one-line ValueError."""
    if policy == "missing" or policy is None:
        return None
    if isinstance(policy, str):
        try:
            policy = float(policy)
        except ValueError:
            policy = None
    if is_real(policy) and 0 <= policy <= 1:
        return float(policy)
    raise ValueError(f"judge_failure={policy!r} is invalid; allowed: 'missing' or a penalty value in [0, 1]")


class JudgeOutageError(RuntimeError):
    """The judge failed for more than ``judge_max_failure_rate`` of the samples of ``judge_failure_window`` judged
    batches in a row: the run stops (a reward wrapper must let it through, not score it as missing)."""


def outage_policy(max_failure_rate: Any, window: Any) -> tuple[float | None, int]:
    """``judge_max_failure_rate`` / ``judge_failure_window`` checked: ``(rate or None, window)``; else a one-line
    ValueError naming the option. The rate is a fraction in [0, 1): a batch whose failed fraction is above it counts
    towards the window (1 could never be exceeded); None (default) never stops the run."""
    if max_failure_rate is not None:
        if not is_real(max_failure_rate) or not 0 <= max_failure_rate < 1:
            raise ValueError(
                f"judge_max_failure_rate={max_failure_rate!r} is invalid; allowed: null (never stop) or a fraction "
                "in [0, 1) (stop when more than that fraction of a batch's judgments fail, judge_failure_window "
                "batches in a row)"
            )
        max_failure_rate = float(max_failure_rate)
    if not is_int(window) or window < 1:
        raise ValueError(f"judge_failure_window={window!r} is invalid; allowed: an int >= 1 (judged batches in a row)")
    return max_failure_rate, window


class JudgeRewards:
    """K reward functions (``reward_funcs``, one per ``scheme.dimensions``) sharing one judgment per sample.

    Args:
        scheme: :class:`~varpo.judge.schemes.ScoreScheme` or :class:`~varpo.judge.schemes.RubricScheme`.
        backend: :class:`~varpo.judge.backends.OpenAIBackend` or ``TransformersBackend``.
        template: a :class:`Template` or a shipped template name / YAML path.
        cache: SQLite file of replies (None: no disk cache).
        concurrency, timeout, retries, backoff, batch_timeout: see :class:`~varpo.judge.runner.JudgeRunner`.
        prefix: prepended to every reward name (``judge_`` avoids a clash with a rule-based reward's name).
        failure: what a failed judgment (no usable dimension: no reply, unparseable, ``{}``) scores in every
            dimension: ``"missing"`` (default; the estimators leave it out, so the sample gets its group's mean) or
            a penalty in [0, 1], so a completion that breaks the judge does not earn the mean.
        max_failure_rate, failure_window: stop with :class:`JudgeOutageError` when more than ``max_failure_rate``
            of a batch's judgments failed, ``failure_window`` judged batches in a row (None: never stop).
    """

    def __init__(
        self,
        scheme,
        backend,
        template: Template | str,
        *,
        cache: str | Path | None = None,
        concurrency: int = 8,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
        batch_timeout: float = 300.0,
        prefix: str = "",
        failure: str | float = "missing",
        max_failure_rate: float | None = None,
        failure_window: int = 10,
    ) -> None:
        self.scheme = scheme
        self.failure = failure_value(failure)
        self.max_failure_rate, self.failure_window = outage_policy(max_failure_rate, failure_window)
        self.backend = backend
        self.template = template if isinstance(template, Template) else load_template(template)
        builtin = BASE_FIELDS | scheme.fields
        self.template.check(builtin | {f for f in self.template.fields if f not in builtin})
        # Template fields that are neither built in nor the scheme's are dataset columns (e.g. $reference).
        self.row_fields = tuple(sorted(self.template.fields - builtin))
        self.columns = tuple(scheme.columns) + self.row_fields
        self.runner = JudgeRunner(backend, concurrency, timeout, retries, backoff, batch_timeout)
        self.cache = JudgeCache(cache, backend.identity) if cache else None
        self.prefix = prefix
        self._memo: dict[str, dict[str, float | None]] = {}
        self._pending = self._zero()
        self._warned_at = 0.0
        self.totals = dict.fromkeys(TOTALS, 0)  # the whole run's counts (summary); never reset
        self.first_error: str | None = None
        self._streak = 0  # judged batches in a row with more than max_failure_rate failed
        self.reward_funcs = [JudgedReward(self, d, prefix + d) for d in scheme.dimensions]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_memo"] = {}
        return state

    def describe(self) -> str:
        cache = f"cache {self.cache.path}" if self.cache is not None else "no cache"
        r = self.runner
        stop = (
            f"stop above {self.max_failure_rate:g} failed for {self.failure_window} batches"
            if self.max_failure_rate is not None
            else "never stops on failures"
        )
        return (
            f"{self.backend.describe()}, template {self.template.name}, {len(self.reward_funcs)} dimensions, "
            f"concurrency {r.concurrency}, timeout {r.timeout:g}s x {r.retries + 1} tries, batch deadline "
            f"{r.batch_timeout:g}s, {cache}, {stop}"
        )

    @staticmethod
    def _zero() -> dict[str, float]:
        return dict.fromkeys(METRICS, 0.0) | {"_batches": 0.0}

    # ------------------------------------------------------------------------------------------------------

    def _request(self, prompt: Any, completion: Any, row: Mapping[str, Any]):
        values, schema, context = self.scheme.request(row)
        fields = {"prompt": conversation_text(prompt), "completion": delimit(completion_text(completion)), **values}
        for name in self.row_fields:
            value = row.get(name)
            fields[name] = value if isinstance(value, str) else conversation_text(value) if value is not None else ""
        messages = self.template.render(fields)
        key = request_key(self.backend.identity, self.template.digest, [messages, schema])
        return key, messages, schema, context

    def judge(self, prompts: Sequence[Any], completions: Sequence[Any], rows: Sequence[Mapping[str, Any]]):
        """``[{dimension: value in [0, 1] or None}]`` for each sample; judges only what the memo lacks."""
        self.backend.check()
        n = len(completions)
        keys: list[str | None] = [None] * n
        todo: dict[str, tuple] = {}
        bad_rows = 0
        for i in range(n):
            try:
                key, messages, schema, context = self._request(
                    prompts[i] if prompts is not None else "", completions[i], rows[i]
                )
            except ValueError as err:  # malformed rubric etc.: this sample is missing, the batch goes on
                bad_rows += 1
                self._warn(f"judge: sample {i} cannot be judged: {err}")
                continue
            keys[i] = key
            if key not in self._memo and key not in todo:
                todo[key] = (messages, schema, context)
        if todo:
            failed, error = self._run(todo)
            self._pending["failures"] += bad_rows
            self._account(len(todo) + bad_rows, failed + bad_rows, error)
        memo = {k: self._memo[k] for k in keys if k is not None}
        self._memo = memo  # keep only this batch
        empty = dict.fromkeys(self.scheme.dimensions)
        return [memo[k] if k is not None else empty for k in keys]

    def _run(self, todo: dict[str, tuple]) -> tuple[int, str | None]:
        """Judge ``todo`` (cache first, then the runner) into the memo; returns (failed judgments, first error)."""
        start = time.monotonic()
        m = self._pending
        cached = self.cache.get_many(list(todo)) if self.cache is not None else {}
        results: dict[str, dict[str, float | None]] = {}
        for key, reply in cached.items():
            parsed = self._parse(reply, todo[key][2])
            if parsed is not None:  # an unusable cached reply (written by an older version) is asked again
                results[key] = parsed
        m["cache_hits"] += len(results)
        self.totals["cache_hits"] += len(results)
        send = [k for k in todo if k not in results]
        outcomes = self.runner.run([(todo[k][0], todo[k][1]) for k in send])
        store = []
        first_error = None
        failed = 0
        for key, outcome in zip(send, outcomes):
            m["retries"] += max(outcome.attempts - 1, 0)
            self.totals["retries"] += max(outcome.attempts - 1, 0)
            m["latency"] += outcome.latency
            parsed = None if outcome.reply is None else self._parse(outcome.reply, todo[key][2])
            if parsed is None:  # a failure: counted, never cached (asked again next time)
                m["failures"] += 1
                failed += 1
                first_error = first_error or outcome.error or f"no usable dimension in reply {outcome.reply[:80]!r}"
                parsed = dict.fromkeys(self.scheme.dimensions, self.failure)
            else:
                store.append((key, outcome.reply))
            results[key] = parsed
        if self.cache is not None and store:
            try:
                self.cache.put_many(store)
            except Exception as err:  # noqa: BLE001 - a full disk must not stop training; the replies are in memory
                self._warn(f"judge cache write failed ({type(err).__name__}: {err}); continuing without it")
        m["requests"] += len(send)
        self.totals["requests"] += len(send)
        m["missing"] += sum(v is None for r in results.values() for v in r.values())
        m["batch_seconds"] += time.monotonic() - start
        m["_batches"] += 1
        if first_error:
            scored = "missing" if self.failure is None else f"{self.failure:g} (judge_failure)"
            self._warn(
                f"judge: {int(m['failures'])} failed judgment(s) this batch (scored {scored}); e.g. {first_error}"
            )
        self._memo.update(results)
        return failed, first_error

    def _account(self, judged: int, failed: int, error: str | None) -> None:
        """Add one judged batch to the run's totals and apply the outage policy: raise :class:`JudgeOutageError`
        when this batch is the ``failure_window``-th in a row with more than ``max_failure_rate`` failed."""
        t = self.totals
        t["batches"] += 1
        t["judged"] += judged
        t["failures"] += failed
        if failed:
            t["failing_batches"] += 1
            self.first_error = self.first_error or error
        rate = self.max_failure_rate
        self._streak = self._streak + 1 if rate is not None and failed > rate * judged else 0
        t["longest_failing_streak"] = max(t["longest_failing_streak"], self._streak)
        if rate is not None and self._streak >= self.failure_window:
            raise JudgeOutageError(
                f"the judge failed more than {rate:g} of the judgments in each of the last {self._streak} judged "
                f"batches (judge_max_failure_rate={rate:g}, judge_failure_window={self.failure_window}); "
                f"{t['failures']}/{t['judged']} failed this run; last error: {error or self.first_error}"
            )

    def summary(self) -> dict[str, Any]:
        """The whole run's judge counts (``judge_summary/*`` in ``train_summary.json``): judged batches and samples
        (cache hits included), failed judgments, their fraction, requests sent, cache hits, retries, batches with a
        failure, the longest run of batches above ``judge_max_failure_rate`` and the first error seen."""
        t = self.totals
        out: dict[str, Any] = dict(t)
        if t["judged"]:
            out["failure_rate"] = t["failures"] / t["judged"]
        if self.first_error:
            out["first_error"] = self.first_error
        return out

    def summary_line(self) -> str:
        """:meth:`summary` as the one line logged at the end of a run."""
        t = self.totals
        if not t["batches"]:
            return f"judge {self.backend.identity}: no batch judged"
        line = (
            f"judge {self.backend.identity}: {t['failures']}/{t['judged']} judgments failed "
            f"({t['failures'] / max(t['judged'], 1):.0%}) over {t['batches']} batches ({t['failing_batches']} with a "
            f"failure); {t['requests']} requests, {t['cache_hits']} cache hits, {t['retries']} retries"
        )
        return line + (f"; first error: {self.first_error}" if self.first_error else "")

    def _parse(self, reply: str, context: Any) -> dict[str, float | None] | None:
        """The reply's values, or None when it gives no usable dimension (not an object, ``{}``, every value bad).
        The reply is untrusted input: any problem reading it makes it a failure, never an exception."""
        try:
            values = self.scheme.scores(json_object(reply), context)
        except (ReplyError, ValueError, TypeError, KeyError, OverflowError, RecursionError):
            return None
        if not isinstance(values, dict) or all(v is None for v in values.values()):
            return None
        return values

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at > 30.0:  # at most one warning per 30 s: an outage must not flood the log
            self._warned_at = now
            logger.warning(message)

    def pop_metrics(self) -> dict[str, float]:
        """Judge metrics since the last call: counts summed, ``latency`` = mean seconds per sent request,
        ``batch_seconds`` = mean wall time of a judged batch. A mean over nothing (no request sent: everything came
        from the cache; no batch judged) is left out: a logged 0.0 would read as an instant judge."""
        m, self._pending = self._pending, self._zero()
        batches = m.pop("_batches")
        means = {"latency": m.pop("latency"), "batch_seconds": m.pop("batch_seconds")}
        if m["requests"]:
            m["latency"] = means["latency"] / m["requests"]
        if batches:
            m["batch_seconds"] = means["batch_seconds"] / batches
        return {f"judge/{k}": v for k, v in m.items()}

    def log_to(self, log_metric) -> None:
        """Send :meth:`pop_metrics` through TRL's ``log_metric`` hook (only when a batch was judged)."""
        if self._pending["_batches"]:
            for name, value in self.pop_metrics().items():
                log_metric(name, value)


class JudgedReward:
    """One dimension of a :class:`JudgeRewards`: a TRL reward function with values in [0, 1] (None: missing).

    Duck-types :class:`varpo.tasks.RewardFn` (``score``, ``satisfied``, ``columns``, ``low``/``high``) so tasks,
    evaluation and the verl reward function use it like a rule-based reward. A sample *satisfies* the dimension at
    the top score (1.0).
    """

    low, high = 0.0, 1.0
    success = None
    optional: tuple[str, ...] = ()

    def __init__(self, judge: JudgeRewards, dimension: str, name: str) -> None:
        self.judge = judge
        self.dimension = dimension
        self.__name__ = name
        self.columns = judge.columns

    def __repr__(self) -> str:
        return f"JudgedReward({self.__name__!r}, judge={self.judge.backend.identity!r})"

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None, **kwargs: Any):
        if completions is None:
            raise TypeError(f"reward {self.__name__!r} needs completions=")
        n = len(completions)
        missing = [c for c in self.columns if kwargs.get(c) is None]
        if missing:
            raise KeyError(f"reward {self.__name__!r} needs dataset column(s) {missing}")
        rows = [{c: kwargs[c][i] for c in self.columns} for i in range(n)]
        values = self.judge.judge(prompts if prompts is not None else [""] * n, completions, rows)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            self.judge.log_to(log_metric)
        return [v[self.dimension] for v in values]

    def score(self, completion: Any, /, **row: Any) -> float | None:
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise KeyError(f"reward {self.__name__!r} needs dataset column(s) {missing}; got {sorted(row)}")
        return self.judge.judge([row.get("prompt", "")], [completion], [row])[0][self.dimension]

    def satisfied(self, value: float | None, completion: Any, /, **row: Any) -> bool | None:
        return None if value is None else value >= self.high - 1e-9
