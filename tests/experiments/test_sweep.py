"""The sweep driver with a stand-in runner: parallel launch, manifest, resume, failure isolation."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from varpo.experiments.grid import expand_grid
from varpo.experiments.records import read_json
from varpo.experiments.sweep import EVAL_FILE, MANIFEST, load_manifest, run_dir, run_sweep


def launches(sweep: Path) -> list[str]:
    path = sweep / "launches.log"
    return path.read_text().split() if path.exists() else []


def test_sweep_runs_all_then_resume_skips_finished(tmp_path, config, fake_runner):
    sweep = tmp_path / "sweep"
    points = expand_grid("grpo,dvao", "0.3,0.7", "2")
    outcomes = run_sweep(config, sweep, points, ["max_steps=12"], runner=fake_runner, jobs=2, argv=["varpo", "sweep"])
    assert [o.status for o in outcomes] == ["done"] * 8
    assert sorted(launches(sweep)) == sorted(p.name for p in points)
    manifest = load_manifest(sweep)
    assert {e["status"] for e in manifest["runs"].values()} == {"done"}
    entry = manifest["runs"][points[0].name]
    assert entry["command"][-3:] == points[0].overrides()[-3:] and "max_steps=12" in entry["command"]
    assert manifest["invocations"][0]["argv"] == ["varpo", "sweep"] and manifest["invocations"][0]["commit"]
    # one prepare call per seed, before the runs, with the point's overrides
    assert manifest["invocations"][0]["prepare"] == {
        "0": {"returncode": 0, "wall_s": pytest.approx(0, abs=30)},
        "1": {"returncode": 0, "wall_s": pytest.approx(0, abs=30)},
    }
    assert "seed=1" in (sweep / "prepare" / "seed1.log").read_text()

    # second invocation: nothing to do
    outcomes = run_sweep(config, sweep, points, ["max_steps=12"], runner=fake_runner, jobs=2)
    assert [o.status for o in outcomes] == ["skipped"] * 8
    assert len(launches(sweep)) == 8

    # a run that died mid-way (no eval.json, stale files) is wiped and relaunched; the others are skipped
    victim = run_dir(sweep, points[3])
    (victim / EVAL_FILE).unlink()
    (victim / "stale.txt").write_text("half-trained")
    outcomes = run_sweep(config, sweep, points, ["max_steps=12"], runner=fake_runner, jobs=2)
    assert [o.point.name for o in outcomes if o.status == "done"] == [points[3].name]
    assert launches(sweep).count(points[3].name) == 2 and len(launches(sweep)) == 9
    assert not (victim / "stale.txt").exists()
    assert len(load_manifest(sweep)["invocations"]) == 3


def test_failed_runs_are_isolated_and_recorded(tmp_path, config, fake_runner, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "grpo")
    sweep = tmp_path / "sweep"
    points = expand_grid("grpo,dvao", "0.5", "1")
    outcomes = {o.point.method: o for o in run_sweep(config, sweep, points, runner=fake_runner, jobs=1)}
    assert outcomes["grpo"].status == "failed" and outcomes["grpo"].returncode == 3
    assert outcomes["dvao"].status == "done"
    entry = load_manifest(sweep)["runs"][outcomes["grpo"].point.name]
    assert entry["status"] == "failed" and "exit status 3" in entry["error"]
    assert "simulated crash" in (run_dir(sweep, outcomes["grpo"].point) / "run.log").read_text()
    # retry after the fault is gone: only the failed run is launched
    monkeypatch.delenv("FAKE_FAIL")
    again = run_sweep(config, sweep, points, runner=fake_runner, jobs=1)
    assert {o.point.method: o.status for o in again} == {"grpo": "done", "dvao": "skipped"}


def test_timeout_and_missing_eval_are_failures(tmp_path, config):
    sweep = tmp_path / "sweep"
    points = expand_grid("grpo", "0.5", "1")
    slow = ["python3", "-c", "import time; time.sleep(30)"]
    (outcome,) = run_sweep(config, sweep, points, runner=slow, timeout=0.5)
    assert outcome.status == "failed" and "timeout" in outcome.error
    silent = ["python3", "-c", "pass"]
    (outcome,) = run_sweep(config, sweep, points, runner=silent)
    assert outcome.status == "failed" and "no valid eval.json" in outcome.error


def test_changed_config_is_refused(tmp_path, config, fake_runner):
    sweep = tmp_path / "sweep"
    points = expand_grid("grpo", "0.5", "1")
    run_sweep(config, sweep, points, runner=fake_runner)
    config.write_text(config.read_text() + "learning_rate: 1.0\n")
    with pytest.raises(ValueError, match="differs from the config"):
        run_sweep(config, sweep, points, runner=fake_runner)


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON (truncated?)"),
        (lambda text: "[]", "a JSON list, not a manifest"),
        (lambda text: '{"runs": {}, "invocations": 3}', "'invocations' is not a list"),
    ],
)
def test_a_corrupt_manifest_is_refused_never_replaced(tmp_path, config, fake_runner, damage, needle):
    """Resuming over a truncated or damaged sweep.json must not replace it: it holds the earlier invocations."""
    sweep = tmp_path / "sweep"
    points = expand_grid("grpo", "0.5", "1")
    run_sweep(config, sweep, points, runner=fake_runner)
    damaged = damage((sweep / MANIFEST).read_text())
    (sweep / MANIFEST).write_text(damaged)
    with pytest.raises(ValueError, match=rf"sweep.json is corrupt \({re.escape(needle)}.*it is not replaced"):
        run_sweep(config, sweep, points, runner=fake_runner)
    assert (sweep / MANIFEST).read_text() == damaged
    with pytest.raises(ValueError, match=rf"sweep.json is corrupt: {re.escape(needle)}"):
        load_manifest(sweep)


def test_manifest_is_valid_json_after_every_run(tmp_path, config, fake_runner):
    sweep = tmp_path / "sweep"
    seen = []

    def check(_outcome):
        seen.append(read_json(sweep / MANIFEST) is not None)
        assert not [p for p in os.listdir(sweep) if p.endswith(".tmp")]

    run_sweep(config, sweep, expand_grid("grpo,ac,dvao", "0.5", "1"), runner=fake_runner, jobs=3, on_outcome=check)
    assert seen == [True] * 3
    shutil.rmtree(sweep)


def test_prepare_first_seed_alone_then_prepare_jobs_at_a_time(tmp_path, config, fake_runner):
    """The first seed's prepare builds what every seed shares (builtin:tiny), so it runs alone; the other seeds'
    prepares then overlap, ``prepare_jobs`` at a time (each sleeps 1 s and logs its start and end)."""
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    script = tmp_path / "timed_runner.py"
    script.write_text(
        "import os, sys, time\n"
        "args = sys.argv[1:]\n"
        "if '--prepare' in args:\n"
        "    seed = [a for a in args if a.startswith('seed=')][-1].split('=')[1]\n"
        f"    path = {str(stamps)!r} + '/' + seed\n"
        "    start = time.time(); time.sleep(1.0)\n"
        "    open(path, 'w').write(f'{start} {time.time()}')\n"
        "    sys.exit(0)\n"
        f"os.execv(sys.executable, [sys.executable, {fake_runner[1]!r}, *args])\n"
    )
    points = expand_grid("grpo", "0.3", "3")
    outcomes = run_sweep(config, tmp_path / "sweep", points, runner=[sys.executable, str(script)], jobs=2,
                         prepare_jobs=2)  # fmt: skip
    assert [o.status for o in outcomes] == ["done"] * 3
    span = {int(p.name): [float(x) for x in p.read_text().split()] for p in stamps.iterdir()}
    assert sorted(span) == [0, 1, 2]
    assert span[0][1] <= min(span[1][0], span[2][0])  # seed 0 finished before the others started
    assert max(span[1][0], span[2][0]) < min(span[1][1], span[2][1])  # seeds 1 and 2 overlapped
