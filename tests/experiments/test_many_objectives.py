"""Many objectives: K-dimensional hypervolume (exact algorithms agree; Monte Carlo within its stated bound), the
worst-objective column, and a K = 16 sweep report that renders quickly with per-objective figures."""

from __future__ import annotations

import time

import numpy as np
import pytest

from varpo.experiments.grid import expand_grid
from varpo.experiments.pareto import _dominating, _hv, _hv_inclusion_exclusion, exact_method, hypervolume_estimate
from varpo.experiments.report import write_report
from varpo.experiments.results import load_sweep
from varpo.experiments.sweep import run_sweep

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("n", "k"), [(6, 3), (8, 4), (7, 6)])
def test_exact_algorithms_agree_and_monte_carlo_is_within_its_bound(n, k):
    pts = np.random.default_rng(n * k).random((n, k))
    shifted = _dominating(pts, [0.0] * k)
    slicing = _hv(shifted)
    assert _hv_inclusion_exclusion(shifted) == pytest.approx(slicing, rel=1e-12)
    mc = hypervolume_estimate(pts, [0.0] * k, budget=0)
    assert mc.method == "monte-carlo" and mc.bound > 0
    assert abs(mc.value - slicing) <= mc.bound


def test_inclusion_exclusion_matches_a_hand_value_at_k_16():
    # Two boxes [0, a] and [0, b] in 16-D: |A ∪ B| = Πa + Πb − Π min(a, b).
    a = np.full(16, 0.9)
    a[0] = 0.5
    b = np.full(16, 0.8)
    b[1] = 0.95
    est = hypervolume_estimate(np.stack([a, b]), [0.0] * 16)
    assert est.method in ("slicing", "inclusion-exclusion") and est.bound == 0
    assert est.value == pytest.approx(a.prod() + b.prod() - np.minimum(a, b).prod(), rel=1e-12)
    assert exact_method(40, 16) is None and exact_method(5, 32) == "inclusion-exclusion"
    assert exact_method(20, 3) == "slicing"


def test_k16_sweep_report_renders_fast(tmp_path, config, fake_runner):
    k = 16
    base = np.full(k, 1.0 / k)
    vectors = []
    for i in range(4):  # uniform and three vectors that favour a block of objectives
        w = base.copy()
        if i:
            w[(i - 1) * 5 : (i - 1) * 5 + 5] *= 3
        vectors.append(":".join(f"{x / w.sum():.4f}" for x in w))
    sweep = tmp_path / "sweep16"
    points = expand_grid("grpo,dvao,gdpo", ",".join(vectors), "2")
    run_sweep(config, sweep, points, ["max_steps=30"], runner=fake_runner, jobs=2, argv=["varpo", "sweep"])
    # CPU time of this process: what rendering costs, independent of other jobs sharing the cores (measured ~5 s)
    start = time.process_time()
    text = write_report(sweep).read_text()
    elapsed = time.process_time() - start
    assert elapsed < 60, elapsed
    assert "Computed exactly (inclusion-exclusion" in text
    assert "## Hypervolume (16-D)" in text
    header = next(line for line in text.splitlines() if line.startswith("| | all | worst | obj00"))
    assert header.count("|") == k + 5
    for png in ("objectives.png", "dynamics_reward_mean.png", "effective_weights.png", "dynamics.png"):
        assert (sweep / png).read_bytes().startswith(PNG), png
    assert not list(sweep.glob("pareto_*.png"))  # no C(16, 2) = 120 pair plots
    run = load_sweep(sweep).finished[0]
    assert run.score("worst") == min(run.objectives.values())


def test_weight_heatmap_labels_a_never_varied_objective():
    """K > 4: the heat map's row of an objective that never varied says so (its weight is 0 by the no-signal rule)."""
    from varpo.experiments.analysis import Curve, Panel
    from varpo.experiments.many_figures import build_weight_heatmap

    objectives = [f"obj{i}" for i in range(6)]
    steps = np.arange(1, 5)
    panels = []
    for i, name in enumerate(objectives):
        w = np.zeros(4) if name == "obj3" else np.full(4, 0.2) + 0.01 * i
        panels.append(Panel(f"effective weight: {name}", {"grpo": Curve(steps, w, w, 2)}))
    fig = build_weight_heatmap(panels, objectives, ["grpo"], never_varied=["obj3"])
    ticks = fig.axes[0].get_yticklabels()
    labels = [t.get_text() for t in ticks]
    assert labels[3] == "obj3 — never varied"
    assert [lab for i, lab in enumerate(labels) if i != 3] == [o for o in objectives if o != "obj3"]
    assert ticks[3].get_color() == "firebrick" and ticks[0].get_color() != "firebrick"
    plain = build_weight_heatmap(panels, objectives, ["grpo"])
    assert [t.get_text() for t in plain.axes[0].get_yticklabels()] == objectives
