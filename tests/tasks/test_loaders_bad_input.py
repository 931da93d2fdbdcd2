"""Malformed data files: a bad file raises ONE line naming the file and the 1-based line/row; a bad row is skipped
by the task loaders with one `SkippedRowsWarning` that counts the rows and names file, row and field (and
ValueError when no row is left); no loader ever keeps a math row whose gold is empty or "None"."""

import json
import warnings

import pandas as pd
import pytest

import varpo.tasks
from varpo.tasks.io import SkippedRowsWarning, read_records
from varpo.tasks.toolrl_rules import parse_ground_truth

MATH = varpo.tasks.get_task("math")
COUNTDOWN = varpo.tasks.get_task("countdown")
TOOLCALL = varpo.tasks.get_task("toolcall")


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def one_line_error(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, (part, message)
    return message


def skipped_warning(record, *parts):
    messages = [str(w.message) for w in record if issubclass(w.category, SkippedRowsWarning)]
    assert len(messages) == 1, messages
    assert "\n" not in messages[0]
    for part in parts:
        assert part in messages[0], (part, messages[0])
    return messages[0]


# --- io: whole-file problems ---------------------------------------------------------------------------------------


def test_truncated_jsonl_line_names_file_and_physical_line(tmp_path):
    good = json.dumps({"question": "q", "answer": "#### 1"})
    # Line 2 is blank and line 3 holds U+2028 inside a string (str.splitlines() would split it): the truncated
    # record is on physical line 5 of the file.
    path = write_jsonl(tmp_path / "t.jsonl", [good, "", json.dumps({"question": "a\u2028b", "answer": "#### 2"}), good])
    path.write_text(path.read_text() + good[:-7] + "\n")
    with pytest.raises(ValueError) as e:
        read_records(path)
    one_line_error(e, str(path), "line 5", "invalid JSON")
    with pytest.raises(ValueError) as e:
        MATH.load(str(path))
    one_line_error(e, str(path), "line 5")
    assert len(read_records(write_jsonl(tmp_path / "ok.jsonl", [good, "", good]))) == 2


def test_json_document_errors_name_file_and_line(tmp_path):
    rows = [{"problem": f"p{i}", "answer": str(i)} for i in range(5)]
    path = tmp_path / "list.json"
    path.write_text(json.dumps(rows, indent=1)[:-20])  # a pretty-printed list cut short
    with pytest.raises(ValueError) as e:
        read_records(path)
    lines = path.read_text().count("\n") + 1
    one_line_error(e, str(path), f"line {lines}", "invalid JSON")
    path.write_text(json.dumps([rows[0], 5]))
    with pytest.raises(ValueError) as e:
        read_records(path)
    one_line_error(e, str(path), "row 2", "expected a JSON object")
    path.write_text(json.dumps({"problem": ["a", "b"], "answer": ["1"]}))
    with pytest.raises(ValueError) as e:
        read_records(path)
    one_line_error(e, str(path), "different lengths")
    # BFCL-style JSON lines under a .json name still read, and a bad line there is named too.
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1]) + "\n[1, 2]\n")
    with pytest.raises(ValueError) as e:
        read_records(path)
    one_line_error(e, str(path), "line 3", "expected a JSON object")


def test_unreadable_files_give_one_line_errors(tmp_path):
    cases = {
        "latin1.jsonl": ('{"q": "caf\xe9"}\n'.encode("latin-1"), "not UTF-8"),
        "junk.parquet": (b"PAR1 this is not parquet", "cannot read parquet"),
        "empty.jsonl": (b"\n\n", "no rows"),
    }
    for name, (content, part) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError) as e:
            read_records(tmp_path / name)
        one_line_error(e, str(tmp_path / name), part)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError) as e:
        read_records(tmp_path / "folder")
    one_line_error(e, "folder", "save_to_disk")
    with pytest.raises(FileNotFoundError) as e:
        read_records(tmp_path / "missing.jsonl")
    one_line_error(e, "missing.jsonl")


# --- math ------------------------------------------------------------------------------------------------------------


def test_math_skips_rows_without_gold_or_problem_and_names_them(tmp_path):
    rows = [
        {"problem": "1+1?", "answer": "2"},
        {"problem": "null answer", "answer": None},
        {"problem": "string None", "answer": "None"},
        {"problem": "empty", "answer": "  "},
        {"answer": "7"},  # no problem
        {"problem": None, "answer": "8"},
        {"problem": "no answer field"},
        {"problem": "2+2?", "answer": 4},
    ]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.warns(SkippedRowsWarning) as record:
        ds = MATH.load(str(path), layout="math500")
    skipped_warning(record, str(path), "skipped 6 of 8 rows", "row 2:", "'answer'", "3 more")
    assert ds["answer"] == ["2", "4"]
    assert all(a and a.lower() != "none" for a in ds["answer"])
    assert all("None" not in p for p in ds["prompt"])


def test_math_missing_field_names_field_file_and_row(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"problem": "a", "answer": "1"}, {"problem": "b"}])
    with pytest.warns(SkippedRowsWarning) as record:
        MATH.load(str(path), layout="math500")
    skipped_warning(record, str(path), "row 2: missing or empty gold answer in field 'answer'")
    # Nothing usable: one ValueError naming the field (e.g. a wrong answer_key).
    with pytest.raises(ValueError) as e:
        MATH.load(str(path), problem_key="problem", answer_key="final")
    one_line_error(e, str(path), "no usable rows", "'final'", "row 1")


def test_math_null_gold_never_scores_and_parquet_nan_is_skipped(tmp_path):
    # Before: a null answer became the gold string "None", which `\boxed{None}` matched for 1.0.
    assert MATH.score("\\boxed{None}", answer="None")["accuracy"] is None
    assert MATH.score("\\boxed{None}", answer=None)["accuracy"] is None
    assert MATH.score("\\boxed{nan}", answer=float("nan"))["accuracy"] is None
    frame = pd.DataFrame({"problem": ["p1", "p2", "p3"], "answer": [1.5, float("nan"), None]})
    frame.to_parquet(tmp_path / "m.parquet")
    with pytest.warns(SkippedRowsWarning) as record:
        ds = MATH.load(str(tmp_path / "m.parquet"), layout="math500")
    skipped_warning(record, "skipped 2 of 3 rows", "row 2", "row 3")
    assert ds["answer"] == ["1.5"]


def test_math_gsm8k_and_dapo_bad_rows(tmp_path):
    rows = [
        {"question": "q1", "answer": "so 3\n#### 3"},
        {"question": "q2", "answer": "a worked solution with no final line"},
        {"question": "q3", "answer": None},
    ]
    with pytest.warns(SkippedRowsWarning) as record:
        ds = MATH.load(str(write_jsonl(tmp_path / "g.jsonl", rows)))
    skipped_warning(record, "skipped 2 of 3 rows", "row 2: field 'answer' has no '#### <answer>' line")
    assert ds["answer"] == ["3"]
    dapo = [
        {"prompt": [{"role": "user", "content": "p"}], "reward_model": {"ground_truth": "5"}},
        {"prompt": [], "reward_model": {"ground_truth": "5"}},
        {"prompt": [{"role": "user", "content": "p"}], "reward_model": {"ground_truth": None}},
    ]
    with pytest.warns(SkippedRowsWarning) as record:
        ds = MATH.load(str(write_jsonl(tmp_path / "d.jsonl", dapo)), layout="dapo")
    skipped_warning(record, "skipped 2 of 3 rows", "row 2: field 'prompt'", "row 3")
    assert ds["answer"] == ["5"]


def test_math_layout_detection_is_not_decided_by_a_bad_first_row(tmp_path):
    rows = [{"question": "q0", "answer": None}, {"question": "q1", "answer": "so\n#### 4"}]
    with pytest.warns(SkippedRowsWarning):
        ds = MATH.load(str(write_jsonl(tmp_path / "g.jsonl", rows)))
    assert ds["answer"] == ["4"]


# --- countdown -------------------------------------------------------------------------------------------------------


def test_countdown_null_nums_and_bad_targets_are_skipped_and_named(tmp_path):
    rows = [
        {"target": 24, "nums": [4, 6, 1]},
        {"target": 10, "nums": None},  # before: TypeError
        {"target": "abc", "nums": [1, 2]},
        {"target": 3.5, "nums": [1, 2]},
        {"nums": [1, 2]},
        {"target": 7, "nums": []},
        {"target": "8", "nums": "[2, 4]"},
    ]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.warns(SkippedRowsWarning) as record:
        ds = COUNTDOWN.load(str(path))
    skipped_warning(record, str(path), "skipped 5 of 7 rows", "row 2: field 'nums'", "row 3: field 'target'")
    assert ds["target"] == [24, 8] and ds["numbers"] == ["4 6 1", "2 4"]
    assert COUNTDOWN.score(ds[0]["completion"], **ds[0]) == {"accuracy": 1.0, "format": 1.0}
    with pytest.raises(ValueError) as e:
        COUNTDOWN.load(str(write_jsonl(tmp_path / "bad.jsonl", [{"target": 1, "nums": None}])))
    one_line_error(e, "bad.jsonl", "no usable rows", "row 1", "'nums'")


def test_countdown_verl_rows_without_ground_truth_or_prompt_are_skipped(tmp_path):
    prompt = [{"role": "user", "content": "Using the numbers [2, 3], create an equation that equals 6."}]
    rows = [
        {"prompt": prompt, "reward_model": {"ground_truth": {"target": 6, "numbers": [2, 3]}}},
        {"prompt": prompt, "reward_model": {"ground_truth": None}},
        {"prompt": prompt, "reward_model": {"ground_truth": {"target": 6, "numbers": None}}},
        {"reward_model": {"ground_truth": {"target": 6, "numbers": [2, 3]}}},
    ]
    with pytest.warns(SkippedRowsWarning) as record:
        ds = COUNTDOWN.load(str(write_jsonl(tmp_path / "v.jsonl", rows)))
    skipped_warning(record, "skipped 3 of 4 rows", "row 2: field 'reward_model.ground_truth'", "row 4: missing")
    assert ds["target"] == [6]


# --- toolcall --------------------------------------------------------------------------------------------------------


def _sft_rows(toolrl_path):
    raw = pd.read_parquet(toolrl_path)
    return [{k: r["extra_info"][k] for k in ("instruction", "input", "output")} for _, r in raw.iterrows()]


def test_real_toolrl_sft_file_loads_when_a_think_block_mentions_the_tool_call_tag(toolrl_path, tmp_path):
    rows = _sft_rows(toolrl_path)
    changed = [i for i, r in enumerate(rows) if "<tool_call>" in r["output"]][:3]
    originals = {i: rows[i]["output"] for i in changed}
    for i in changed:  # as in rows of ToolRL's SFT data: the think text names the tag before the real block
        rows[i]["output"] = rows[i]["output"].replace(
            "</think>", "I will answer with a <tool_call> block holding one JSON call per line. </think>", 1
        )
    path = tmp_path / "rlla_sft.json"
    path.write_text(json.dumps(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedRowsWarning)  # nothing is skipped
        ds = TOOLCALL.load(str(path))
    assert len(ds) == len(rows) == 80
    for i in changed:
        row = ds[i]
        assert row["ground_truth"] == rows[i]["output"]
        assert parse_ground_truth(row["ground_truth"]) == parse_ground_truth(originals[i])
        assert row["kind"] == ("single" if len(parse_ground_truth(originals[i])) == 1 else "multi")
        # A clean reply with the gold calls gets full marks against the mentioning ground truth.
        assert TOOLCALL.score(originals[i], **row) == {"correctness": 3.0, "format": 1.0}


def test_toolcall_bad_rows_are_skipped_and_named(toolrl_path, tmp_path):
    rows = _sft_rows(toolrl_path)[:4]
    rows[1] = {"instruction": "x", "input": "hi"}  # no output
    rows[2] = dict(rows[2], output="<think> t </think>\n<tool_call>\n{not json\n</tool_call>")
    rows[3] = dict(rows[3], output='<think> t </think>\n<tool_call>\n["a list"]\n</tool_call>')
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    with pytest.warns(SkippedRowsWarning) as record:
        ds = TOOLCALL.load(str(path))
    skipped_warning(
        record,
        str(path),
        "skipped 3 of 4 rows",
        "row 2: missing or empty field 'output'",
        "row 3: gold tool call is not JSON",
        "row 4: gold tool call is not",
    )
    assert len(ds) == 1
    verl = [
        {"prompt": [{"role": "user", "content": "u"}], "reward_model": {"ground_truth": None}},
        {"prompt": None, "reward_model": {"ground_truth": "<think> t </think>\n<response> r </response>"}},
    ]
    with pytest.raises(ValueError) as e:
        TOOLCALL.load(str(write_jsonl(tmp_path / "v.jsonl", verl)))
    one_line_error(e, "v.jsonl", "no usable rows", "row 1: ground truth is NoneType", "row 2: missing")
