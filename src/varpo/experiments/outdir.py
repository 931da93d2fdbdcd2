"""Where a benchmark script writes: a run directory by default, a tracked result file only when ``--out`` names it.

Committed results (``benchmarks/results/*.json``, ``docs/results/…``) are evidence: re-running a script to try
something must not overwrite them. Every script under ``benchmarks/`` therefore writes to
``runs/bench/<name>/<file>`` (relative to the working directory, like every other ``runs/`` path) unless ``--out``
is given, and the documented commands that reproduce a committed result pass ``--out <tracked path>``::

    parser = argparse.ArgumentParser()
    add_out_option(parser, "engine_overhead", "engine_overhead.json", publish="benchmarks/results/engine_overhead.json")
    args = parser.parse_args()
    path = out_path(args.out, "engine_overhead", "engine_overhead.json")
    write_result(path, json.dumps(result, indent=2) + "\\n")
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from varpo.experiments.records import write_text

#: Default parent of every benchmark's run directory.
BENCH_RUNS = Path("runs") / "bench"


def run_dir(name: str) -> Path:
    """``runs/bench/<name>``: the default directory of benchmark ``name``."""
    return BENCH_RUNS / name


def out_path(out: str | os.PathLike | None, name: str, filename: str) -> Path:
    """``out`` when given (the caller asked for that file, tracked or not), else ``runs/bench/<name>/<filename>``."""
    return Path(out) if out is not None else run_dir(name) / filename


def add_out_option(
    parser: argparse.ArgumentParser, name: str, filename: str, publish: str | None = None, flag: str = "--out"
) -> None:
    """Add ``--out PATH`` (default None: :func:`out_path` picks the run directory). ``publish``: the tracked file
    the documented command writes, named in the help text."""
    hint = f"; the committed result is {publish}" if publish else ""
    parser.add_argument(
        flag,
        type=Path,
        default=None,
        help=f"output file (default {run_dir(name) / filename}: never a tracked file unless named here{hint})",
    )


def write_result(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` to ``path`` (parents created) and print where it went."""
    written = write_text(path, text)
    print(f"wrote {written}")
    return written
