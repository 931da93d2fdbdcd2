"""Publish a lab result: ``report.md``, ``result.json`` and one PNG per curve set, in one directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from varpo import significance as sig  # noqa: E402
from varpo.lab.claims import DIRECTIONAL, FIELDS, ClaimResult, decide  # noqa: E402


def _fmt(x) -> str:
    if isinstance(x, str):
        return x.replace("|", "\\|")  # a table cell
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else (f"{x:.3g}" if abs(x) < 1e-3 and x != 0 else f"{x:.4f}")
    return str(x)


def write(result: ClaimResult, out: str | Path, command: str = "", commit: str = "") -> Path:
    """Write the result under ``out``; returns the report path. Numbers are never rounded in the JSON.

    The rows are decided first (`claims.decide`: Holm within the claim's directional rows), so report.md, result.json
    and the console print the same `significance.Result` fields.
    """
    decide(result.rows)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for name, series in result.curves.items():
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for label, values in series.items():
            if name == "frontier":
                xy = list(zip(values[0::2], values[1::2]))
                ax.plot([p[0] for p in xy], [p[1] for p in xy], "o-", label=label)
                ax.set_xlabel("objective a satisfaction")
                ax.set_ylabel("objective b satisfaction")
            else:
                ax.plot(range(len(values)), values, label=label)
                ax.set_xlabel("record index" if name != "final_reward" else "β index")
                ax.set_ylabel(name)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # an index: never a tick at 1.5
        if name == "tv":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title(f"{result.name}: {name}")
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figures.append(path.name)
    payload = dict(
        name=result.name,
        title=result.title,
        command=command,
        commit=commit,
        seconds=result.seconds,
        rows=[r.to_dict() for r in result.rows],
        table=result.table,
        curves=result.curves,
        config=result.config,
        values=result.values,
    )
    (out / "result.json").write_text(json.dumps(payload, indent=1, default=str))
    lines = [
        f"# {result.title}",
        "",
        f"Command: `{command}`  ",
        f"Commit: `{commit}`  ",
        f"Wall time: {result.seconds:.0f} s",
        "",
    ]
    family = sum(r.expected in DIRECTIONAL for r in result.rows)
    lines += [
        "## Pre-registered comparisons",
        "",
        f'Standard: docs/claims.md, "How claims are decided". Exact sign-flip test over paired seeds; Holm within '
        f"the claim's family = its {family} directional rows; established = p_holm < {sig.ALPHA:g}. Equivalence "
        "(~0:margin) and bound (<=x) rows are read from the 95 % interval and are not in the family.",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    for r in result.rows:
        lines.append("| " + " | ".join(_fmt(c) for c in r.cells()) + " |")
    if result.table:
        keys = list(dict.fromkeys(k for row in result.table for k in row))
        lines += ["", "## Every method run (means over seeds)", "", "| " + " | ".join(keys) + " |"]
        lines.append("|" + "---|" * len(keys))
        for row in result.table:
            lines.append("| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |")
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    lines += ["", "Configuration: `result.json` (`config`)."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
