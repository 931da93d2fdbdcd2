"""The claims tables of README.md and docs/results.md are regenerated from committed files (benchmarks/claims_table.py),
number for number; every source the index names exists; the builder reads what the index says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("claims_table", ROOT / "benchmarks" / "claims_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["README.md", "docs/results.md"])
def test_page_table_is_the_regenerated_one(page):
    ct = _module()
    text = (ROOT / page).read_text()
    shown = text.split(ct.START, 1)[1].split(ct.END, 1)[0].strip()
    assert shown == ct._links_for(page, ct.build(headline=page == "README.md")).strip()


def test_readme_shows_the_headline_rows_and_results_every_row():
    ct = _module()
    index = yaml.safe_load((ROOT / ct.INDEX).read_text())
    headline, full = ct.build(headline=True), ct.build()
    for row in index["rows"]:
        assert f"| {row['id']} | " in full
        assert (f"| {row['id']} | " in headline) == bool(row.get("readme", False))
    assert "docs/results.md#claims" in headline


def test_every_source_exists_and_each_row_reads_its_source():
    ct = _module()
    index = yaml.safe_load((ROOT / ct.INDEX).read_text())
    assert index["rows"], "the index lists no row"
    for row in index["rows"]:
        assert (ROOT / row["source"]).is_file(), row["source"]
    table = ct.build()
    # one row recomputed by hand from its source: the pooled setting-A length comparison
    claims = json.loads((ROOT / "docs/results/reanalysis-easy_hard-saw_grpo/claims.json").read_text())
    length = next(r for r in claims["rows"] if r["measure"] == "length")
    assert "| A1-R1 | " in table and f"{length['estimate']:+.3f} [{length['low']:+.3f}, {length['high']:+.3f}]" in table
    per_seed = length["per_seed"]
    assert len(per_seed) == length["n"] == 12
    assert length["estimate"] == pytest.approx(sum(per_seed.values()) / 12)
    alarm = json.loads((ROOT / "docs/results/collapse-alarm-confirm/collapse_alarm_rolling.json").read_text())
    assert f"flagged {alarm['lost']['flagged']} / {alarm['lost']['n']} lost" in table


def test_render_select_and_errors(tmp_path):
    ct = _module()
    data = {"rows": [{"m": "a", "x": 0.12345, "ci": [0.1, 0.2]}, {"m": "b", "x": 2}]}
    row = ct._select(data, {"list": "rows", "where": {"m": "a"}}, "R")
    assert ct.render("{x:+.2f} in [{ci.0:.1f}, {ci.1}] ({m})", row, "R") == "+0.12 in [0.1, 0.2] (a)"
    with pytest.raises(ValueError, match="row R: 0 elements of 'rows' match"):
        ct._select(data, {"list": "rows", "where": {"m": "c"}}, "R")
    with pytest.raises(ValueError, match="row R: no value at 'y'"):
        ct.render("{y}", row, "R")
    (tmp_path / "docs/results").mkdir(parents=True)
    (tmp_path / ct.INDEX).write_text(
        yaml.safe_dump({"rows": [{"id": "Z", "claim": "c", "source": "gone.json", "result": "r", "status": "s"}]})
    )
    with pytest.raises(ValueError, match="row Z: source gone.json does not exist"):
        ct.build(tmp_path)
    with pytest.raises(ValueError, match="README.md: no <!-- claims-table:start -->"):
        ct.replace_table("no markers", "t", "README.md")
    assert ct.replace_table(f"a\n{ct.START}\nold\n{ct.END}\nb", "new", "P") == f"a\n{ct.START}\nnew\n{ct.END}\nb"
