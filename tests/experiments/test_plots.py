"""The report's figures stay readable on the runs users actually make: a 4-step run is not averaged flat, step axes
have integer ticks, two methods with identical scores are both visible and in the legend, point labels do not
overlap, and an objective whose reward never varied within a group is flagged in the figures, report.md,
report.json and on the command line."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from varpo.experiments import analysis, figures, many_figures
from varpo.experiments.analysis import FrontierPoint
from varpo.experiments.cli import app
from varpo.experiments.grid import expand_grid
from varpo.experiments.placement import Box, coincident_offsets
from varpo.experiments.report import REPORT_JSON, write_report
from varpo.experiments.results import load_sweep
from varpo.experiments.summary import smoothing_window
from varpo.experiments.sweep import run_sweep

OBJECTIVES = ["correctness", "format"]
FAKE_RUNNER = [sys.executable, str(Path(__file__).with_name("fake_runner.py"))]


@pytest.fixture(scope="module")
def short_sweep(tmp_path_factory) -> Path:
    """grpo, ac, gdpo, dvao × w1 ∈ {0.3, 0.7} × 1 seed, 4 steps each; gdpo crashes; `format` is constant in every
    group. The stand-in runner gives grpo and ac identical scores (only dvao and gdpo get a bonus)."""
    root = tmp_path_factory.mktemp("short")
    config = root / "cfg.yaml"
    config.write_text("task: toolcall\nmax_steps: 4\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_FAIL", "gdpo")
        mp.setenv("FAKE_CONSTANT", "format")
        points = expand_grid("grpo,ac,gdpo,dvao", "0.3,0.7", "1")
        run_sweep(config, root / "sweep", points, ["max_steps=4"], runner=FAKE_RUNNER, jobs=2)
    return root / "sweep"


# ------------------------------------------------------------------------------------------------------------------
# Smoothing window
# ------------------------------------------------------------------------------------------------------------------


def test_smoothing_window_is_capped_by_the_run_length():
    assert [smoothing_window(n) for n in (0, 1, 4, 7, 8, 12, 16, 30, 59, 60, 500)] == [
        1,
        1,
        1,
        1,
        1,
        3,
        3,
        7,
        13,
        15,
        15,
    ]
    assert smoothing_window(500, 10) == 10  # an uncapped request is kept as given
    assert all(smoothing_window(n) % 2 == 1 for n in range(200))  # a capped window stays centred
    with pytest.raises(ValueError, match="window must be >= 1"):
        smoothing_window(30, 0)


def test_four_step_run_is_drawn_unsmoothed_everywhere(short_sweep):
    sweep = load_sweep(short_sweep)
    for panels in (
        analysis.dynamics(sweep, OBJECTIVES, (0.3, 0.7), window=15),
        analysis.eval_curves(sweep, OBJECTIVES, (0.3, 0.7), window=15),
    ):
        assert panels
        for panel in panels:
            for curve in panel.curves.values():
                assert curve.window == 1
                np.testing.assert_allclose(curve.smooth, curve.mean, rtol=1e-12)  # window 15: ~flat
    reward = next(p for p in analysis.dynamics(sweep, OBJECTIVES, (0.3, 0.7)) if p.title == "reward mean: correctness")
    assert np.ptp(reward.curves["dvao"].smooth) > 0.3  # the stand-in's reward rises over the run


def test_one_window_per_figure_from_the_longest_curve():
    short = analysis.Curve(np.arange(8.0), np.arange(8.0), np.arange(8.0), 1)
    long = analysis.Curve(np.arange(30.0), np.sin(np.arange(30.0)), np.zeros(30), 2)
    panels = [analysis.Panel("a", {"x": short}), analysis.Panel("b", {"y": long})]
    assert analysis.smooth_panels(panels, 15) == 7 == analysis.used_window(panels)
    assert short.window == long.window == 7
    np.testing.assert_allclose(long.smooth[3], np.sin(np.arange(7.0)).mean())


# ------------------------------------------------------------------------------------------------------------------
# Integer step ticks
# ------------------------------------------------------------------------------------------------------------------


def _integer_ticks(ax) -> bool:
    lo, hi = sorted(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]
    return len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_step_axes_have_integer_ticks(short_sweep):
    sweep = load_sweep(short_sweep)
    panels = analysis.dynamics(sweep, OBJECTIVES, (0.3, 0.7))
    fig = figures.build_panels(panels, sweep.variants, "dynamics")
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(panels) and all(_integer_ticks(ax) for ax in axes)
    fig = many_figures.build_small_multiples(analysis.eval_curves(sweep, OBJECTIVES, (0.3, 0.7)), sweep.variants, "t")
    fig.canvas.draw()
    assert all(_integer_ticks(ax) for ax in fig.axes if ax.get_visible())


# ------------------------------------------------------------------------------------------------------------------
# Pareto figure: coincident points, legend, labels
# ------------------------------------------------------------------------------------------------------------------


def test_coincident_offsets_separate_only_shared_points():
    a = np.array([[0.1, 0.2], [0.5, 0.5]])
    b = np.array([[0.1, 0.2], [0.6, 0.4]])
    offsets, clusters = coincident_offsets({"a": a, "b": b}, radius=4.0)
    assert clusters == [("a", "b")]
    np.testing.assert_allclose(offsets["a"][0], [0.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(offsets["b"][0], [0.0, -4.0], atol=1e-12)
    assert not offsets["a"][1].any() and not offsets["b"][1].any()


def _marker_positions(fig, ax) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per variant: (data xy, display xy) of every drawn marker (errorbar containers, identified by marker shape)."""
    by_marker = {m: v for v, (m, _) in figures.markers(["grpo", "ac", "gdpo", "dvao"]).items()}
    out: dict[str, list] = {}
    for container in ax.containers:
        line = container.lines[0]
        data = line.get_xydata()
        shown = line.get_transform().transform(data)
        out.setdefault(by_marker[line.get_marker()], []).extend(zip(data, shown, strict=True))
    return out


def test_identical_pareto_points_are_both_visible_and_every_method_is_in_the_legend(short_sweep):
    sweep = load_sweep(short_sweep)
    points = analysis.frontier_points(sweep, OBJECTIVES)
    assert [p.mean.tolist() for p in points["grpo"]] == [p.mean.tolist() for p in points["ac"]]  # they coincide
    fig = figures.build_pareto(points, OBJECTIVES, (0, 1), reference=(0, 0))
    ax = fig.axes[0]
    fig.canvas.draw()
    drawn = _marker_positions(fig, ax)
    assert len(drawn["grpo"]) == len(drawn["ac"]) == 2
    min_px = 6 * fig.dpi / 72  # markers are 4.5 points wide: 6 points apart is visibly two markers
    for (g_data, g_shown), (a_data, a_shown) in zip(drawn["grpo"], drawn["ac"], strict=True):
        np.testing.assert_array_equal(g_data, a_data)  # the data are not moved
        assert np.linalg.norm(g_shown - a_shown) >= min_px
    for d_data, d_shown in drawn["dvao"]:  # a point nobody shares is drawn where it is
        np.testing.assert_allclose(d_shown, ax.transData.transform(d_data))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["grpo", "ac", "gdpo (no finished run)", "dvao"]
    assert "grpo = ac" in ax.get_title()


def _crowded_points() -> dict[str, list[FrontierPoint]]:
    """Three methods whose points at each weight lie within 0.002 of each other: labels at one fixed offset would
    pile up on one another."""
    pts = {}
    for k, variant in enumerate(("grpo", "ac", "dvao")):
        pts[variant] = [
            FrontierPoint(
                variant, (w, 1 - w), np.array([0.2 + 0.5 * w + 0.001 * k, 0.7 - 0.5 * w]), np.full(2, np.nan), 1
            )
            for w in (0.1, 0.3, 0.5, 0.7, 0.9)
        ]
    return pts


def test_point_labels_do_not_overlap():
    fig = figures.build_pareto(_crowded_points(), OBJECTIVES, (0, 1))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = fig.axes[0].texts
    assert len(texts) == 15 and sorted({t.get_text() for t in texts}) == ["0.1", "0.3", "0.5", "0.7", "0.9"]
    boxes = [Box(*t.get_window_extent(renderer).extents) for t in texts]
    assert all(a.overlap(b) == 0 for a, b in itertools.combinations(boxes, 2))


def test_labels_of_coincident_points_are_drawn_once(short_sweep):
    points = analysis.frontier_points(load_sweep(short_sweep), OBJECTIVES)
    fig = figures.build_pareto(points, OBJECTIVES, (0, 1))
    # grpo and ac share both of their points: one label each; dvao: two
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["0.3", "0.3", "0.7", "0.7"]


# ------------------------------------------------------------------------------------------------------------------
# An objective that never varied within a group
# ------------------------------------------------------------------------------------------------------------------


def test_no_variance_classifies_every_run(short_sweep):
    sweep = load_sweep(short_sweep)
    checks = analysis.no_variance(sweep, OBJECTIVES)
    assert checks["format"].never_varied and len(checks["format"].runs_constant) == 6  # 3 methods × 2 weights
    assert not checks["correctness"].never_varied and len(checks["correctness"].runs_varied) == 6
    # one run where format did vary: no longer "never", and the constant runs are still named
    runs = sweep.finished
    runs[0].__dict__["metrics"] = [
        {"step": 1, "adv/group_std_mean/format": 0.0},
        {"step": 2, "adv/group_std_mean/format": 0.3},
    ]
    # without the within-group metric: a batch std of 0 proves constant groups, a positive one proves nothing
    runs[1].__dict__["metrics"] = [{"step": 1, "reward/format/std": 0.0}]
    runs[2].__dict__["metrics"] = [{"step": 1, "reward/format/std": 0.2}]
    check = analysis.no_variance(sweep, OBJECTIVES)["format"]
    assert not check.never_varied
    assert check.runs_varied == [runs[0].point.name] and check.runs_unknown == [runs[2].point.name]
    assert runs[1].point.name in check.runs_constant and len(check.runs_constant) == 4


def test_report_flags_an_objective_that_never_varied(short_sweep, tmp_path):
    text = write_report(short_sweep, tmp_path).read_text()
    assert "**Warning: objective(s) `format` never varied within a group in training**" in text
    assert "`correctness` never varied" not in text
    summary = json.loads((tmp_path / REPORT_JSON).read_text())
    assert summary["never_varied"] == ["format"]
    assert summary["within_group_variance"]["format"]["never_varied"] is True
    assert summary["within_group_variance"]["correctness"] == {
        "never_varied": False,
        "runs_varied": 6,
        "runs_constant": [],
        "runs_unknown": [],
    }
    assert summary["smoothing_window"] == {"dynamics": 1, "eval_curves": 1}
    assert "unsmoothed" in text and "window 15" not in text


def test_never_varied_objective_is_flagged_in_its_figures(short_sweep):
    sweep = load_sweep(short_sweep)
    panels = analysis.dynamics(sweep, OBJECTIVES, (0.3, 0.7))
    analysis.flag_panels(panels, ["format"])
    flagged = {p.title for p in panels if p.note}
    assert flagged == {"reward mean: format", "reward std: format", "effective weight: format"}
    fig = figures.build_panels(panels, sweep.variants, "dynamics")
    notes = {ax.get_title(): [t.get_text() for t in ax.texts] for ax in fig.axes if ax.get_visible()}
    assert all(any("never varied" in t for t in notes[title]) for title in flagged)
    assert not any(notes[p.title] for p in panels if p.title not in flagged)
    fig = figures.build_pareto(analysis.frontier_points(sweep, OBJECTIVES), OBJECTIVES, (0, 1), never_varied=["format"])
    assert "never varied" in fig.axes[0].get_ylabel() and "never varied" not in fig.axes[0].get_xlabel()


def test_cli_report_warns_about_a_never_varied_objective(short_sweep, tmp_path):
    res = CliRunner().invoke(app, ["report", str(short_sweep), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "warning: objective 'format' never varied within a group" in res.output
    assert "'correctness'" not in res.output


def test_many_objectives_report_flags_the_constant_objective(tmp_path, monkeypatch):
    """K = 5 (> MANY): the flag reaches the small multiples and the per-objective response panel too."""
    config = tmp_path / "cfg.yaml"
    config.write_text("task: toolcall\nmax_steps: 4\n")
    monkeypatch.setenv("FAKE_CONSTANT", "obj01")
    points = expand_grid("grpo,dvao", "0.2:0.2:0.2:0.2:0.2", "1")
    run_sweep(config, tmp_path / "sweep", points, ["max_steps=4"], runner=FAKE_RUNNER, jobs=2)
    drawn = {}
    real = many_figures.small_multiples

    def record(panels, variants, path, title, ylabel=""):
        drawn[path.name] = {p.title: p.note for p in panels}
        return real(panels, variants, path, title, ylabel)

    monkeypatch.setattr(many_figures, "small_multiples", record)
    text = write_report(tmp_path / "sweep").read_text()
    assert "objective(s) `obj01` never varied" in text
    assert json.loads((tmp_path / "sweep" / REPORT_JSON).read_text())["never_varied"] == ["obj01"]
    for name in ("dynamics_reward_mean.png", "dynamics_reward_std.png", "eval_curves.png"):
        notes = drawn[name]
        flagged = [t for t, n in notes.items() if n]
        assert flagged == [next(t for t in notes if t.endswith("obj01"))], (name, notes)
