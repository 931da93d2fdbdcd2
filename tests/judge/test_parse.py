"""Strict reply parsing, normalisation and the rubric formula against hand values; templates; the SQLite cache."""

from __future__ import annotations

import json
import math
import multiprocessing as mp

import pytest

from varpo.judge.cache import JudgeCache, request_key
from varpo.judge.parse import MAX_REPLY_CHARS, ReplyError, json_object, read_scores, read_verdicts
from varpo.judge.schemes import Dimension, RubricScheme, ScoreScheme, parse_dimensions, parse_rubric
from varpo.judge.templates import Template, load_template


@pytest.mark.parametrize(
    "reply",
    [
        '{"quality": {"score": 7}}',
        '```json\n{"quality": {"score": 7}}\n```',
        'Here is my judgment: {"quality": {"score": 7}} Hope this helps.',
        '  {"quality": 7}  ',
    ],
)
def test_json_object_accepts_plain_fenced_and_wrapped(reply):
    obj = json_object(reply)
    assert read_scores(obj, {"quality": (1, 10)}) == {"quality": 7.0}


@pytest.mark.parametrize(
    "reply", ["", "not json", "[1, 2]", '{"a": 1', "__import__('os').system('true')", None, "{" * 100_000]
)
def test_json_object_rejects_non_objects(reply):
    with pytest.raises(ReplyError):
        json_object(reply)


def test_oversized_reply_rejected_before_parsing():
    with pytest.raises(ReplyError, match="limit"):
        json_object('{"a": "' + "x" * MAX_REPLY_CHARS + '"}')


def test_scores_are_strict_per_dimension():
    ranges = {"a": (1, 10), "b": (1, 10), "c": (1, 10), "d": (1, 10), "e": (0, 1), "f": (1, 5)}
    obj = {"a": {"score": 10}, "b": 11, "c": True, "d": "7", "e": float("nan"), "f": {"score": 1}}
    assert read_scores(obj, ranges) == {"a": 10.0, "b": None, "c": None, "d": None, "e": None, "f": 1.0}


def test_score_normalisation_is_linear_to_unit_interval():
    scheme = ScoreScheme(parse_dimensions(["quality", "conciseness:0:4", {"name": "safety", "low": -2, "high": 2}]))
    values = scheme.scores({"quality": {"score": 1}, "conciseness": 3, "safety": {"score": 1}}, None)
    assert values == {"quality": 0.0, "conciseness": 0.75, "safety": 0.75}
    assert scheme.scores({"quality": 10}, None)["quality"] == 1.0
    assert scheme.scores({"quality": 10}, None)["conciseness"] is None


def test_verdicts_accept_booleans_and_yes_no_only():
    obj = {"c1": True, "c2": "No", "c3": {"met": "yes"}, "c4": 1, "c5": "maybe"}
    assert read_verdicts(obj, ["c1", "c2", "c3", "c4", "c5", "c6"]) == {
        "c1": True,
        "c2": False,
        "c3": True,
        "c4": None,
        "c5": None,
        "c6": None,
    }


RUBRIC = [
    {"criterion": "A", "points": 5, "tags": ["axis:accuracy"]},
    {"criterion": "B", "points": 3, "tags": ["axis:accuracy"]},
    {"criterion": "harmful", "points": -4, "tags": ["axis:accuracy"]},
    {"criterion": "C", "points": 2, "tags": ["axis:completeness", "level:example"]},
    {"criterion": "D", "points": 6, "tags": ["axis:completeness"]},
    {"criterion": "only bad", "points": -2, "tags": ["axis:context_awareness"]},
]


def _axis_scores(verdicts):
    scheme = RubricScheme(["accuracy", "completeness", "context_awareness", "instruction_following"])
    values, schema, context = scheme.request({"rubrics": RUBRIC})
    assert list(schema["properties"]) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert "[c3] (-4) harmful" in values["criteria"]
    return scheme.scores(dict(zip(["c1", "c2", "c3", "c4", "c5", "c6"], verdicts)), context)


def test_rubric_axis_scores_hand_values():
    # accuracy: (5 + 3 - 4) / 8 = 0.5; completeness: 6 / 8 = 0.75; context: nothing to earn -> None;
    # instruction_following: no criterion -> None.
    s = _axis_scores([True, True, True, False, True, True])
    assert s == {"accuracy": 0.5, "completeness": 0.75, "context_awareness": None, "instruction_following": None}
    # negative total clips at 0; all positive met and no harm = 1
    assert _axis_scores([False, False, True, True, True, False])["accuracy"] == 0.0
    assert _axis_scores([True, True, False, True, True, False])["accuracy"] == 1.0
    # a criterion without a valid verdict makes its axis (only) missing
    s = _axis_scores([True, "perhaps", False, True, True, False])
    assert s["accuracy"] is None and s["completeness"] == 1.0


@pytest.mark.parametrize(
    "bad, message",
    [
        ([{"criterion": "x", "points": 0, "tags": ["axis:accuracy"]}], "non-zero"),
        ([{"criterion": "x", "points": True, "tags": ["axis:accuracy"]}], "non-zero"),
        ([{"criterion": "", "points": 1, "tags": ["axis:accuracy"]}], "criterion"),
        ([{"criterion": "x", "points": 1, "tags": ["level:example"]}], "exactly one"),
        ([{"criterion": "x", "points": 1, "tags": ["axis:bedside_manner"]}], "not in the task's axes"),
        ([], "non-empty"),
        ("{oops", "not JSON"),
    ],
)
def test_parse_rubric_one_line_errors(bad, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_rubric(bad, ["accuracy"], where="data.jsonl: row 3")
    assert "data.jsonl: row 3" in str(err.value) and "\n" not in str(err.value)


def test_dimension_names_are_validated():
    with pytest.raises(ValueError, match="identifier"):
        Dimension("score")
    with pytest.raises(ValueError, match="duplicate"):
        parse_dimensions(["a", "a"])
    with pytest.raises(ValueError, match="range"):
        Dimension("a", 5, 5)


def test_shipped_templates_render_and_do_not_re_expand(tmp_path):
    tldr = load_template("tldr")
    assert tldr.fields == {"prompt", "reference", "completion", "dimensions", "output_format"}
    messages = tldr.render(
        {
            "prompt": "post",
            "reference": "ref",
            "completion": "$prompt ${reference}",
            "dimensions": "d",
            "output_format": "{}",
        }
    )
    assert "$prompt ${reference}" in messages[-1]["content"]  # substituted text is never expanded again
    assert load_template("rubric").fields == {"prompt", "completion", "criteria", "output_format"}
    path = tmp_path / "mine.yaml"
    path.write_text("user: 'Rate $completion against $gold'\n")
    assert load_template(str(path)) == Template(str(path), "Rate $completion against $gold")
    (tmp_path / "bad.yaml").write_text("user: 'cost $5'\n")
    with pytest.raises(ValueError, match=r"invalid '\$'"):
        load_template(str(tmp_path / "bad.yaml"))
    with pytest.raises(ValueError, match="neither a shipped template"):
        load_template("no_such_template")


def _write_then_die(path: str, n: int) -> None:
    import os

    cache = JudgeCache(path, "judge")
    cache.put_many([(f"k{i}", json.dumps({"i": i})) for i in range(n)])
    os._exit(0)  # no close(), no cleanup: as if killed right after the batch


def test_cache_roundtrip_keys_and_crash_safety(tmp_path):
    path = tmp_path / "c.sqlite"
    key = request_key("judge-a", "tmpl", [[{"role": "user", "content": "x"}], None])
    assert key != request_key("judge-b", "tmpl", [[{"role": "user", "content": "x"}], None])
    assert key != request_key("judge-a", "tmpl2", [[{"role": "user", "content": "x"}], None])
    proc = mp.get_context("fork").Process(target=_write_then_die, args=(str(path), 50))
    proc.start()
    proc.join(60)
    cache = JudgeCache(path, "judge")
    got = cache.get_many([f"k{i}" for i in range(60)])
    assert len(got) == 50 and json.loads(got["k7"]) == {"i": 7}
    assert math.isclose(len(cache), 50)
