"""ToolRL's rules (rlla.py) on hand-computed cases: format per ground-truth type, correctness partial credit."""

import json

import pytest

from varpo.tasks.toolrl_rules import (
    correctness_fraction,
    format_ok,
    match_score,
    parse_ground_truth,
    tool_call_fraction,
)

GT_TOOL = '<think> x </think>\n<tool_call>\n{"name": "f", "parameters": {"a": 1, "b": "x"}}\n</tool_call>'
GT_RESP = "<think> x </think>\n<response> hi </response>"
GT_BOTH = '<think> x </think>\n<tool_call>\n{"name": "f", "parameters": {}}\n</tool_call>\n<response> ok </response>'


def call(name, **params):
    return {"name": name, "parameters": params}


def reply(*calls, think="t"):
    return f"<think> {think} </think>\n<tool_call>\n" + "\n".join(json.dumps(c) for c in calls) + "\n</tool_call>"


def test_match_score_is_multiset_jaccard():
    assert match_score(["a", "b"], ["a", "b"]) == 1.0
    assert match_score(["a", "b"], ["b", "a"]) == 1.0  # same multiset, different order
    assert match_score(["a"], []) == 0.0
    assert match_score([], []) == 1.0  # equal lists
    assert match_score(["a", "a", "b"], ["a", "c"]) == pytest.approx(1 / 4)  # |∩|=1, 3 + 2 - 1 = 4


@pytest.mark.parametrize(
    ("response", "ok"),
    [
        (reply(call("f", a=1)), True),
        ("<think> t </think>\n<tool_call>\nX\n</tool_call>", True),  # format does not look inside the block
        ("<think> t </think><tool_call>\nX\n</tool_call>", False),  # missing newline after </think>
        ("<think> t </think>\n<tool_call>X\n</tool_call>", False),  # missing newline after <tool_call>
        ("<think> t </think>\n<tool_call>\nX\n</tool_call>\n<tool_call>\nX\n</tool_call>", False),  # tag twice
        ("<think> t </think>\n<tool_call>\nX\n</tool_call> trailing", False),
        ("<tool_call>\nX\n</tool_call>", False),  # no think
        ("<think> t </think>\n<response> r </response>", False),  # wrong structure for this GT
    ],
)
def test_format_tool_only_ground_truth(response, ok):
    assert format_ok(response, GT_TOOL) is ok


def test_format_response_and_both_and_neither():
    assert format_ok("<think> t </think>\n<response> r </response>", GT_RESP)
    assert not format_ok("<think> t </think>\n<response> r </response><response>", GT_RESP)
    assert not format_ok(reply(call("f")), GT_RESP)
    both = '<think> t </think>\n<tool_call>\n{"name": "f", "parameters": {}}\n</tool_call>\n<response> r </response>'
    assert format_ok(both, GT_BOTH)
    assert not format_ok(reply(call("f")), GT_BOTH)  # response part missing
    assert format_ok("<think> only </think>", "<think> gt </think>")
    assert not format_ok("<think> only </think> extra", "<think> gt </think>")


def test_format_regex_anchor_allows_one_trailing_newline_like_re_search():
    # `$` without MULTILINE also matches before a final "\n"; the original behaves the same (callers strip anyway).
    assert format_ok(reply(call("f")) + "\n", GT_TOOL)


def test_correctness_exact_match_is_full():
    assert correctness_fraction(reply(call("f", a=1, b="x")), GT_TOOL) == 1.0


def test_correctness_partial_credit_by_hand():
    # GT: f(a=1, b="x"). S_max = 1 + (1 + 2) = 4.
    # Prediction f(a=1, b="y"): names match (1) + keys match (1) + one equal value (1) = 3 -> 3/4.
    assert correctness_fraction(reply(call("f", a=1, b="y")), GT_TOOL) == pytest.approx(3 / 4)
    # f(a=1): names 1 + keys Jaccard 1/2 + one value 1 = 2.5 -> 2.5/4.
    assert correctness_fraction(reply(call("f", a=1)), GT_TOOL) == pytest.approx(2.5 / 4)
    # g(a=1, b="x"): names 0, no same-name call -> 0.
    assert correctness_fraction(reply(call("g", a=1, b="x")), GT_TOOL) == 0.0
    # f twice: names Jaccard 1/2; the best f matches fully (1 + 2) -> 3.5/4.
    assert correctness_fraction(reply(call("f", a=1, b="x"), call("f", a=2)), GT_TOOL) == pytest.approx(3.5 / 4)


def test_correctness_two_gold_calls_greedy_matching():
    gt = [call("f", a=1), call("f", a=2)]
    # Each gold call takes its best unused same-name prediction: a=1 -> (1 + 1), a=2 -> keys only (1 + 0).
    pred = [call("f", a=1), call("f", a=3)]
    s_max = 1 + 2 * (1 + 1)
    assert tool_call_fraction(gt, pred) == pytest.approx((1 + 2 + 1) / s_max)
    # Order does not matter for the score (lists differ, but every part matches).
    assert tool_call_fraction(gt, list(reversed(gt))) == pytest.approx(1.0)


def test_correctness_python_equality_of_values_as_in_the_original():
    gt = [call("f", a=1)]
    assert tool_call_fraction(gt, [call("f", a=1.0)]) == pytest.approx(1.0)  # 1 == 1.0
    assert tool_call_fraction(gt, [call("f", a=True)]) == pytest.approx(1.0)  # True == 1 in Python
    assert tool_call_fraction(gt, [call("f", a="1")]) == pytest.approx(2 / 3)  # "1" != 1


@pytest.mark.parametrize(
    "response",
    [
        "<think> t </think>",  # no tool call at all
        "<think> t </think>\n<tool_call>\n{bad json}\n</tool_call>",
        "<think> t </think>\n<tool_call>\n[1, 2]\n</tool_call>",  # not an object
        '<think> t </think>\n<tool_call>\n{"parameters": {}}\n</tool_call>',  # no name
        '<think> t </think>\n<tool_call>\n{"name": "f"}\n</tool_call>',  # same name, no parameters
        '<think> t </think>\n<tool_call>\n{"name": "f", "parameters": [1]}\n</tool_call>',
        '<think> t </think>\n<tool_call>\n{"name": ["f"], "parameters": {}}\n</tool_call>',  # unhashable name
        "<think> t </think>\n<tool_call>\n\n\n</tool_call>",
        "<think> t </think>\n<tool_call>\n" + "[" * 15000 + "\n</tool_call>",  # RecursionError in json
        "<tool_call>" + " " * 30000 + "</tool_call>",  # over MAX_CHARS
    ],
)
def test_correctness_malformed_predictions_get_the_minimum(response):
    assert correctness_fraction(response, GT_TOOL) == 0.0


def test_correctness_missing_parameters_on_an_unmatched_name_is_not_an_error():
    # The original reads "parameters" only for same-name candidates, so this partial prediction is scored.
    pred = reply(call("f", a=1, b="x"), {"name": "g"})
    assert correctness_fraction(pred, GT_TOOL) == pytest.approx((0.5 + 3) / 4)


def test_ground_truth_without_tool_call_is_not_scored():
    assert parse_ground_truth(GT_RESP) is None
    assert correctness_fraction(reply(call("f")), GT_RESP) is None
    assert parse_ground_truth(GT_TOOL) == [call("f", a=1, b="x")]
