"""Judged rewards: K scored dimensions (or rubric axes) from ONE judge call per sample, as K TRL reward functions.

    from varpo.judge import JudgeRewards, OpenAIBackend, ScoreScheme, parse_dimensions
    judge = JudgeRewards(ScoreScheme(parse_dimensions(["quality", "conciseness"])),
                         OpenAIBackend("http://127.0.0.1:8000/v1", "judge-model"), "tldr", cache="judge.sqlite")
    judge.reward_funcs          # [quality, conciseness]: values in [0, 1], None where the judgment failed

Modules: :mod:`~varpo.judge.judge` (the shared judgment and the reward functions), :mod:`~varpo.judge.schemes`
(scores vs rubric criteria, normalisation), :mod:`~varpo.judge.backends` (OpenAI-compatible endpoint,
transformers), :mod:`~varpo.judge.runner` (concurrency, timeouts, retries, batch deadline),
:mod:`~varpo.judge.cache` (SQLite), :mod:`~varpo.judge.parse` (strict JSON), :mod:`~varpo.judge.templates`
(shipped prompt files), :mod:`~varpo.judge.devserver` (a localhost test server). See docs/judge.md.
"""

from varpo.judge.backends import OpenAIBackend, PermanentError, TransformersBackend, make_backend
from varpo.judge.cache import JudgeCache
from varpo.judge.judge import JudgedReward, JudgeOutageError, JudgeRewards
from varpo.judge.options import JudgeOptions
from varpo.judge.runner import JudgeRunner
from varpo.judge.schemes import HEALTHBENCH_AXES, Dimension, RubricScheme, ScoreScheme, parse_dimensions, parse_rubric
from varpo.judge.templates import Template, load_template

__all__ = [
    "HEALTHBENCH_AXES",
    "Dimension",
    "JudgeCache",
    "JudgeOptions",
    "JudgeOutageError",
    "JudgeRewards",
    "JudgeRunner",
    "JudgedReward",
    "OpenAIBackend",
    "PermanentError",
    "RubricScheme",
    "ScoreScheme",
    "Template",
    "TransformersBackend",
    "load_template",
    "make_backend",
    "parse_dimensions",
    "parse_rubric",
]
