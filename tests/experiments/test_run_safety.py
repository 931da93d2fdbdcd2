"""Sweeps under hostile conditions: a broken eval.json, a killed driver, a second driver on the same directory.

The runners here are toys (no training): ``TOY`` records its pid and the pid of a child it starts, then sleeps, so
the tests can check that *every* process of a run goes away, and when.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from varpo.experiments.cli import app
from varpo.experiments.evalfile import read_eval
from varpo.experiments.grid import expand_grid
from varpo.experiments.results import load_sweep
from varpo.experiments.sweep import EVAL_FILE, is_finished, load_manifest, run_dir, run_sweep

REPO = Path(__file__).resolve().parents[2]
# argv: CONFIG --run-dir DIR key=value… ; starts a grandchild (`sleep`) so that process-group handling is tested too
TOY = """
import os, subprocess, sys, time
args = sys.argv[1:]
if "--prepare" in args:
    sys.exit(0)
run = args[args.index("--run-dir") + 1]
child = subprocess.Popen(["sleep", "600"])
with open(os.path.join(run, "pids.tmp"), "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace(os.path.join(run, "pids.tmp"), os.path.join(run, "pids"))
time.sleep(600)
"""
TOY_RUNNER = [sys.executable, "-c", TOY]
POINTS = expand_grid("grpo", "0.5", "1")


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone: it holds no resources and runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def start_driver(config: Path, sweep: Path) -> subprocess.Popen:
    """A sweep driver in its own process (what `varpo sweep` is), running TOY for the one grid point."""
    code = (
        "import sys\n"
        "from varpo.experiments.grid import expand_grid\n"
        "from varpo.experiments.sweep import run_sweep\n"
        f"run_sweep({str(config)!r}, {str(sweep)!r}, expand_grid('grpo', '0.5', '1'), runner={TOY_RUNNER!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def toy_pids(sweep: Path, driver: subprocess.Popen) -> tuple[int, int]:
    pids = run_dir(sweep, POINTS[0]) / "pids"

    def started() -> bool:
        assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
        return pids.exists()

    wait_for(started, 300, "the toy runner to start")
    runner, grandchild = map(int, pids.read_text().split())
    assert alive(runner) and alive(grandchild)
    return runner, grandchild


def test_killing_the_driver_takes_its_runs_down(tmp_path, config):
    """kill -9 of the driver alone: the runner and the process it started are gone within seconds (before: both
    kept running as orphans)."""
    sweep = tmp_path / "sweep"
    driver = start_driver(config, sweep)
    try:
        runner, grandchild = toy_pids(sweep, driver)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        took = wait_for(lambda: not alive(runner) and not alive(grandchild), 30, "the runner to die")
        assert took < 30
    finally:
        driver.kill()
        driver.wait()
    # the directory's lock went with them: a rerun takes the run over and finishes it
    fake = [sys.executable, str(Path(__file__).with_name("fake_runner.py"))]
    (outcome,) = run_sweep(config, sweep, POINTS, runner=fake)
    assert outcome.status == "done" and is_finished(sweep, POINTS[0])


def test_a_live_run_directory_is_never_deleted_or_shared(tmp_path, config):
    """A second sweep on the same directory while a runner is alive (driver still running): it must not delete
    the run directory or start a second runner in it; it reports the run as held and who holds it."""
    sweep = tmp_path / "sweep"
    driver = start_driver(config, sweep)
    try:
        runner, _ = toy_pids(sweep, driver)
        rdir = run_dir(sweep, POINTS[0])
        # before: rmtree + a second TOY in the same directory (the timeout only keeps a regression from hanging)
        (outcome,) = run_sweep(config, sweep, POINTS, runner=TOY_RUNNER, timeout=20)
        assert outcome.status == "held", outcome
        assert f"sweep driver pid {driver.pid}" in outcome.error
        assert (rdir / "pids").read_text().split()[0] == str(runner) and alive(runner)
        assert load_manifest(sweep)["runs"][POINTS[0].name]["status"] == "pending"  # not overwritten by the loser
        # the CLI says so and exits 1
        res = CliRunner().invoke(
            app,
            ["sweep", str(config), "--methods", "grpo", "--weights", "0.5", "--seeds", "1", "--out", str(sweep)]
            + ["--runner", f"{sys.executable} -c 'import sys; sys.exit(9)'", "--no-report"],
        )
        assert res.exit_code == 1 and "in use by sweep driver pid" in " ".join(res.output.split()), res.output
    finally:
        driver.kill()
        driver.wait()


def test_timeout_kills_the_whole_run(tmp_path, config):
    """A run past --timeout is killed with everything it started (before: only the runner process itself)."""
    sweep = tmp_path / "sweep"
    (outcome,) = run_sweep(config, sweep, POINTS, runner=TOY_RUNNER, timeout=3)
    assert outcome.status == "failed" and "timeout" in outcome.error
    pids = (run_dir(sweep, POINTS[0]) / "pids").read_text().split()
    assert pids and not any(alive(int(p)) for p in pids)


BAD_EVALS = {
    "empty": ("", "empty file"),
    "truncated": ('{"objectives": {"correctness": 0.5, "format"', "truncated or invalid JSON at line 1"),
    "list": ("[0.5, 0.5]", "not a JSON object"),
    "no_objectives": ('{"all": 0.5}', "no 'objectives' mapping"),
    "nan_objective": ('{"objectives": {"correctness": NaN, "format": 0.5}, "all": 0.5}', "'correctness'] is NaN"),
    "string_objective": ('{"objectives": {"correctness": "0.5"}, "all": 0.5}', "is '0.5', not a finite number"),
    "no_all": ('{"objectives": {"correctness": 0.5}}', "no 'all' rate"),
}


@pytest.mark.parametrize("kind", BAD_EVALS)
def test_unreadable_eval_json_is_flagged_not_missing_or_finished(tmp_path, config, fake_runner, kind):
    text, reason = BAD_EVALS[kind]
    sweep = tmp_path / "sweep"
    points = expand_grid("grpo,dvao", "0.5", "1")
    run_sweep(config, sweep, points, runner=fake_runner)
    bad = run_dir(sweep, points[0]) / EVAL_FILE
    bad.write_text(text)
    assert read_eval(bad)[0] is None and reason in read_eval(bad)[1]
    assert not is_finished(sweep, points[0])  # before: a NaN score counted as finished (never redone)
    status = {r.point.name: r.status for r in load_sweep(sweep).runs}
    assert status[points[0].name].startswith("unreadable eval.json (") and reason in status[points[0].name]
    assert status[points[1].name] == "done"
    res = CliRunner().invoke(app, ["report", str(sweep)])
    assert res.exit_code == 1, res.output  # before: exit 0, "missing eval.json", no warning
    assert f"warning: {points[0].name}: unreadable eval.json (" in res.output
    text = (sweep / "report.md").read_text()
    assert "1 run(s) have an unreadable eval.json" in text and f"| `{points[0].name}` | unreadable eval.json (" in text
    # a rerun redoes exactly that run
    outcomes = run_sweep(config, sweep, points, runner=fake_runner)
    assert [o.status for o in outcomes] == ["done", "skipped"]
    assert json.loads(bad.read_text())["objectives"]
