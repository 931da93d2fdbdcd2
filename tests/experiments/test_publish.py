"""benchmarks/testbed/publish.sh copies a sweep's per-run results — and nothing heavy — for the repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_publish_copies_per_run_results_without_checkpoints(tmp_path):
    src = tmp_path / "sweep"
    run = src / "runs" / "grpo__w0.5-0.5__s0"
    (run / "final").mkdir(parents=True)
    (run / "final" / "model.safetensors").write_bytes(b"\0" * 1024)
    (run / "eval.json").write_text(json.dumps({"all": 0.5}))
    (run / "run.json").write_text("{}")
    step = {"step": 1, "reward/alpha/mean": 0.123456789, "adv/frac_signal/alpha": 0.5, "loss": 1.0, "grad_norm": 2.0}
    (run / "metrics.jsonl").write_text(json.dumps(step) + "\n")
    (src / "runs" / "saw__w0.5-0.5__s0").mkdir()  # unfinished: no eval.json, not published
    (src / "config.yaml").write_text("task: constraints\n")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")  # DEST is replaced
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks/testbed/publish.sh"), str(src), str(dest)],
        capture_output=True, text=True, env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "published 1 runs" in proc.stdout
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [
        "config.yaml",
        "runs/grpo__w0.5-0.5__s0/eval.json",
        "runs/grpo__w0.5-0.5__s0/metrics.jsonl",
        "runs/grpo__w0.5-0.5__s0/run.json",
    ]
    compact = json.loads((dest / "runs/grpo__w0.5-0.5__s0/metrics.jsonl").read_text())
    assert compact == {"step": 1, "reward/alpha/mean": 0.123457, "adv/frac_signal/alpha": 0.5}


def test_publish_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks/testbed/publish.sh"), str(tmp_path), str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "not a sweep" in proc.stderr
    assert not (tmp_path / "out").exists()
