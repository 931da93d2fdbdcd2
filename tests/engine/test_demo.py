"""`varpo demo` end to end at toy size: warm start, two RL runs, held-out table, plots, results."""

from __future__ import annotations

import json

import pytest
import torch

from varpo.run import demo
from varpo.trl import shuffle_groups
from varpo.trl.trainer import _assert_whole_groups

from .conftest import TEST_TINY


def test_demo_smoke(tmp_path):
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
        "max_completion_length=12",
        "disable_tqdm=true",
    ]
    summary = demo.run(tmp_path / "demo", overrides=overrides)
    out = tmp_path / "demo"
    assert set(summary["results"]) == {"warm start", "grpo", "dvao"}
    for method in demo.METHODS:
        assert (out / method / "metrics.jsonl").read_text().count("\n") >= 2
        assert (out / method / "final" / "config.json").exists()
    for png in ("reward_mean.png", "reward_std.png", "completion_length.png", "weights.png"):
        assert (out / "plots" / png).stat().st_size > 0
    table = (out / "eval.md").read_text()
    assert "| correctness: mean reward |" in table and "| warm start | grpo | dvao |" in table
    assert json.loads((out / "results.json").read_text())["seconds"]["total"] > 0


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
