"""BFCL (Berkeley Function Calling Leaderboard) simple/multiple/parallel-multiple questions converted to the
toolcall format: every row converts and the gold answers score full correctness.

Always runs, on the small vendored sample in tests/data/bfcl (source and licence in its README). Where the optional
`bfcl-eval` package (which ships the full data) is installed — `pip install --no-deps bfcl-eval`, its own deps would
downgrade numpy — the same checks also run on every 4th row of the full files."""

import importlib.util
import json
from pathlib import Path

import pytest

import varpo.tasks

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "bfcl"
NAMES = ["BFCL_v4_simple_python.json", "BFCL_v4_multiple.json", "BFCL_v4_parallel_multiple.json"]


def _full_data() -> Path | None:
    spec = importlib.util.find_spec("bfcl_eval")
    return Path(spec.origin).parent / "data" if spec and spec.origin else None


SOURCES = [("sample", SAMPLE, 1)] + ([("bfcl-eval", _full_data(), 4)] if _full_data() else [])


def _rows(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("source", "data", "every"), SOURCES, ids=[s[0] for s in SOURCES])
def test_bfcl_gold_answers_score_full_marks(source, data, every, name):
    task = varpo.tasks.get_task("toolcall")
    ds = task.load(str(data / name), layout="bfcl")
    assert len(ds) == _rows(data / name) >= 10  # no row skipped
    for row in ds.select(range(0, len(ds), every)):
        assert row["prompt"][0]["role"] == "system" and row["prompt"][-1]["role"] == "user"
        assert task.score(row["completion"], **row) == {"correctness": 3.0, "format": 1.0}
    expected = {"multi"} if name == "BFCL_v4_parallel_multiple.json" else {"single"}
    assert expected <= set(ds["kind"])


def test_vendored_sample_is_real_bfcl_data():
    """The sample keeps BFCL's ids and pairs every question with its answer (one line each, same order)."""
    for name in NAMES:
        questions = [json.loads(line) for line in (SAMPLE / name).read_text().splitlines()]
        answers = [json.loads(line) for line in (SAMPLE / "possible_answer" / name).read_text().splitlines()]
        assert [q["id"] for q in questions] == [a["id"] for a in answers]
        assert all(q["id"].startswith(name.removeprefix("BFCL_v4_").removesuffix(".json")) for q in questions)
