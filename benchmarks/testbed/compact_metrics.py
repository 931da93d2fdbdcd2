"""Compact a run's per-step ``metrics.jsonl`` for publishing next to its ``eval.json``.

    python benchmarks/testbed/compact_metrics.py runs/testbed/easy_hard/runs/<run>/metrics.jsonl DEST/metrics.jsonl

Keeps, per step, only what the published analyses read — ``step``, every ``reward/<name>/mean``, and the
estimator's per-objective diagnostics ``adv/frac_signal/*``, ``adv/group_std_mean/*``, ``adv/weight/*``,
``adv/frac_zero_std_groups`` — rounded to 6 significant digits, so a run's file stays a few kB (the full log is
~3 kB per step). ``benchmarks/testbed/collapse_alarm.py`` reads the compact file as it reads the full one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEEP_PREFIXES = ("adv/frac_signal/", "adv/group_std_mean/", "adv/weight/")
KEEP_KEYS = ("step", "adv/frac_zero_std_groups")


def keep(key: str) -> bool:
    return key in KEEP_KEYS or key.startswith(KEEP_PREFIXES) or (key.startswith("reward/") and key.endswith("/mean"))


def compact(record: dict) -> dict:
    return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in record.items() if keep(k)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: compact_metrics.py SRC/metrics.jsonl DEST/metrics.jsonl", file=sys.stderr)
        return 2
    src, dest = Path(args[0]), Path(args[1])
    from varpo.experiments.results import read_metrics  # skips torn or corrupt lines

    records = [compact(r) for r in read_metrics(src) if "step" in r]
    if not records:
        print(f"error: {src}: no per-step records", file=sys.stderr)
        return 2
    dest.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
