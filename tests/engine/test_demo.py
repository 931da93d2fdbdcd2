"""`varpo demo` end to end at toy size: warm start, two RL runs, held-out table, plots, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from varpo.experiments import demo, demo_stats
from varpo.trl import shuffle_groups
from varpo.trl.trainer import _assert_whole_groups

from .conftest import TEST_TINY


def test_demo_smoke(tmp_path):
    """The whole demo at toy size: one warm start, grpo and saw through the sweep runner (one seed: the statistics
    over seeds are tested on their own below), table with intervals and verdicts, picture, results.json."""
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
    result = demo.run(tmp_path / "demo", overrides=overrides, seeds=(3,))
    out = tmp_path / "demo"
    summary = result["summary"]
    assert summary["seeds"] == [3]
    assert summary["objectives"] == ["alpha", "bravo", "charlie", "length", "all objectives"]
    for method in demo.METHODS:
        for o in summary["objectives"]:
            cell = summary["table"][method][o]
            per_seed = summary["per_seed"][method][o]
            assert cell["mean"] == pytest.approx(per_seed[0])
            assert cell["se"] == pytest.approx((per_seed[0] * (1 - per_seed[0]) / 8) ** 0.5)  # 4 prompts x 2
    assert set(result["conclusion"]["saw"]) == set(summary["objectives"])
    assert len(result["verdicts"]) == len(summary["objectives"])
    assert (out / "demo.png").stat().st_size > 0
    table = (out / "eval.md").read_text()
    assert "| objective | warm start | grpo | saw | saw − grpo |" in table
    saved = json.loads((out / "results.json").read_text())
    assert saved["seconds"]["total"] > 0 and saved["config"]["methods"] == ["grpo", "saw"]
    # one warm start for every run: all runs started from the same model
    starts = {json.loads(p.read_text())["start_model"] for p in (out / "runs").glob("*/eval.json")}
    assert len(starts) == 1
    # logs written to a file stay readable: one line per interval, no progress-bar redraws
    for log in (out / "runs").glob("*/run.log"):
        text = log.read_text()
        assert "\r" not in text and "it/s" not in text
        assert "step 2/2 (100%)" in text


def test_demo_statistics_seed_and_sampling_error_and_verdicts():
    n = 100
    # between-seed spread dominates: s.e. = sd / sqrt(S)
    e = demo_stats.estimate([0.2, 0.4, 0.6], n)
    assert e.mean == pytest.approx(0.4) and e.se == pytest.approx(0.2 / 3**0.5)
    # seeds that agree by chance: the evaluation sample's s.e. is the floor
    e = demo_stats.estimate([0.5, 0.5, 0.5], n)
    assert e.se == pytest.approx((0.25 / n / 3) ** 0.5)
    # paired difference: per-seed differences, floor from both methods' sampling variance
    d = demo_stats.estimate([0.9, 0.8, 0.85], n, paired_with=[0.1, 0.0, 0.05])
    assert (
        d.mean == pytest.approx(0.8)
        and d.se >= ((0.09 + 0.16 + 0.1275) / n / 9 + (0.09 + 0.0 + 0.0475) / n / 9) ** 0.5 - 1e-12
    )
    assert demo_stats.established(d)
    small = demo_stats.estimate([0.52, 0.47, 0.55], n, paired_with=[0.5, 0.5, 0.5])
    assert not demo_stats.established(small)
    runs = {
        "grpo": {s: {"objectives": {"a": 0.1 + 0.01 * s}, "all": 0.0} for s in range(3)},
        "saw": {s: {"objectives": {"a": 0.9 - 0.01 * s}, "all": 0.0} for s in range(3)},
    }
    summary = demo_stats.summarize(runs, "grpo", 256)
    lines = demo_stats.verdict_lines(summary, "grpo")
    assert lines[0].startswith("a: saw - grpo = +0.780") and "saw is better (established" in lines[0]
    assert "no difference" in lines[1]  # all objectives: 0 everywhere
    assert demo.conclusion(summary) == {"saw": {"a": "saw", "all objectives": "none"}}


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
