"""Tool calling scored like ToolRL: `correctness` (tool names, parameter keys and values) and `format`.

Response format (ToolRL, Qian et al. 2025, arXiv 2504.13958):

    <think> short reasoning </think>
    <tool_call>
    {"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}
    </tool_call>

one JSON object per line inside `<tool_call>`, and/or `<response> text </response>` after the think block.
The rules themselves live in `toolrl_rules.py` (a port of the official `rlla.py`).

Rewards, in column order:
* `correctness` ∈ [−3, 3] by default (ToolRL's own range, `correctness_range="toolrl"`), or [0, 1]
  (`"unit"`, the affine map (r + 3) / 6). A ground truth without a tool call scores the neutral midpoint
  (0.0, or 0.5 in unit range) whatever the completion, as in ToolRL.
* `format` ∈ {0, 1}.

Data: `generate()` builds short synthetic requests over a small typed catalogue (for warm-starting and training
a tiny model on CPU); `load()` reads ToolRL's verl parquet and SFT JSON layouts, and BFCL question files. Both live
in :mod:`varpo.tasks.toolcall_data` (catalogue, generator, loaders); their names are importable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from varpo.tasks.base import RewardFn, Task
from varpo.tasks.io import to_dataset
from varpo.tasks.toolcall_data import (
    CATALOGUE,
    CHORES,
    CITIES,
    DAYS,
    FORMAT_HINT,
    MESSAGES,
    NAMES,
    NO_TOOL,
    PHRASES,
    RESTAURANTS,
    SONGS,
    SYMBOLS,
    TOOLRL_THINK,
    Param,
    Tool,
    generate_records,
    load_records,
    render_completion,
)
from varpo.tasks.toolrl_rules import correctness_fraction, format_ok

__all__ = [
    "CATALOGUE",
    "CHORES",
    "CITIES",
    "CORRECTNESS_RANGES",
    "DAYS",
    "FORMAT_HINT",
    "MESSAGES",
    "NAMES",
    "NO_TOOL",
    "PHRASES",
    "RESTAURANTS",
    "SONGS",
    "SYMBOLS",
    "TOOLRL_THINK",
    "Param",
    "Tool",
    "ToolCallTask",
    "correctness",
    "correctness_reward",
    "format",
    "render_completion",
]

CORRECTNESS_RANGES: dict[str, tuple[float, float]] = {
    "toolrl": (-3.0, 3.0),  # the official default
    "-3_3": (-3.0, 3.0),
    "unit": (0.0, 1.0),
    "0_1": (0.0, 1.0),
}

# ---------------------------------------------------------------------------------------------------------------
# Rewards


def _score_correctness(text: str, ground_truth: str, correctness_range: str = "toolrl") -> float:
    low, high = CORRECTNESS_RANGES[correctness_range]
    fraction = correctness_fraction(text.strip(), ground_truth)
    if fraction is None:  # GT calls no tool: ToolRL's neutral 0.0, i.e. the middle of the range
        return (low + high) / 2
    return low + (high - low) * fraction


def _correctness_success(value: float, text: str, ground_truth: str) -> bool:
    """Exact tool calls; for a GT without a tool call (where the reward is neutral), abstaining from `<tool_call>`.

    The abstention test is the rule ToolRL left commented out in `customize_correctness_reward_tool`; it is used
    only to count successes in `evaluate`, never as a reward.
    """
    fraction = correctness_fraction(text.strip(), ground_truth)
    if fraction is None:
        return "<tool_call>" not in text and "</tool_call>" not in text
    return fraction >= 1.0 - 1e-9


def _score_format(text: str, ground_truth: str) -> float:
    return 1.0 if format_ok(text.strip(), ground_truth) else 0.0


def correctness_reward(correctness_range: str = "toolrl") -> RewardFn:
    """The `correctness` reward with the given range ("toolrl"/"-3_3" = [−3, 3], "unit"/"0_1" = [0, 1])."""
    if correctness_range not in CORRECTNESS_RANGES:
        raise ValueError(f"correctness_range must be one of {sorted(CORRECTNESS_RANGES)}, got {correctness_range!r}")
    low, high = CORRECTNESS_RANGES[correctness_range]
    return RewardFn(
        "correctness",
        _score_correctness,
        columns=("ground_truth",),
        low=low,
        high=high,
        success=_correctness_success,
        correctness_range=correctness_range,
    )


correctness = correctness_reward("toolrl")
# Named `format` on purpose (shadowing the builtin in this module): the name is the reward's stable key.
format = RewardFn("format", _score_format, columns=("ground_truth",), low=0.0, high=1.0)

# ---------------------------------------------------------------------------------------------------------------
# The task


@dataclass
class ToolCallTask(Task):
    """ToolRL-scored tool calling. Options (keyword arguments of `get_task("toolcall", ...)`):"""

    correctness_range: str = "toolrl"
    """"toolrl" (= "-3_3", ToolRL's [−3, 3]) or "unit" (= "0_1", [0, 1] by the affine map (r + 3) / 6)."""
    two_call_frac: float = 0.15
    """Generator: fraction of requests that need two tool calls."""
    no_tool_frac: float = 0.15
    """Generator: fraction of requests no tool serves (gold reply: `<response>` only)."""
    corrupt_frac: float = 0.0
    """Generator: fraction of gold completions given one format or value error (exactly round(frac·n) of them;
    the `corruption` column names it). The `ground_truth` column always stays correct."""
    tools_in_prompt: int = 3
    """Generator: tools listed in each prompt (the needed ones plus distractors)."""
    instructions: bool = False
    """Generator: prepend a one-paragraph description of the output format to each prompt."""

    name: str = field(default="toolcall", init=False)

    def __post_init__(self) -> None:
        self._reward_funcs = [correctness_reward(self.correctness_range), format]
        for knob in ("two_call_frac", "no_tool_frac", "corrupt_frac"):
            if not 0.0 <= getattr(self, knob) <= 1.0:
                raise ValueError(f"{knob} must be in [0, 1], got {getattr(self, knob)}")
        if self.two_call_frac + self.no_tool_frac > 1.0:
            raise ValueError("two_call_frac + no_tool_frac must be at most 1")
        if not 2 <= self.tools_in_prompt <= len(CATALOGUE):
            raise ValueError(f"tools_in_prompt must be in [2, {len(CATALOGUE)}], got {self.tools_in_prompt}")

    @property
    def reward_funcs(self) -> list[RewardFn]:
        return list(self._reward_funcs)

    def verl_ground_truth(self, row: dict) -> str:
        return row["ground_truth"]

    def generate(self, n: int, seed: int = 0, split: str = "train", chat: bool = False):
        """`n` requests with gold replies (:func:`varpo.tasks.toolcall_data.generate_records`). Columns: prompt,
        completion, ground_truth, kind ("single", "multi" or "none"), corruption."""
        return to_dataset(
            generate_records(
                n,
                seed,
                split,
                chat,
                two_call_frac=self.two_call_frac,
                no_tool_frac=self.no_tool_frac,
                corrupt_frac=self.corrupt_frac,
                tools_in_prompt=self.tools_in_prompt,
                instructions=self.instructions,
            )
        )

    def load(self, path: str, layout: str = "auto", chat: bool | None = None, answers: str | None = None):
        """Examples from a ToolRL/BFCL file, layouts "verl", "sft", "bfcl" or "auto"
        (:func:`varpo.tasks.toolcall_data.load_records`). Same columns as `generate` (corruption is "")."""
        return to_dataset(load_records(path, layout, chat, answers))
