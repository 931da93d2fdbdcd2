"""benchmarks/testbed/collapse_alarm.py on a synthetic sweep folder (the committed testbed sweeps have no per-step
metrics yet): lead time on a lost objective, false alarms on kept ones, and the old-run fallback metric."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _load():
    path = ROOT / "benchmarks" / "testbed" / "collapse_alarm.py"
    spec = importlib.util.spec_from_file_location("collapse_alarm_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(sweep: Path, name: str, signal: dict[str, list[float]], final: dict[str, float], curve, key="frac_signal"):
    run = sweep / "runs" / name
    run.mkdir(parents=True)
    steps = len(next(iter(signal.values())))
    lines = []
    for i in range(steps):
        record = {"step": i + 1, "loss": 0.1, **{f"adv/{key}/{k}": v[i] for k, v in signal.items()}}
        lines.append(json.dumps(record))
    lines.append(json.dumps({"step": steps, "eval_loss": 0.3}))  # an eval record: no signal keys, skipped
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    points = [{"step": s, "objectives": obj} for s, obj in curve]
    (run / "eval.json").write_text(json.dumps({"objectives": final, "steps": steps, "curve": points}))


def test_lead_time_and_false_alarms_on_a_synthetic_sweep(tmp_path, capsys):
    mod = _load()
    # run a: "hard" loses its signal at step 11 (window 5 -> alarm at step 15) and ends lost; the eval curve
    # (every 10 steps) shows it lost from step 20. "easy" keeps varying.
    _run(
        tmp_path,
        "a",
        {"hard": [0.5] * 10 + [0.0] * 30, "easy": [0.75] * 40},
        {"hard": 0.0, "easy": 0.8},
        [
            (0, {"hard": 0.3, "easy": 0.5}),
            (10, {"hard": 0.2, "easy": 0.6}),
            (20, {"hard": 0.0, "easy": 0.7}),
            (30, {"hard": 0.02, "easy": 0.7}),
            (40, {"hard": 0.0, "easy": 0.8}),
        ],
    )
    # run b (an old run: only group_std_mean): "hard" dips for 6 steps, recovers and is kept (a false alarm);
    # "easy" saturates (constant, always met) for the last 8 steps (fires, counted as saturated)
    _run(
        tmp_path,
        "b",
        {"hard": [0.1] * 4 + [0.0] * 6 + [0.2] * 30, "easy": [0.3] * 32 + [0.0] * 8},
        {"hard": 0.4, "easy": 1.0},
        [(0, {"hard": 0.3, "easy": 0.5}), (40, {"hard": 0.4, "easy": 1.0})],
        key="group_std_mean",
    )
    out = tmp_path / "result.json"
    assert mod.main([str(tmp_path), "--window", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["runs"] == 2
    assert result["lost"] == {
        "n": 1,
        "flagged": 1,
        "detection_rate": 1.0,
        "detection_ci95": pytest.approx((0.025, 1.0)),
        "lead_steps_median": 25,  # alarm at 15, final evaluation at 40
        "lead_steps_min": 25,
        "lead_steps_max": 25,
        "lead_vs_curve_median": 5,  # the curve shows it lost for good from step 20
    }
    assert result["kept"] == {
        "n": 3,
        "fired": 2,
        "false_alarm_rate": 2 / 3,
        "false_alarm_ci95": pytest.approx((0.0943, 0.9916), abs=1e-4),
        "fired_on_saturated": 1,
    }
    rows = {(r["run"], r["objective"]): r for r in result["rows"]}
    assert rows[("b", "hard")]["alarm_steps"] == [9] and rows[("b", "easy")]["alarm_steps"] == [37]
    assert "1/1 flagged" in capsys.readouterr().out
    # the default window (20): no false alarm on b's short dip or late saturation; a's loss flagged 10 steps early
    default = mod.analyse(tmp_path, 20, 0.05, 0.95)
    assert default["kept"]["fired"] == 0 and default["lost"]["lead_steps_median"] == 10


def test_a_folder_without_per_step_metrics_is_an_error(tmp_path, capsys):
    mod = _load()
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "eval.json").write_text("{}")
    assert mod.main([str(tmp_path)]) == 2
    assert "nothing to validate" in capsys.readouterr().err
    assert mod.main([str(ROOT / "docs" / "results" / "testbed-easy_hard")]) == 2  # committed sweeps: none yet


def test_compact_metrics_keeps_what_the_analyses_read(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "testbed" / "compact_metrics.py"
    spec = importlib.util.spec_from_file_location("compact_metrics", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = tmp_path / "metrics.jsonl"
    rows = [
        {"step": 1, "adv/frac_signal/a": 0.123456789, "adv/group_std_mean/a": 0.5, "loss": 1.0, "reward/a/mean": 0.3},
        {"step": 2, "adv/weight/a": 1.0, "completions/mean_length": 12.0, "reward/a/std": 0.1},
        {"summary": True},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"torn')
    assert mod.main([str(src), str(tmp_path / "out.jsonl")]) == 0
    got = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert got == [
        {"step": 1, "adv/frac_signal/a": 0.123457, "adv/group_std_mean/a": 0.5, "reward/a/mean": 0.3},
        {"step": 2, "adv/weight/a": 1.0},
    ]
    (tmp_path / "empty.jsonl").write_text("")
    assert mod.main([str(tmp_path / "empty.jsonl"), str(tmp_path / "x.jsonl")]) == 2


def test_clopper_pearson_matches_known_values():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "testbed" / "collapse_alarm.py"
    spec = importlib.util.spec_from_file_location("collapse_alarm_cp", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # Reference values (exact binomial tails): 5/6 -> [0.3588, 0.9958]; 0/10 -> [0, 0.3085]; 10/10 -> [0.6915, 1]
    lo, hi = mod.clopper_pearson(5, 6)
    assert abs(lo - 0.3588) < 1e-4 and abs(hi - 0.9958) < 1e-4
    assert mod.clopper_pearson(0, 10)[0] == 0.0 and abs(mod.clopper_pearson(0, 10)[1] - 0.3085) < 1e-4
    assert abs(mod.clopper_pearson(10, 10)[0] - 0.6915) < 1e-4 and mod.clopper_pearson(10, 10)[1] == 1.0
    assert mod.clopper_pearson(0, 0) is None


def test_rolling_candidate_rule_needs_low_signal_and_low_reward():
    spec = importlib.util.spec_from_file_location(
        "collapse_alarm_rolling", ROOT / "benchmarks/testbed/collapse_alarm.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    steps = list(range(1, 41))
    low_signal = [1.0] * 10 + [0.1] * 30
    # collapse: low signal and low reward -> fires when the 20-step mean first reaches 0.15 (steps 10-29: 0.145)
    assert mod.rolling_alarm_steps(steps, low_signal, [0.05] * 40, 20, 0.15, 0.5) == [29]
    # saturation: low signal at a high reward -> never
    assert mod.rolling_alarm_steps(steps, low_signal, [0.99] * 40, 20, 0.15, 0.5) == []
    # missing values are left out of the means, never counted as 0
    assert mod.rolling_alarm_steps(steps, [None] * 40, [0.0] * 40, 20, 0.15, 0.5) == []
