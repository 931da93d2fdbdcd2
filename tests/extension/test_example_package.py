"""A researcher's estimator defined outside ``src/`` (examples/varpo_mymethod) trains through ``varpo train``, is
trains in a sweep (its runs are fresh processes) and registers in verl — found only through its ``varpo.methods`` entry point.

The package is "installed" the way pip would make it visible: a ``.dist-info`` directory with ``entry_points.txt``
on the path (no pip, no network, nothing written outside ``tmp_path``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.verl.conftest import require_verl_extra

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "varpo_mymethod"

MINI = """\
model: builtin:tiny
tiny: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64}
task: toolcall
train_prompts: 8
eval_prompts: 4
eval_k: 2
max_steps: 2
num_generations: 4
per_device_train_batch_size: 8
max_completion_length: 16
save_strategy: "no"
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """Environment in which ``varpo-mymethod`` is installed (entry point visible), plus a private varpo cache."""
    site = tmp_path_factory.mktemp("site")
    info = site / "varpo_mymethod-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: varpo-mymethod\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[varpo.methods]\nmad_ac = varpo_mymethod:register\n")
    path = os.pathsep.join([str(site), str(EXAMPLE / "src"), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    cache = tmp_path_factory.mktemp("cache")
    return {
        **os.environ,
        "PYTHONPATH": path,
        "HF_HUB_OFFLINE": "1",
        "VARPO_CACHE": str(cache),
        "PYTHONWARNINGS": "ignore",
    }


def run(env, *args, timeout=300, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or REPO
    )


def test_example_package_own_tests_pass(installed):
    proc = run(installed, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests"), cwd=EXAMPLE)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "6 passed" in proc.stdout


def test_trains_through_varpo_train_and_sweep(installed, tmp_path):
    config = tmp_path / "mini.yaml"
    config.write_text(MINI)
    out = tmp_path / "run"
    proc = run(installed, "-m", "varpo", "train", str(config), "advantage_method=mad_ac", f"output_dir={out}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "adv/adv_abs_mean" in r]
    assert steps == [1, 2]
    assert json.loads((out / "run.json").read_text())["train"]["advantage_method"] == "mad_ac"

    # a real sweep: its driver validates the grid, and each run is a fresh runner process that finds mad_ac only
    # through the entry point
    sweep = tmp_path / "sweep"
    args = [str(config), "max_steps=1", "--weights", "0.5", "--seeds", "1", "--out", str(sweep), "--no-report"]
    proc = run(installed, "-m", "varpo", "sweep", *args, "--methods", "mad_ac", "--jobs", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (metrics,) = sweep.glob("runs/*/metrics.jsonl")
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records if "adv/adv_abs_mean" in r] == [1]
    assert json.loads((metrics.parent / "run.json").read_text())["train"]["advantage_method"] == "mad_ac"


def test_registers_in_verl_including_late_registrations(installed):
    require_verl_extra()  # skip, or fail in CI, without the verl extra
    proc = run(
        installed,
        "-c",
        textwrap.dedent("""
        import numpy as np, torch
        import verl  # loads varpo's verl plug-in, which loads the varpo.methods plug-ins first
        from verl.trainer.ppo import core_algos
        fn = core_algos.get_adv_estimator_fn("varpo_mad_ac")
        scores = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 2.0], [0.0, 5.0]])
        adv, _ = fn(scores, torch.ones(4, 2), index=np.array(["a"] * 4), config=None)
        print("mad_ac", [round(float(a), 4) for a in adv[:, 0]])
        import varpo
        varpo.register_estimator("late", lambda b, o: (b.stats.dev @ b.wbar, b.wbar), multi_reward=False)
        print("late", "varpo_late" in core_algos.ADV_ESTIMATOR_REGISTRY)
    """),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # hand values of the package's own test: r = [1, 0, 2, 5], μ = 2, MAD = 1.5
    assert "mad_ac [-0.6667, -1.3333, 0.0, 2.0]" in proc.stdout
    assert "late True" in proc.stdout


def test_extending_md_plugin_commands_run_with_the_example_installed(installed, tmp_path):
    """docs/extending.md's plug-in block (skipped by the doc harness: it installs a package): its varpo lines run
    here, where the example is installed, as the dry runs they are (demo.yaml has 4 objectives: 4 weights)."""
    from tests.docs.test_doc_blocks import commands, discover

    (block,) = [
        b for b in discover([REPO / "docs" / "extending.md"]) if "pip install -e examples/varpo_mymethod" in b.text
    ]
    lines = [c for c in commands(block.text) if c.startswith("varpo ")]
    assert len(lines) == 2
    for line in lines:
        args = shlex.split(line)[1:]
        args += [f"output_dir={tmp_path}/o"] if args[0] == "train" else ["--out", str(tmp_path / "sweep")]
        proc = run(installed, "-m", "varpo", *args)
        assert proc.returncode == 0, line + "\n" + proc.stdout[-2000:] + proc.stderr[-2000:]
