"""Judged rewards: K scored dimensions (or rubric axes) from ONE judge call per sample, as K TRL reward functions.

    from varpo.rewards import JudgeRewards, OpenAIBackend, ScoreScheme, parse_dimensions
    judge = JudgeRewards(ScoreScheme(parse_dimensions(["quality", "conciseness"])),
                         OpenAIBackend("http://127.0.0.1:8000/v1", "judge-model"), "tldr", cache="judge.sqlite")
    judge.reward_funcs          # [quality, conciseness]: values in [0, 1], None where the judgment failed

Modules: :mod:`~varpo.rewards.judge` (the shared judgment and the reward functions), :mod:`~varpo.rewards.schemes`
(scores vs rubric criteria, normalisation), :mod:`~varpo.rewards.backends` (OpenAI-compatible endpoint,
transformers), :mod:`~varpo.rewards.runner` (concurrency, timeouts, retries, batch deadline),
:mod:`~varpo.rewards.cache` (SQLite), :mod:`~varpo.rewards.parse` (strict JSON), :mod:`~varpo.rewards.templates`
(shipped prompt files), :mod:`~varpo.rewards.devserver` (a localhost test server). See docs/judge.md.
"""

from varpo.rewards.backends import OpenAIBackend, PermanentError, TransformersBackend, make_backend
from varpo.rewards.cache import JudgeCache
from varpo.rewards.judge import JudgedReward, JudgeOutageError, JudgeRewards
from varpo.rewards.options import JudgeOptions
from varpo.rewards.runner import JudgeRunner
from varpo.rewards.schemes import HEALTHBENCH_AXES, Dimension, RubricScheme, ScoreScheme, parse_dimensions, parse_rubric
from varpo.rewards.templates import Template, load_template

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
