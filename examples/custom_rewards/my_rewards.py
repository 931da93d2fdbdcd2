"""Two reward functions as a TRL user writes them for ``trl.GRPOTrainer(reward_funcs=[...])``.

TRL's signature: ``fn(prompts, completions, **kwargs) -> list[float | None]``; the dataset's other columns (here
``answer``) arrive as keyword lists, one value per completion.
"""


def correct(prompts, completions, answer, **kwargs):
    """1.0 when the completion contains the expected answer."""
    return [1.0 if str(a) in c else 0.0 for c, a in zip(completions, answer, strict=True)]


def concise(prompts, completions, **kwargs):
    """1.0 for a reply of at most 12 characters, falling linearly to 0 at 60."""
    return [max(0.0, min(1.0, (60 - len(c)) / 48)) for c in completions]
