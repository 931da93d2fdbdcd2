"""benchmarks/testbed/claims.py on hand-made sweep folders: every number below is computed by hand."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("testbed_claims", ROOT / "benchmarks" / "testbed" / "claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ALPHA_DIFFS = [-0.1, 0.1, -0.2, 0.2, 0.0, 0.0]  # saw − grpo on alpha per seed: mean 0, sign-flip p = 1


def _run(
    root: Path, method: str, seed: int, objectives: dict, all_rate: float, per_prompt: dict | None, w=(0.5, 0.5)
) -> None:
    run = root / "runs" / f"{method}__w{w[0]}-{w[1]}__s{seed}"
    run.mkdir(parents=True)
    payload = {
        "config": {"advantage_method": method, "seed": seed, "reward_weights": list(w)},
        "objectives": objectives,
        "all": all_rate,
        "curve": [{"step": 0, "objectives": {"alpha": 0.5, "length": 0.25}}],
        "eval": {"prompts": 4, "k": 1, "seed": seed},
    }
    if per_prompt is not None:
        payload["per_prompt"] = per_prompt
    (run / "eval.json").write_text(json.dumps(payload))


def _sweep(root: Path, seeds: list[int]) -> Path:
    """grpo loses length (0 on every prompt); saw keeps it on 2 of 4 prompts; all-objectives has no per-prompt rates."""
    for i, seed in enumerate(seeds):
        _run(root, "grpo", seed, {"alpha": 0.9, "length": 0.0}, 0.0, {"length": [0.0] * 4, "alpha": [0.9] * 4})
        saw_alpha = 0.9 + ALPHA_DIFFS[i]
        _run(
            root, "saw", seed, {"alpha": saw_alpha, "length": 0.5}, 0.1 * (i + 1),
            {"length": [1.0, 1.0, 0.0, 0.0], "alpha": [saw_alpha] * 4},
        )  # fmt: skip
    return root


def test_six_seeds_paired_exact_and_holm_over_the_stated_family(tmp_path, capsys):
    claims = _module()
    sweep = _sweep(tmp_path / "a", list(range(6)))
    out = tmp_path / "claims.json"
    assert claims.main([str(sweep), "--pairs", "saw-grpo", "--family", "length,all objectives", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stated: length, all objectives over 2 comparisons" in printed
    assert "| metric | estimate | se | 95% CI | n | test | p | p_holm | family | MDE | verdict |" in printed
    report = json.loads(out.read_text())
    rows = {r["measure"]: r for r in report["rows"]}
    assert set(rows) == {"length", "all objectives"} and report["family"]["size"] == 2
    length = rows["length"]
    # every seed +0.5: between-seed s.e. 0; per-prompt differences [1, 1, 0, 0] -> s.d. 1/sqrt(3), s.e. 1/(2 sqrt 3)
    # per seed; pooled over 6 seeds sqrt(6 se^2)/6 = se/sqrt(6)
    assert length["estimate"] == pytest.approx(0.5)
    assert length["se"] == pytest.approx(1 / (2 * math.sqrt(3)) / math.sqrt(6))
    assert length["within_se"]["0"] == pytest.approx(1 / (2 * math.sqrt(3)))
    assert length["p"] == pytest.approx(2 / 64)  # all six differences positive: 2 of 2^6 sign patterns
    assert length["p_holm"] == pytest.approx(2 * 2 / 64)  # Holm over 2: 0.0625 >= 0.05
    assert not length["established"] and length["verdict"].startswith("not established")
    every = rows["all objectives"]  # diffs 0.1 .. 0.6, no per-prompt rates: between-seed s.e. only
    assert every["estimate"] == pytest.approx(0.35)
    assert every["se"] == pytest.approx(math.sqrt(0.035) / math.sqrt(6))  # s.d. of 0.1..0.6 = sqrt(0.035)
    assert every["within_se"] is None
    assert every["per_seed"] == pytest.approx({str(s): 0.1 * (s + 1) for s in range(6)})
    assert every["p_holm"] == pytest.approx(0.0625)
    explore = {r["measure"]: r for r in report["exploratory"]}
    assert explore["alpha"]["p"] == pytest.approx(1.0) and explore["alpha"]["estimate"] == pytest.approx(0.0)
    assert explore["worst objective"]["p"] == pytest.approx(2 / 64)
    assert explore["worst objective"]["p_holm"] == pytest.approx(2 * 2 / 64)  # 2 exploratory rows, smallest p
    assert explore["worst objective"]["family"] == 2
    assert report["learnability"]["length"] == pytest.approx({"start": 0.25, "best_final": 0.5})


def test_pooled_folders_reach_the_threshold_a_single_one_cannot(tmp_path, capsys):
    claims = _module()
    a = _sweep(tmp_path / "a", list(range(6)))
    b = _sweep(tmp_path / "b", list(range(100, 106)))
    out = tmp_path / "claims.json"
    assert claims.main([str(a), str(b), "--pairs", "saw-grpo", "--family", "length", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["n"] == 12 and row["p"] == pytest.approx(2 / 4096) and row["p_holm"] == pytest.approx(2 / 4096)
    assert row["established"] and row["verdict"] == "established (+)"
    assert "| saw − grpo: length | +0.500 |" in capsys.readouterr().out


def test_default_family_is_every_row_and_stated(tmp_path, capsys):
    claims = _module()
    sweep = _sweep(tmp_path / "a", list(range(6)))
    out = tmp_path / "claims.json"
    assert claims.main([str(sweep), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["family"]["size"] == 4 and report["exploratory"] == []  # saw − grpo x 4 metrics (gdpo absent)
    assert "default: every row printed (4 comparisons)" in capsys.readouterr().out
    # Holm over 4: p = 2/64 three times (x4, x3, x2 -> running max 0.125) and alpha p = 1
    assert sorted(r["p_holm"] for r in report["rows"]) == pytest.approx([0.125, 0.125, 0.125, 1.0])


def test_paired_within_se_uses_per_prompt_differences_only_for_the_same_prompts():
    claims = _module()
    run = {"per_prompt": {"x": [1.0, 0.0]}, "eval": {"seed": 0}}
    same = {"per_prompt": {"x": [1.0, 0.0]}, "eval": {"seed": 0}}
    other = {"per_prompt": {"x": [1.0, 0.0]}, "eval": {"seed": 1}}
    assert claims.paired_within_se(run, same, "x") == pytest.approx(0.0)  # identical per prompt: no sampling noise
    assert claims.paired_within_se(run, other, "x") == pytest.approx(math.hypot(0.5, 0.5))  # s.d. 0.707 / sqrt 2
    assert math.isnan(claims.paired_within_se(run, same, "y"))


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    claims = _module()
    assert claims.main([str(tmp_path)]) == 2
    assert "no runs/*/eval.json" in capsys.readouterr().err
    sweep = _sweep(tmp_path / "a", [0, 1])
    assert claims.main([str(sweep), "--family", "lenght"]) == 2
    assert "--family: no such metric 'lenght'" in capsys.readouterr().err
    assert claims.main([str(sweep), str(sweep)]) == 2
    assert "grpo seed 0 at weights (0.5, 0.5) already loaded" in capsys.readouterr().err
    assert claims.main([str(sweep), "--pairs", "saw"]) == 2
    assert "--pairs: 'saw' is not METHOD-BASELINE" in capsys.readouterr().err
    (tmp_path / "a" / "runs" / "grpo__w0.5-0.5__s0" / "eval.json").write_text("{}")
    assert claims.main([str(sweep)]) == 2
    assert "grpo__w0.5-0.5__s0/eval.json: not a run's eval.json (KeyError" in capsys.readouterr().err


def test_hypervolume_over_weight_vectors_is_compared_per_seed(tmp_path):
    claims = _module()
    points = {  # method -> (alpha, length) at w = (0.5, 0.5) and (0.9, 0.1)
        "grpo": [(0.5, 0.5), (1.0, 0.0)],  # HV: 0.5 x 0.5 = 0.25 ((1, 0) adds no area above y = 0)
        "saw": [(0.5, 1.0), (1.0, 0.5)],  # HV: 1.0 x 0.5 + 0.5 x (1.0 - 0.5) = 0.75
    }
    for seed in range(6):
        for method, pts in points.items():
            for w, (a, length) in zip([(0.5, 0.5), (0.9, 0.1)], pts, strict=True):
                _run(tmp_path, method, seed, {"alpha": a, "length": length}, min(a, length), None, w)
    out = tmp_path / "claims.json"
    assert claims.main([str(tmp_path), "--family", "hypervolume", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["metric"] == "saw − grpo: hypervolume" and row["estimate"] == pytest.approx(0.5)
    assert row["p"] == pytest.approx(2 / 64) and row["p_holm"] == pytest.approx(2 / 64) and row["established"]
    names = {r["metric"] for r in report["exploratory"]}
    assert "0.5/0.5 saw − grpo: length" in names and "0.9/0.1 saw − grpo: alpha" in names
    assert len(names) == 2 * 4  # two weight vectors x (alpha, length, worst, all)
