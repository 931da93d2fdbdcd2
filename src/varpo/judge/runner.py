"""Run a batch of judge requests: bounded concurrency, per-request timeout, retries with backoff, a batch deadline.

The requests run on one private asyncio event loop in a daemon thread (started on first use, restarted in a forked
child), so a synchronous caller (a TRL reward function, a verl reward worker, a Jupyter cell that already runs a
loop) just blocks on :meth:`JudgeRunner.run`. Per request:

* at most ``concurrency`` requests are in flight at once (an ``asyncio.Semaphore`` held for the duration of the
  HTTP call, not during backoff sleeps);
* each attempt is cancelled after ``timeout`` seconds;
* a failed attempt (timeout, connection error, HTTP 5xx/408/409/429, malformed response) is retried up to
  ``retries`` times after ``backoff * 2**attempt`` seconds with jitter (x uniform[½, 1]), or after the server's
  ``Retry-After`` when it asks for longer (capped at :data:`MAX_RETRY_AFTER`); a
  :class:`~varpo.judge.backends.PermanentError` (other 4xx) is not retried.

The whole batch is bounded by ``batch_timeout`` seconds: requests still running then are cancelled and count as
failed, so an unreachable or stalled judge costs each training step at most that long and never hangs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import math
import os
import random
import threading
import time
from dataclasses import dataclass

from varpo.checks import is_real
from varpo.judge.backends import PermanentError

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """One request's result: the reply text, or None and the last error."""

    reply: str | None
    error: str | None = None
    attempts: int = 0
    latency: float = 0.0  # seconds from the first attempt to the result


class _LoopThread:
    """One event loop in a daemon thread per process."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid() or not cls._loop.is_running():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                threading.Thread(target=serve, name="varpo-judge-loop", daemon=True).start()
                started.wait()
                cls._loop, cls._pid = loop, os.getpid()
            return cls._loop


class JudgeRunner:
    def __init__(
        self,
        backend,
        concurrency: int = 8,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
        batch_timeout: float = 300.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"judge_concurrency={concurrency} is invalid; allowed: >= 1")
        # NaN passes every comparison (each judgment then failed silently) and inf overflowed asyncio later
        for name, value, low in (
            ("judge_timeout", timeout, 0.0),
            ("judge_batch_timeout", batch_timeout, 0.0),
            ("judge_backoff", backoff, None),
        ):
            if not is_real(value) or (value <= low if low is not None else value < 0):
                allowed = "a finite number of seconds > 0" if low is not None else "a finite number of seconds >= 0"
                raise ValueError(f"{name}={value!r} is invalid; allowed: {allowed}")
        if retries < 0:
            raise ValueError(f"judge_retries={retries!r} is invalid; allowed: >= 0")
        self.backend = backend
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.batch_timeout = float(batch_timeout)

    def run(self, requests: list[tuple[list[dict], dict | None]]) -> list[Outcome]:
        """One :class:`Outcome` per ``(messages, json schema)`` request, in order; never raises for judge failures."""
        if not requests:
            return []
        future = asyncio.run_coroutine_threadsafe(self._batch(requests), _LoopThread.get())
        try:
            # The coroutine enforces the deadline itself; the margin only covers a loop that stopped responding.
            return future.result(timeout=self.batch_timeout + 10.0)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError) as err:
            future.cancel()
            return [Outcome(None, f"batch deadline: {type(err).__name__}") for _ in requests]

    async def _batch(self, requests) -> list[Outcome]:
        start = time.monotonic()
        semaphore = asyncio.Semaphore(self.concurrency)
        tasks = [asyncio.create_task(self._one(semaphore, messages, schema)) for messages, schema in requests]
        done, pending = await asyncio.wait(tasks, timeout=self.batch_timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
            logger.warning(
                "judge: %d/%d requests cut off by judge_batch_timeout=%gs", len(pending), len(tasks), self.batch_timeout
            )
        out = []
        for task in tasks:
            if task in done and not task.cancelled() and task.exception() is None:
                out.append(task.result())
            else:  # its latency is the time it ran before the cut (not 0: that would read as an instant reply)
                error = f"cut off after judge_batch_timeout={self.batch_timeout:g}s"
                out.append(Outcome(None, error, self.retries + 1, time.monotonic() - start))
        return out

    async def _one(self, semaphore: asyncio.Semaphore, messages: list[dict], schema: dict | None) -> Outcome:
        start = time.monotonic()
        error = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                async with semaphore:
                    reply = await asyncio.wait_for(self.backend.complete(messages, schema, self.timeout), self.timeout)
                return Outcome(reply, None, attempt + 1, time.monotonic() - start)
            except PermanentError as err:
                return Outcome(None, str(err), attempt + 1, time.monotonic() - start)
            except (TimeoutError, asyncio.TimeoutError):
                error, wait = f"timed out after judge_timeout={self.timeout:g}s", None
            except Exception as err:  # noqa: BLE001 - any transport/server error is a failed attempt, never fatal
                error, wait = f"{type(err).__name__}: {str(err)[:200]}", retry_after(err)
            if attempt < self.retries:
                await asyncio.sleep(retry_delay(self.backoff, attempt, wait))
        return Outcome(None, error, self.retries + 1, time.monotonic() - start)


#: the longest ``Retry-After`` honoured (seconds): a server asking for more is waited on this long, then retried (the
#: batch deadline bounds the whole wait anyway).
MAX_RETRY_AFTER = 60.0


def retry_after(err: BaseException) -> float | None:
    """The seconds a server asked to wait (HTTP ``Retry-After``: delta-seconds or an HTTP date) on the error's
    response, if any (``openai.APIStatusError`` carries the ``httpx`` response); None otherwise."""
    headers = getattr(getattr(err, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None and hasattr(headers, "get") else None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER) if math.isfinite(seconds) else None


def retry_delay(backoff: float, attempt: int, server_wait: float | None = None) -> float:
    """Seconds before the next attempt: exponential backoff ``backoff * 2**attempt`` with jitter (uniform in
    [½, 1] of it, so many samples failing together do not retry in lock-step), and never less than the server's
    ``Retry-After``."""
    delay = backoff * 2**attempt * random.uniform(0.5, 1.0)
    return max(delay, server_wait or 0.0)
