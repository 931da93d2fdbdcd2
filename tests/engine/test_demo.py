"""`varpo demo` end to end at toy size: warm start, two RL runs, held-out table, plots, results."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from varpo import significance
from varpo.experiments import demo, demo_stats
from varpo.trl import shuffle_groups
from varpo.trl.trainer import _assert_whole_groups

from .conftest import TEST_TINY


def test_demo_smoke(tmp_path):
    """The whole demo at toy size: a warm start per seed (built by the sweep's prepare step), grpo and saw through
    the sweep runner, table with intervals, exact p, lost counts and verdicts, picture, results.json."""
    overrides = [
        f"tiny={json.dumps(TEST_TINY)}",
        "sft_demos=32",
        "sft_epochs=1",
        "train_prompts=16",
        "eval_prompts=4",
        "eval_k=2",
        "max_steps=2",
        "per_device_train_batch_size=8",
        "num_generations=4",
        "max_completion_length=8",
    ]
    result = demo.run(tmp_path / "demo", overrides=overrides, seeds=(3, 5))
    out = tmp_path / "demo"
    summary = result["summary"]
    assert summary["seeds"] == [3, 5] and summary["primary"] == ["length"]
    assert summary["objectives"] == ["alpha", "bravo", "charlie", "length", "all objectives"]
    for method in demo.METHODS:
        for o in summary["objectives"]:
            cell, per_seed = summary["table"][method][o], summary["per_seed"][method][o]
            within = summary["per_seed_prompt_cluster_se"][method][o]
            assert len(per_seed) == 2 and cell["mean"] == pytest.approx(sum(per_seed) / 2)
            assert cell["se"] == pytest.approx(significance.unit_se(per_seed, within), nan_ok=True)
            assert cell["lost"] == sum(r <= demo_stats.LOST for r in per_seed)
    length = summary["diffs"]["saw"]["length"]
    assert length["in_family"] and length["family"] == 1 and length["test"] == "permutation (exact)"
    assert length["p"] >= 2 / 6  # 2 + 2 seeds: C(4, 2) = 6 relabellings, never established
    assert not length["established"] and result["conclusion"]["saw"]["length"] == "none"
    assert not summary["diffs"]["saw"]["alpha"]["in_family"] and summary["diffs"]["saw"]["alpha"]["p_holm"] is None
    assert len(result["verdicts"]) == len(summary["objectives"])
    assert "descriptive" in result["verdicts"][0] and "does not show" in result["limitation"]
    assert (out / "demo.png").stat().st_size > 0
    table = (out / "eval.md").read_text()
    assert "| objective | warm start | grpo | saw | saw − grpo [95 % CI] | p (exact) | lost ≤ 0.05 | verdict |" in table
    saved = json.loads((out / "results.json").read_text())  # strict JSON: no NaN
    assert saved["seconds"]["total"] > 0 and saved["config"]["methods"] == ["grpo", "saw"]
    assert set(saved["warm_start_rates_per_seed"]) == {"3", "5"}
    # one warm start per seed: the two methods of a seed share it, the seeds differ (the cache key holds the seed)
    starts = {}
    for p in (out / "runs").glob("*/eval.json"):
        payload = json.loads(p.read_text())
        starts.setdefault(payload["config"]["seed"], set()).add(payload["start_model"])
    assert sorted(starts) == [3, 5] and all(len(s) == 1 for s in starts.values())
    assert starts[3] != starts[5] and sorted(saved["warm_start_models"].values()) == sorted(s.pop() for s in
                                                                                            starts.values())  # fmt: skip
    assert sorted(p.name for p in (out / "prepare").glob("seed*.log")) == ["seed3.log", "seed5.log"]
    # logs written to a file stay readable: one line per interval, no progress-bar redraws
    for log in (out / "runs").glob("*/run.log"):
        text = log.read_text()
        assert "\r" not in text and "it/s" not in text
        assert "step 2/2 (100%)" in text


def _runs(grpo: list[float], saw: list[float], other: float = 0.5) -> dict:
    """eval.json-like payloads: ``length`` at the given per-seed rates, a word rule at ``other`` everywhere, with
    per-prompt rates (4 prompts) whose mean is the run's rate."""

    def payload(rate: float) -> dict:
        prompts = [min(1.0, max(0.0, rate + d)) for d in (-0.05, 0.05, -0.05, 0.05)]
        return {"objectives": {"alpha": other, "length": rate}, "all": rate / 2,
                "per_prompt": {"alpha": [other] * 4, "length": prompts, "all": [x / 2 for x in prompts]}}  # fmt: skip

    return {"grpo": {s: payload(r) for s, r in enumerate(grpo)}, "saw": {s: payload(r) for s, r in enumerate(saw)}}


def test_demo_statistics_fully_separated_seeds_are_established():
    """4 vs 4 fully separated: the exact permutation p is 2/70 (only the observed split and its mirror are as
    extreme), < 0.05 within a one-metric family: established; the lost counts read off the per-seed rates."""
    runs = _runs([0.0, 0.01, 0.04, 0.2], [0.6, 0.8, 0.9, 0.7])
    summary = demo_stats.summarize(runs, "grpo", ("length",))
    r = summary["diffs"]["saw"]["length"]
    assert r.p == pytest.approx(2 / 70) and r.p_holm == pytest.approx(2 / 70) and r.family == 1
    assert r.established and r.estimate == pytest.approx(0.75 - 0.0625)
    assert summary["table"]["grpo"]["length"]["lost"] == 3 and summary["table"]["saw"]["length"]["lost"] == 0
    assert demo_stats.lost_counts(summary, "length") == "grpo 3/4, saw 0/4"
    # s.e. of a rate: between-seed s.d./2 here (larger than the pooled prompt-clustered s.e. of 0.0577/2)
    assert summary["table"]["saw"]["length"]["se"] == pytest.approx(statistics.stdev([0.6, 0.8, 0.9, 0.7]) / 2)
    # descriptive rows keep their p but are never established, whatever it is
    alpha = summary["diffs"]["saw"]["alpha"]
    assert alpha.p == 1.0 and not alpha.established and math.isnan(alpha.p_holm)
    assert summary["diffs"]["saw"]["all objectives"].p == pytest.approx(2 / 70)
    assert not summary["diffs"]["saw"]["all objectives"].established  # not in the pre-registered family
    lines = demo_stats.verdict_lines(summary, "grpo")
    assert lines[1].startswith("length: saw - grpo = +0.688") and "saw is better: established" in lines[1]
    assert "lost (rate <= 0.05): grpo 3/4, saw 0/4" in lines[1] and "descriptive" in lines[0]
    assert demo.conclusion(summary) == {"saw": {"alpha": "none", "length": "saw", "all objectives": "none"}}


def test_demo_statistics_overlap_tie_and_family():
    """One grpo seed above a saw seed: not fully separated, p > 0.05, not established. Identical outcomes: p = 1.
    Two metrics in the family: Holm doubles the smallest p, so even full separation (2 x 2/70) is not established."""
    overlap = demo_stats.summarize(_runs([0.0, 0.01, 0.04, 0.8], [0.6, 0.7, 0.9, 0.95]), "grpo", ("length",))
    r = overlap["diffs"]["saw"]["length"]
    # |diff| >= the observed 0.575 iff the saw-labelled sum is >= 3.15 (3 splits: {.95,.9,.8,.7}, {.95,.9,.8,.6}, the
    # observed {.95,.9,.7,.6}) or <= 0.85 (their 3 complements): 6 of 70
    assert r.p == pytest.approx(6 / 70) and not r.established
    tie = demo_stats.summarize(_runs([0.5] * 4, [0.5] * 4), "grpo", ("length",))
    assert tie["diffs"]["saw"]["length"].p == 1.0 and not tie["diffs"]["saw"]["length"].established
    both = demo_stats.summarize(
        _runs([0.0, 0.01, 0.04, 0.2], [0.6, 0.8, 0.9, 0.7]), "grpo", ("length", "all objectives")
    )
    assert both["diffs"]["saw"]["length"].p_holm == pytest.approx(4 / 70)
    assert not any(r.established for r in both["diffs"]["saw"].values())
    with pytest.raises(ValueError, match="primary metric"):
        demo_stats.summarize(_runs([0.1], [0.2]), "grpo", ("speed",))
    # the prompt-clustered floor: seeds that agree exactly get the evaluation sample's s.e., never 0
    flat = demo_stats.summarize(_runs([0.5] * 4, [0.5] * 4), "grpo", ("length",))
    assert flat["table"]["grpo"]["length"]["se"] == pytest.approx(statistics.stdev([0.45, 0.55, 0.45, 0.55]) / 2 / 2)


def test_shuffle_groups_keeps_groups_whole():
    torch.manual_seed(0)
    ids = torch.arange(24) // 4
    batch = {"x": torch.arange(24), "ids": ids, "n": torch.tensor(3.0), "names": [f"s{i}" for i in range(24)]}
    out = shuffle_groups(batch, ids)
    assert out["n"] is batch["n"]
    assert not torch.equal(out["x"], batch["x"])
    for chunk in out["ids"].split(8):  # every micro-batch of 2 groups holds whole groups
        _assert_whole_groups(chunk, 4)
    assert [int(n[1:]) for n in out["names"]] == out["x"].tolist()


def test_partial_groups_are_rejected():
    with pytest.raises(RuntimeError, match="partial groups"):
        _assert_whole_groups(torch.tensor([0, 0, 0, 1, 1, 1, 1, 2]), 4)


def test_line_progress_prints_one_line_per_interval():
    import io
    from types import SimpleNamespace

    from transformers.trainer_callback import ProgressCallback

    from varpo.run.progress import CompactProgress, LineProgress, use_compact_progress

    stream = io.StringIO()
    cb = LineProgress(stream)
    state = SimpleNamespace(max_steps=25, global_step=0, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    for step in range(1, 26):
        state.global_step = step
        cb.on_step_end(None, state, None)
        cb.on_log(None, state, None, logs={"loss": -step / 100, "reward/alpha/mean": step / 25, "other": 1.0})
    cb.on_train_end(None, state, None)
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{s}/25" for s in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25)]
    assert lines[-1].startswith("step 25/25 (100%)") and lines[-1].endswith("loss=-0.25, alpha=1")
    assert "alpha=0.08" in lines[0] and "other" not in stream.getvalue()

    class Trainer:  # the two calls use_compact_progress makes
        def __init__(self):
            self.args = SimpleNamespace(disable_tqdm=False)
            self.callbacks = [ProgressCallback]

        def remove_callback(self, cb):
            self.callbacks.remove(cb)

        def add_callback(self, cb):
            self.callbacks.append(cb)

    for tty, kind in ((True, CompactProgress), (False, LineProgress)):
        trainer = Trainer()
        use_compact_progress(trainer, tty=tty)
        assert len(trainer.callbacks) == 1
        assert trainer.callbacks[0] is kind or isinstance(trainer.callbacks[0], kind)


def test_sft_warm_start_prints_no_library_bar_off_a_terminal(tmp_path, monkeypatch, capfd):
    """Building builtin:tiny (the SFT base) saves a model: its "Writing model shards" tqdm bar reached non-TTY logs
    because the library bars were switched off only after it."""
    from transformers.utils import logging as hf_logging

    from varpo.run import progress, sft
    from varpo.run.spec import load_config

    monkeypatch.setenv("VARPO_CACHE", str(tmp_path / "cache"))  # builtin:tiny is built here, not reused
    monkeypatch.setattr(progress, "interactive", lambda stream=None: False)
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()  # a fresh process: library bars on
    try:
        overrides = {"tiny": TEST_TINY, "sft_demos": 16, "sft_epochs": 1.0, "warm_start": "sft"}
        resolved = load_config(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml", overrides)
        assert (sft.warm_start(resolved.spec, seed=0) / sft.MARKER).is_file()
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()
    err = capfd.readouterr().err
    assert "Writing model shards" not in err and "it/s]" not in err


def test_demo_figure_integer_step_ticks(tmp_path):
    """A 2-step run: the step axes carry whole-number ticks only (matplotlib's default would put ticks at 0.25)."""
    import matplotlib.pyplot as plt

    from varpo.experiments import demo_plots

    curve = [{"step": s, "objectives": {"a": 0.1 * s}, "all": 0.0} for s in (0, 1, 2)]
    runs = {m: {0: {"curve": curve}, 1: {"curve": curve}} for m in ("grpo", "saw")}
    for m in runs:
        for seed in (0, 1):
            d = tmp_path / f"{m}{seed}"
            d.mkdir()
            lines = [json.dumps({"step": s, "adv/weight/a": 1.0}) for s in range(1, 3)]
            (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    dirs = {m: {seed: tmp_path / f"{m}{seed}" for seed in (0, 1)} for m in runs}
    fig = demo_plots.figure(runs, dirs, ["a"])
    try:
        visible = [ax for ax in fig.axes if ax.get_visible()]
        assert len(visible) == 4  # rate panels for a and all objectives; weight panels for grpo and saw
        for ax in visible:
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert [line.get_label() for line in visible[2].get_lines()] == ["a"]
    finally:
        plt.close(fig)


def test_demo_figure_legend_smoothing_and_never_varied(tmp_path):
    """Every method stays in the legend (a ragged one is named as such), weight curves use the report's smoothing
    rule (a 4-step series is drawn unsmoothed), and an objective whose within-group std was 0 in every run is noted."""
    import matplotlib.pyplot as plt
    import numpy as np

    from varpo.experiments import demo_plots
    from varpo.experiments.analysis import NEVER_VARIED_NOTE

    curve = [{"step": s, "objectives": {"a": 0.2 * s, "b": 0.5}, "all": 0.0} for s in (0, 2, 4)]
    runs = {"grpo": {0: {"curve": curve}, 1: {"curve": curve}}, "saw": {0: {"curve": curve}, 1: {"curve": curve[:2]}}}
    dirs = {}
    for m in runs:
        for seed in (0, 1):
            d = tmp_path / f"{m}{seed}"
            d.mkdir()
            lines = [
                json.dumps({"step": s, "adv/weight/a": float(s % 2), "adv/group_std_mean/a": 0.3,
                            "adv/group_std_mean/b": 0.0})
                for s in range(1, 5)
            ]  # fmt: skip
            (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
            dirs.setdefault(m, {})[seed] = d
    fig = demo_plots.figure(runs, dirs, ["a", "b"])
    try:
        rate_a, rate_b = fig.axes[0], fig.axes[1]
        labels = [t.get_text() for t in rate_a.get_legend().get_texts()]
        assert labels == ["grpo", "saw (curves differ in length)"]
        texts = [t.get_text().replace("\n", " ") for t in rate_b.texts]
        assert any(NEVER_VARIED_NOTE in t for t in texts) and not rate_a.texts
        weights_grpo = fig.axes[3]  # bottom row: one weight panel per method, after the 3 rate panels
        (line,) = [ln for ln in weights_grpo.get_lines() if ln.get_label() == "a"]
        assert np.allclose(line.get_ydata(), [1.0, 0.0, 1.0, 0.0])  # window 1: not flattened to 0.5
    finally:
        plt.close(fig)
