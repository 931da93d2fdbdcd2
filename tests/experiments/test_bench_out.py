"""Benchmark scripts write to a run directory by default and touch a tracked result file only when ``--out`` names
it: re-running a benchmark to try something must never overwrite the committed evidence."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from varpo.experiments.outdir import BENCH_RUNS, out_path

ROOT = Path(__file__).resolve().parents[2]


def _load(relpath: str):
    """Import a benchmark script as a module (they are scripts, not a package)."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_out_path_defaults_to_the_run_directory():
    assert (
        out_path(None, "engine_overhead", "engine_overhead.json")
        == BENCH_RUNS / "engine_overhead" / "engine_overhead.json"
    )
    assert BENCH_RUNS.parts[0] == "runs"
    assert out_path("benchmarks/results/x.json", "x", "x.json") == Path("benchmarks/results/x.json")


def test_engine_overhead_writes_the_tracked_file_only_when_named():
    module = _load("benchmarks/engine_overhead.py")
    assert module.parse_args([]).out == Path("runs/bench/engine_overhead/engine_overhead.json")
    named = Path("benchmarks/results/engine_overhead.json")
    assert module.parse_args(["--out", str(named)]).out == named


def _gvpo_sweeps(root: Path) -> None:
    """gvpo_h0 and gvpo_h2, 2 seeds each: eval.json (config + curve) and metrics.jsonl, as the sweeps leave them."""
    for h in (0, 2):
        for seed in (0, 1):
            run = root / f"gvpo_h{h}" / "runs" / f"dr_grpo__s{seed}"
            run.mkdir(parents=True)
            curve = [
                {"step": 0, "objectives": {"a": 0.1, "b": 0.2}, "all": 0.05},
                {"step": 4, "objectives": {"a": 0.5 + 0.01 * seed, "b": 0.6}, "all": 0.3 + 0.01 * h},
            ]
            config = {"per_device_train_batch_size": 8, "seed": seed}
            (run / "eval.json").write_text(json.dumps({"config": config, "curve": curve}))
            records = [{"step": s, "completions/mean_length": 10.0} for s in range(1, 5)]
            if h:
                records = [{**r, "offpolicy/generated_tokens": 40.0 + seed} for r in records]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_gvpo_offpolicy_leaves_the_published_file_untouched(tmp_path, monkeypatch, capsys):
    published = tmp_path / "docs" / "results" / "testbed-gvpo_offpolicy"
    _gvpo_sweeps(published)
    tracked = published / "gvpo_offpolicy.json"
    tracked.write_text('{"committed": true}\n')
    monkeypatch.chdir(tmp_path)
    module = _load("benchmarks/testbed/gvpo_offpolicy.py")

    assert module.main([str(published)]) == 0
    assert tracked.read_text() == '{"committed": true}\n'
    result = json.loads((tmp_path / "runs/bench/gvpo_offpolicy/gvpo_offpolicy.json").read_text())
    assert result["2"]["token_ratio"][0] == pytest.approx((4 * 40.5) / (4 * 10.0 * 8))  # h=2 vs h=0, mean of seeds

    assert module.main([str(published), "--out", str(tracked)]) == 0
    assert json.loads(tracked.read_text()) == result
    assert f"wrote {tracked}" in capsys.readouterr().out


# A stand-in for `python -m varpo.experiments sweep|report …`: writes the files the publishing step copies.
STUB_PYTHON = """#!/usr/bin/env bash
shift 2
cmd=$1; shift
out=
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[i]}" = --out ] && out=${args[i+1]}; done
if [ "$cmd" = sweep ]; then
  mkdir -p "$out/runs/r1"; echo cfg > "$out/config.yaml"; echo {} > "$out/sweep.json"
  echo '{"all": 1}' > "$out/runs/r1/eval.json"; echo {} > "$out/runs/r1/run.json"
else
  [ -z "$out" ] && out=$1
  mkdir -p "$out"; echo "# new report" > "$out/report.md"; echo {} > "$out/report.json"; echo png > "$out/a.png"
fi
"""


@pytest.mark.parametrize(
    ("script", "arg", "published"),
    [
        ("benchmarks/learning/run.sh", "toolcall", "docs/results/learning-toolcall"),
        ("benchmarks/testbed/run.sh", "easy_hard", "docs/results/testbed-easy_hard"),
    ],
)
def test_sweep_scripts_publish_only_with_out(tmp_path, script, arg, published):
    repo = tmp_path / "repo"
    (repo / script).parent.mkdir(parents=True)
    shutil.copy(ROOT / script, repo / script)
    for helper in ("publish.sh", "compact_metrics.py"):  # run.sh publishes through its sibling scripts
        if (ROOT / Path(script).parent / helper).exists():
            shutil.copy(ROOT / Path(script).parent / helper, repo / Path(script).parent / helper)
    (repo / Path(script).parent / f"{arg}.yaml").write_text("task: toolcall\n")
    committed = repo / published / "report.md"
    committed.parent.mkdir(parents=True)
    committed.write_text("# committed report\n")
    stub = tmp_path / "bin" / "python"
    stub.parent.mkdir()
    stub.write_text(STUB_PYTHON)
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(repo / script), arg, *extra], env=env, capture_output=True, text=True, timeout=60
        )

    res = run()
    assert res.returncode == 0, res.stderr
    assert committed.read_text() == "# committed report\n"  # untouched
    assert "not published" in res.stdout and f"--out {published}" in res.stdout

    res = run("--out", published)
    assert res.returncode == 0, res.stderr
    assert committed.read_text() == "# new report\n"
    assert (repo / published / "report.json").exists() and (repo / published / "runs/r1/eval.json").exists()

    res = run("--out")
    assert res.returncode == 2 and "usage" in res.stderr
