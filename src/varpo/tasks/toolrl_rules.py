"""ToolRL's reward rules, ported line by line from the official grader.

Source: qiancheng0/ToolRL `verl/utils/reward_score/rlla.py` (identical in NVlabs/GDPO and Zhaolutuan/SAW):
`customize_format_reward_func`, `customize_correctness_reward_tool`, `compute_tool_call_reward`, `match_score`,
with the default environment (no REFINEDREWARD / COARSEREWARD / INTERMEDIATEREWARD / schedule variants).

What differs from the original, on purpose:
* The original extracts the reply from the decoded chat transcript and `.strip()`s it; here the completion text is
  the reply, and it is stripped the same way.
* Completions longer than `MAX_CHARS` get the minimum (format 0, correctness min) without being parsed, so every
  call runs in bounded time. Legitimate replies are far shorter (ToolRL trains with 1024-token responses).
* Format: the tag counts are checked *before* the regex. The result is the same (the original ANDs both), but the
  regex then sees at most one of each tool/response tag, which keeps its backtracking linear.
* The ground truth's structure (which tags the format rule requires) and its gold calls are read from the text
  after its `</think>` (all of it when there is none). The original reads the first `<tool_call>` anywhere, so a
  gold reply whose think block mentions the literal tag (a few rows of ToolRL's SFT data do) crashes its grader on
  `json.loads` of think text. Replies (model output) are read exactly as the original reads them.
* Exceptions inside the correctness computation (bad JSON, a non-dict call, a missing "name"/"parameters" key
  where the original reads it, unhashable names, RecursionError on deeply nested JSON) give the minimum, as the
  original's bare `except:` does.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

MAX_CHARS = 20_000

THINK_ONLY = re.compile(r"^<think>.*?</think>$", re.DOTALL)
RESPONSE_ONLY = re.compile(r"^<think>.*?</think>\n<response>.*?</response>$", re.DOTALL)
TOOL_ONLY = re.compile(r"^<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>$", re.DOTALL)
TOOL_AND_RESPONSE = re.compile(
    r"^<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>\n<response>.*?</response>$", re.DOTALL
)


def format_ok(response: str, ground_truth: str) -> bool:
    """ToolRL format rule: the structure the ground truth uses, each of its tags exactly once.

    * GT has `<response>` only: `^<think>.*?</think>\\n<response>.*?</response>$`
    * GT has `<tool_call>` only: `^<think>.*?</think>\\n<tool_call>\\n.*?\\n</tool_call>$`
    * GT has both: `^<think>.*?</think>\\n<tool_call>\\n.*?\\n</tool_call>\\n<response>.*?</response>$`
    * GT has neither: `^<think>.*?</think>$`

    (`re.search`, DOTALL; `response` is the stripped reply; the GT's tags are looked for after its think block.)
    """
    if len(response) > MAX_CHARS:
        return False
    answer = gold_answer_part(ground_truth)
    has_response, has_tool = "<response>" in answer, "<tool_call>" in answer

    def once(*tags: str) -> bool:
        return all(response.count(t) == 1 for t in tags)

    if has_response and not has_tool:
        return once("<response>", "</response>") and RESPONSE_ONLY.search(response) is not None
    if has_tool and not has_response:
        return once("<tool_call>", "</tool_call>") and TOOL_ONLY.search(response) is not None
    if has_tool and has_response:
        tags = ("<tool_call>", "</tool_call>", "<response>", "</response>")
        return once(*tags) and TOOL_AND_RESPONSE.search(response) is not None
    return THINK_ONLY.search(response) is not None


def tool_call_block(text: str) -> str:
    """The original's extraction: text after the first `<tool_call>`, up to the next `</tool_call>`, stripped."""
    return text.split("<tool_call>")[1].split("</tool_call>")[0].strip()


def gold_answer_part(ground_truth: str) -> str:
    """The ground truth after its think block (all of it without `</think>`): where the gold calls/response are."""
    _, closed, rest = ground_truth.partition("</think>")
    return rest if closed else ground_truth


def parse_ground_truth(ground_truth: str) -> list[Any] | None:
    """The gold tool calls (one JSON object per line after the think block), or None when the GT calls no tool.

    Raises (json.JSONDecodeError, ...) on a malformed gold block; loaders check every row with
    `check_ground_truth` first."""
    answer = gold_answer_part(ground_truth)
    if "<tool_call>" not in answer:
        return None
    return [json.loads(line) for line in tool_call_block(answer).split("\n")]


def check_ground_truth(ground_truth: Any) -> str | None:
    """Why `ground_truth` cannot grade replies (not a string, a gold call that is not `{"name": str,
    "parameters": {...}}` JSON on one line), or None when it can."""
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        return f"ground truth is {type(ground_truth).__name__ if not isinstance(ground_truth, str) else 'empty'}"
    try:
        calls = parse_ground_truth(ground_truth)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        return f"gold tool call is not JSON ({str(e).splitlines()[0][:60]})"
    for call in calls or ():
        if not (
            isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("parameters"), dict)
        ):
            return 'gold tool call is not {"name": str, "parameters": {...}}'
    return None


def match_score(list1: list, list2: list) -> float:
    """Multiset Jaccard |a ∩ b| / (|a| + |b| − |a ∩ b|); 1 if the lists are equal, 0 if either is empty."""
    if list1 == list2:
        return 1.0
    if not list1 or not list2:
        return 0.0
    count1, count2 = Counter(list1), Counter(list2)
    intersection = sum(min(count1[k], count2[k]) for k in count1.keys() & count2.keys())
    max_possible = len(list1) + len(list2) - intersection
    return intersection / max_possible if max_possible > 0 else 0.0


def tool_call_fraction(gt_tools: list[Any], pd_tools: list[Any]) -> float:
    """`compute_tool_call_reward` on the [0, 1] scale: score / S_max, and 1.0 on exact list equality.

    score = match_score(gt names, predicted names) + Σ over gold calls of the best unused predicted call with the
    same name, by match_score(param keys) + #{gold params whose predicted value is equal (Python `==`)};
    S_max = 1 + Σ_gold (1 + #params). Raises on malformed predictions (callers map that to the minimum).
    """
    if gt_tools == pd_tools:
        return 1.0
    gt_names = [tool["name"] for tool in gt_tools]
    pd_names = [tool["name"] for tool in pd_tools]
    score = match_score(list(gt_names), list(pd_names))
    local_max_possible = 1.0
    used_pd_indices: set[int] = set()
    for gt_tool in gt_tools:
        gt_name, gt_params = gt_tool["name"], gt_tool["parameters"]
        local_max_possible += 1.0 + len(gt_params)
        best_match_score, best_match_index = 0.0, -1
        for i, pd_tool in enumerate(pd_tools):
            if i in used_pd_indices or pd_tool["name"] != gt_name:
                continue
            pd_params = pd_tool["parameters"]
            param_score = match_score(list(gt_params.keys()), list(pd_params.keys()))
            correctness_score = sum(1.0 for k, v in gt_params.items() if k in pd_params and pd_params[k] == v)
            total_score = param_score + correctness_score
            if total_score > best_match_score:
                best_match_score, best_match_index = total_score, i
        if best_match_index >= 0:
            used_pd_indices.add(best_match_index)
            score += best_match_score
    return score / local_max_possible


def correctness_fraction(response: str, ground_truth: str) -> float | None:
    """ToolRL correctness on [0, 1] (0 = the original's min, 1 = its max); None when the GT calls no tool.

    The original returns a neutral 0.0 on its [−3, 3] scale for GT without `<tool_call>` (its abstain bonus is
    commented out); callers map None to the midpoint of their range.
    """
    gt_tools = parse_ground_truth(ground_truth)
    if gt_tools is None:
        return None
    if len(response) > MAX_CHARS or "<tool_call>" not in response or "</tool_call>" not in response:
        return 0.0
    try:
        pd_tools = [json.loads(line) for line in tool_call_block(response).split("\n")]
        return float(tool_call_fraction(gt_tools, pd_tools))
    except Exception:  # the original's bare `except:`: any malformed prediction scores the minimum
        return 0.0
