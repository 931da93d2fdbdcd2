"""Result tables: the same rows rendered with rich (terminal) and as GitHub markdown (``eval.md``)."""

from __future__ import annotations

from rich.table import Table


def metric_rows(results: dict[str, dict[str, float]], objectives: list[str]) -> list[tuple[str, str]]:
    """(row label, key in a result dict) for every objective plus the all-objectives rate."""
    rows = []
    for name in objectives:
        rows.append((f"{name}: mean reward", f"{name}/mean"))
        rows.append((f"{name}: avg@k (satisfied)", f"{name}/avg@k"))
    rows.append(("all objectives satisfied", "all/rate"))
    return rows


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def rich_table(results: dict[str, dict[str, float]], objectives: list[str], title: str) -> Table:
    table = Table(title=title)
    table.add_column("objective")
    for column in results:
        table.add_column(column, justify="right")
    for label, key in metric_rows(results, objectives):
        table.add_row(label, *(_fmt(r.get(key)) for r in results.values()))
    return table


def markdown_table(results: dict[str, dict[str, float]], objectives: list[str]) -> str:
    header = "| objective | " + " | ".join(results) + " |"
    rule = "|---|" + "---:|" * len(results)
    lines = [header, rule]
    for label, key in metric_rows(results, objectives):
        lines.append(f"| {label} | " + " | ".join(_fmt(r.get(key)) for r in results.values()) + " |")
    return "\n".join(lines) + "\n"
