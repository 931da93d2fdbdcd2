"""The ``judge_*`` options shared by judged tasks (``task_options`` in a run config, keyword options of
``get_task``), and the :class:`~varpo.judge.judge.JudgeRewards` they build.

    task: rubric
    task_options:
      judge_base_url: http://127.0.0.1:8000/v1     # any OpenAI-compatible chat-completions endpoint
      judge_model: Qwen/Qwen2.5-7B-Instruct
      judge_api_key_env: OPENAI_API_KEY           # the key is read from this variable, never from the config
      judge_concurrency: 32
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class JudgeOptions:
    """Judge settings (a dataclass mixin: judged tasks inherit these fields)."""

    judge_backend: str = "openai"  # "openai" (OpenAI-compatible endpoint) or "transformers" (in process)
    judge_base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    judge_model: str | None = None  # served model name (openai) or a model path / hub id (transformers)
    judge_api_key_env: str = "OPENAI_API_KEY"
    judge_template: str | None = None  # a shipped template name or a YAML path; None: the task's default
    judge_concurrency: int = 8  # requests in flight at once
    judge_timeout: float = 60.0  # seconds per request attempt
    judge_retries: int = 2  # extra attempts after a failed one (backoff * 2**attempt seconds apart)
    judge_backoff: float = 0.5
    judge_batch_timeout: float = 300.0  # seconds for a whole batch; what is still running then is missing
    judge_cache: str | None = "auto"  # SQLite file; "auto": $VARPO_CACHE/judge/judgments.sqlite; None: off
    judge_temperature: float = 0.0
    judge_max_tokens: int = 512
    judge_json_schema: bool = True  # send response_format json_schema (structured outputs)
    judge_prefix: str = ""  # prepended to the judged reward names
    # a failed judgment (no usable dimension): "missing" (left out: the group mean is imputed) or a penalty in [0, 1]
    judge_failure: str | float = "missing"
    # stop the run (JudgeOutageError; exit 2 from the CLI) when more than this fraction of a batch's judgments fail,
    # judge_failure_window judged batches in a row; None: never stop (an outage only makes the rewards missing)
    judge_max_failure_rate: float | None = None
    judge_failure_window: int = 10

    def judge_cache_path(self) -> Path | None:
        if self.judge_cache in (None, "", "none", "off"):
            return None
        if self.judge_cache == "auto":
            from varpo import models

            return models.cache_root() / "judge" / "judgments.sqlite"
        return Path(self.judge_cache).expanduser()

    def build_judge(self, scheme, default_template: str):
        from varpo.judge.backends import make_backend
        from varpo.judge.judge import JudgeRewards

        backend = make_backend(
            self.judge_backend,
            base_url=self.judge_base_url,
            model=self.judge_model,
            api_key_env=self.judge_api_key_env,
            temperature=self.judge_temperature,
            max_tokens=self.judge_max_tokens,
            json_schema=self.judge_json_schema,
        )
        return JudgeRewards(
            scheme,
            backend,
            self.judge_template or default_template,
            cache=self.judge_cache_path(),
            concurrency=self.judge_concurrency,
            timeout=self.judge_timeout,
            retries=self.judge_retries,
            backoff=self.judge_backoff,
            batch_timeout=self.judge_batch_timeout,
            prefix=self.judge_prefix,
            failure=self.judge_failure,
            max_failure_rate=self.judge_max_failure_rate,
            failure_window=self.judge_failure_window,
        )
