"""The demo table in README.md and docs/results.md is the committed demo result (docs/results/demo/eval.md), number
for number: a rerun that changes eval.md without the pages (or an edit of a page) fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADER = "| objective | warm start | grpo | saw | saw − grpo [95 % CI] | p (exact) | lost ≤ 0.05 | verdict |"


def table_numbers(text: str) -> list[list[str]]:
    """Per row of the table under ``HEADER``: its cells after the label, as plain ASCII (bold and the typographic
    minus dropped)."""
    lines = text[text.index(HEADER) :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        rows.append([c.replace("**", "").replace("−", "-").strip() for c in cells])
    return rows


@pytest.mark.parametrize("page", ["README.md", "docs/results.md"])
def test_demo_table_is_the_committed_result(page):
    committed = table_numbers((ROOT / "docs/results/demo/eval.md").read_text())
    shown = table_numbers((ROOT / page).read_text())
    assert len(committed) == 5 and shown == committed
