"""BFCL (Berkeley Function Calling Leaderboard) simple/multiple samples converted to the toolcall format: the gold
answers must score full correctness. Runs only where the optional `bfcl-eval` package (which ships the data) is
installed; it is installed here with `pip install --no-deps bfcl-eval` (its own deps would downgrade numpy)."""

from pathlib import Path

import pytest

import varpo.tasks

bfcl_eval = pytest.importorskip("bfcl_eval")
DATA = Path(bfcl_eval.__file__).parent / "data"


@pytest.mark.parametrize(
    "name", ["BFCL_v4_simple_python.json", "BFCL_v4_multiple.json", "BFCL_v4_parallel_multiple.json"]
)
def test_bfcl_gold_answers_score_full_marks(name):
    task = varpo.tasks.get_task("toolcall")
    ds = task.load(str(DATA / name), layout="bfcl")
    assert len(ds) >= 200
    sample = ds.select(range(0, len(ds), 4))  # every 4th example keeps the test fast
    for row in sample:
        assert row["prompt"][0]["role"] == "system" and row["prompt"][-1]["role"] == "user"
        assert task.score(row["completion"], **row) == {"correctness": 3.0, "format": 1.0}
    assert "multi" in set(ds["kind"]) or name != "BFCL_v4_parallel_multiple.json"
