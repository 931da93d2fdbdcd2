"""Pieces shared by the judged tasks (`rubric`, `judge`): the rule-based `length` reward and chat/plain prompts."""

from __future__ import annotations

import re

from varpo.tasks.base import RewardFn

_WORDS = re.compile(r"\S+")


def _score_length(text: str, max_words: int = 300) -> float:
    """1 within ``max_words`` words, then ``max_words / words``: a rule-based reward next to the judged ones."""
    words = len(_WORDS.findall(text))
    return 1.0 if words <= max_words else max_words / words


def to_verl_with_prompt(ds, base_to_verl, data_source=None):
    """verl rows whose ``extra_info.prompt`` holds the conversation as text: verl's reward managers pass
    ``extra_info`` but not the prompt, and a judge must see what the response answers."""
    from varpo.text import conversation_text

    prompts = [conversation_text(p) for p in ds["prompt"]]
    out = base_to_verl(ds, data_source)
    return out.map(lambda row, i: {"extra_info": {**row["extra_info"], "prompt": prompts[i]}}, with_indices=True)


def length_reward(max_words: int) -> RewardFn:
    if max_words < 1:
        raise ValueError(f"max_words={max_words} is invalid; allowed: >= 1 (or null for no length reward)")
    return RewardFn("length", _score_length, columns=(), low=0, high=1, max_words=int(max_words))
