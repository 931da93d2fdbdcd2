"""Report generation from a fake sweep directory (stand-in runner, no training)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from varpo.experiments import analysis
from varpo.experiments.cli import app
from varpo.experiments.grid import expand_grid
from varpo.experiments.pareto import hypervolume
from varpo.experiments.report import write_report
from varpo.experiments.results import load_sweep
from varpo.experiments.sweep import run_sweep

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def fake_sweep(tmp_path, config, fake_runner, monkeypatch):
    """grpo, gdpo, dvao × 3 weights × 2 seeds; every gdpo run crashes."""
    monkeypatch.setenv("FAKE_FAIL", "gdpo")
    sweep = tmp_path / "sweep"
    points = expand_grid("grpo,gdpo,dvao", "0.1,0.5,0.9", "2")
    run_sweep(config, sweep, points, ["max_steps=30"], runner=fake_runner, jobs=2, argv=["varpo", "sweep", "cfg.yaml"])
    return sweep


def fake_score(method: str, w: float, seed: int) -> float:
    """The stand-in runner's final score of one objective (see fake_runner.py)."""
    return min(1.0, 0.25 + 0.5 * w + {"dvao": 0.08, "gdpo": -0.05}.get(method, 0.0) + 0.02 * seed)


def test_report_sections_numbers_and_figures(fake_sweep):
    path = write_report(fake_sweep, argv=["varpo", "report", "SWEEP"])
    text = path.read_text()
    for needle in (
        "# Sweep report",
        "12 of 18 finished",
        "`varpo sweep cfg.yaml`",
        "`varpo report SWEEP`",
        "Reference point (correctness = 0, format = 0)",
        "## Pareto frontiers",
        "Table 1/2 style",
        "## Training dynamics at weights (0.5, 0.5)",
        "## Monotonicity",
        "## Runs not finished",
        "gdpo__w0.1-0.9__s0",
        "exit status 3",
    ):
        assert needle in text, needle
    # every variant gets a hypervolume row, also the one whose runs all failed
    hv_rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z_+]+)` \| ([^|]+) \|", text, re.M)}
    assert set(hv_rows) >= {"grpo", "gdpo", "dvao"} and hv_rows["gdpo"].strip() == "n/a"
    for png in ("hypervolume.png", "pareto_correctness__format.png", "dynamics.png", "eval_curves.png"):
        assert (fake_sweep / png).read_bytes().startswith(PNG), png

    # the hypervolume of each seed equals the one computed from the runner's known scores
    sweep = load_sweep(fake_sweep)
    rows = {r.variant: r for r in analysis.hypervolumes(sweep, ["correctness", "format"], [0, 0])}
    for seed in (0, 1):
        pts = [(fake_score("dvao", w, seed), fake_score("dvao", 1 - w, seed)) for w in (0.1, 0.5, 0.9)]
        assert rows["dvao"].per_seed[seed] == pytest.approx(hypervolume(pts, (0, 0)))
    assert rows["dvao"].ci.n == 2 and rows["gdpo"].ci.n == 0
    assert rows["dvao"].ci.mean > rows["grpo"].ci.mean  # the stand-in gives dvao a +0.08 bonus
    delta = analysis.paired_difference(rows["dvao"], rows["grpo"])
    diffs = [rows["dvao"].per_seed[s] - rows["grpo"].per_seed[s] for s in (0, 1)]
    assert delta.n == 2 and delta.mean == pytest.approx(np.mean(diffs)) and delta.low > 0
    assert analysis.paired_difference(rows["gdpo"], rows["grpo"]).n == 0

    # Table 1/2 at equal weights: start row from the eval curve's step 0, and the final scores
    table = {r.label: r for r in analysis.score_table(sweep, ["correctness", "format"], (0.5, 0.5))}
    assert table["start (step 0)"].cells["correctness"].mean == pytest.approx(0.1)
    assert table["dvao"].cells["correctness"].mean == pytest.approx(
        np.mean([fake_score("dvao", 0.5, s) for s in (0, 1)])
    )
    # monotonic stand-in curves -> monotonicity 1
    mono = {r.variant: r for r in analysis.monotonicity_table(sweep, ["correctness", "format"])}
    assert mono["dvao"].cells["correctness"].mean == pytest.approx(1.0)
    assert math.isnan(mono["gdpo"].cells["all"].mean)
    # dynamics: the torn last line of metrics.jsonl is ignored, steps 1..30
    panels = {p.title: p for p in analysis.dynamics(sweep, ["correctness", "format"], (0.5, 0.5))}
    assert list(panels["reward mean: correctness"].curves["dvao"].steps) == list(range(1, 31))
    assert panels["effective weight: format"].curves["grpo"].mean == pytest.approx(0.5)


def test_report_on_mean_reward_scores(fake_sweep, tmp_path):
    """--score mean_reward compares the eval's mean-reward block (stand-in: half the avg@k score), curves included."""
    text = write_report(fake_sweep, tmp_path, score="mean_reward").read_text()
    assert "`--score mean_reward`" in text
    sweep = load_sweep(fake_sweep, "mean_reward")
    rows = {r.variant: r for r in analysis.hypervolumes(sweep, ["correctness", "format"], [0, 0])}
    pts = [(fake_score("grpo", w, 1) / 2, fake_score("grpo", 1 - w, 1) / 2) for w in (0.1, 0.5, 0.9)]
    assert rows["grpo"].per_seed[1] == pytest.approx(hypervolume(pts, (0, 0)))
    run = sweep.select("dvao", (0.5, 0.5))[0]
    steps, scores = run.curve_scores("format")
    assert steps[0] == 0 and scores[0] == pytest.approx(0.05) and scores[-1] == pytest.approx(run.score("format"))
    assert run.score("all") == load_sweep(fake_sweep).select("dvao", (0.5, 0.5))[0].score("all")
    with pytest.raises(ValueError, match="score must be one of"):
        load_sweep(fake_sweep, "accuracy")


def test_report_is_deterministic(fake_sweep, tmp_path):
    a = write_report(fake_sweep, tmp_path / "a").parent
    b = write_report(fake_sweep, tmp_path / "b").parent
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in sorted(p.name for p in a.iterdir()):
        if name == "report.md":  # the "Report: … at commit X" line follows the working tree, which may change
            strip = lambda p: [line for line in p.read_text().splitlines() if not line.startswith("- Report:")]  # noqa: E731
            assert strip(a / name) == strip(b / name)
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_three_objectives_pairwise_frontiers(tmp_path, config, fake_runner):
    sweep = tmp_path / "sweep3"
    points = expand_grid("grpo,dvao", "0.2:0.3:0.5,0.5:0.25:0.25,0.1:0.1:0.8", "1")
    run_sweep(config, sweep, points, ["max_steps=10"], runner=fake_runner, jobs=2)
    text = write_report(sweep, reference=[0.1, 0.1, 0.1]).read_text()
    assert "Hypervolume (3-D)" in text and "Reference point (correctness = 0.1, format = 0.1, length = 0.1)" in text
    for pair in ("correctness__format", "correctness__length", "format__length"):
        assert (sweep / f"pareto_{pair}.png").exists()


def test_report_before_any_run_finished(tmp_path, config):
    sweep = tmp_path / "sweep"
    run_sweep(config, sweep, expand_grid("grpo", "0.5", "1"), runner=["python3", "-c", "raise SystemExit(1)"])
    text = write_report(sweep).read_text()
    assert "No run has finished yet" in text and "grpo__w0.5-0.5__s0" in text


def test_report_on_a_manifest_entry_without_its_grid_point_names_the_run(fake_sweep):
    manifest = json.loads((fake_sweep / "sweep.json").read_text())
    name = next(iter(manifest["runs"]))
    del manifest["runs"][name]["point"]
    (fake_sweep / "sweep.json").write_text(json.dumps(manifest))
    res = CliRunner().invoke(app, ["report", str(fake_sweep)])
    assert res.exit_code == 2, res.output
    assert f"sweep.json is corrupt: run {name!r} has no valid grid point (None)" in " ".join(res.output.split())


def test_cli_sweep_dry_run_sweep_and_report(tmp_path, config, fake_runner):
    cli = CliRunner()
    sweep = tmp_path / "cli"
    runner = " ".join(fake_runner)
    args = ["sweep", str(config), "max_steps=8", "--methods", "grpo,dvao", "--weights", "0.3,0.7", "--seeds", "1"]
    res = cli.invoke(app, [*args, "--out", str(sweep), "--runner", runner, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "dvao__w0.7-0.3__s0" in res.output and not (sweep / "runs").exists()
    res = cli.invoke(app, [*args, "--out", str(sweep), "--runner", runner, "--jobs", "2"])
    assert res.exit_code == 0, res.output
    assert (sweep / "report.md").exists()
    res = cli.invoke(app, ["report", str(sweep), "--reference", "0.2,0.2", "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "correctness = 0.2" in (tmp_path / "rep" / "report.md").read_text()
    res = cli.invoke(app, ["report", str(sweep), "--reference", "0.2"])
    assert res.exit_code != 0 and "reference point has 1 values" in res.output
    res = cli.invoke(app, ["sweep", str(config), "--methods", "nope", "--out", str(sweep)])
    assert res.exit_code != 0 and "unknown method" in res.output


def test_objectives_keep_the_task_order_through_sorted_json():
    """eval.json is written with sorted keys; ``objective_order`` restores the task's reward order (weights and
    report columns follow it), and a file without it keeps its key order."""
    from varpo.experiments.results import _in_task_order

    scores = {"concise": 0.5, "correct": 0.25}
    assert list(_in_task_order(scores, ["correct", "concise"])) == ["correct", "concise"]
    assert list(_in_task_order(scores, None)) == ["concise", "correct"]
    assert _in_task_order(scores, ["correct", "gone"]) == {"correct": 0.25, "concise": 0.5}


def test_testbed_claims_refuses_a_folder_without_runs(tmp_path, capsys):
    """A published claim folder whose per-run files are missing must not print nothing and exit 0."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "testbed" / "claims.py"
    spec = importlib.util.spec_from_file_location("testbed_claims", path)
    claims = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(claims)
    assert claims.main([str(tmp_path)]) == 2
    assert "no runs/*/eval.json" in capsys.readouterr().err
