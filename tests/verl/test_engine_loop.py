"""varpo inside verl's own training loop on CPU, and the trl <-> verl clash at model build.

Each test runs in a subprocess: verl reads its platform and engine selection from the environment at import, and
the worker initialises a torch process group, neither of which may leak into the rest of the suite.
What runs where is in ``tests/verl/engine_loop.py`` (real verl code vs the rollout stand-in) and docs/verl.md.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import varpo
from tests.verl.cpu_platform import engine_env

pytestmark = pytest.mark.verl
ROOT = Path(__file__).resolve().parents[2]
F32 = 1e-5  # verl's advantages are float32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def _loop_result(tmp_path_factory, script: str, timeout: int) -> dict:
    """Run ``python -m tests.verl.<script> <result.json> <work dir>`` in verl's CPU environment; its JSON result."""
    work = tmp_path_factory.mktemp(script)
    out = work / "result.json"
    proc = _run([sys.executable, "-m", f"tests.verl.{script}", str(out), str(work)], engine_env(_free_port()), timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> dict:
    return _loop_result(tmp_path_factory, "engine_loop", 300)


@pytest.fixture(scope="module")
def v1(tmp_path_factory) -> dict:
    return _loop_result(tmp_path_factory, "v1_loop", 400)


def test_runs_on_verls_cpu_platform(loop):
    """verl resolved our platform (its device name is "cpu"); the subprocess timeout bounds the run time."""
    assert loop["device"] == "cpu"


def test_fit_advantages_equal_the_core_with_scheduled_weights_and_running_sigma(loop):
    """RayPPOTrainer.fit -> compute_advantage (varpo_dvao, schedule, SigmaEMA) equals varpo.compute_advantages
    with the weights of varpo's step (verl's global_steps - 1) and a σ̄ chained through the same steps."""
    dvao = loop["dvao"]
    assert dvao["steps"] == [1, 2]
    assert dvao["weights"] == [pytest.approx([0.9, 0.1]), pytest.approx([0.7, 0.3])]
    assert max(dvao["max_abs_diff"]) < F32
    assert min(dvao["nonzero_advantages"]) > 0  # the comparison is not between zeros
    assert dvao["reward_keys_in_batch"] == ["accuracy", "format"]  # components arrived via verl's reward path


def test_verl_loss_updates_the_real_fsdp_actor(loop):
    dvao = loop["dvao"]
    assert dvao["param_max_change"] > 0
    assert all(v is not None and abs(v) < 1e6 for v in dvao["losses"] + dvao["grad_norms"])
    assert max(dvao["grad_norms"]) > 0


@pytest.mark.parametrize("method", varpo.METHODS)
def test_every_estimator_through_verls_compute_advantage_on_the_fit_batch(loop, method):
    assert loop["estimators"][method] < F32


def test_running_sigma_is_checkpointed_and_restored_on_resume(loop):
    """verl resumes from global_step_2 (actor via its checkpoint manager, varpo_state.json via the plug-in): the
    estimator at step 3 starts from the saved σ̄, and the schedule continues at varpo step 2."""
    dvao, resume = loop["dvao"], loop["resume"]
    assert dvao["saved_state"]["sigma_ema"] == [dvao["reference_state"]]
    assert resume["steps"] == [3]
    assert resume["state_before"] == dvao["saved_state"]
    assert resume["weights"] == pytest.approx([0.5, 0.5])
    assert resume["max_abs_diff"] < F32


def test_gvpo_worker_loss_trains_the_real_actor(loop):
    gvpo = loop["gvpo"]
    assert gvpo["param_max_change"] > 0 and gvpo["nonzero_advantages"] > 0
    assert all(v is not None and abs(v) < 1e6 for v in gvpo["losses"])
    assert "actor/varpo_gvpo/implicit_reward_mean" in gvpo["gvpo_metrics"]


CLASH = """
import torch, verl
from transformers import AutoModelForCausalLM
from varpo.models import TinySpec, build_tiny
from verl.models.transformers.monkey_patch import apply_monkey_patch
path = build_tiny(["a b c 1 2 3"] * 4, TinySpec(num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                  num_attention_heads=2, num_key_value_heads=1), cache_dir={cache!r})
apply_monkey_patch(AutoModelForCausalLM.from_pretrained(path), use_remove_padding=False)
print("built")
"""


def test_verl_model_build_does_not_fail_on_the_installed_trl(tmp_path):
    """verl's apply_monkey_patch (run by the FSDP engine at actor build) imports trl's value-head class whenever
    trl is installed; trl 1.16 (varpo's TRL engine) has none. The plug-in makes verl's probe ask for the class."""
    proc = _run([sys.executable, "-c", CLASH.format(cache=str(tmp_path))], {"HF_HUB_OFFLINE": "1"}, 180)
    assert proc.returncode == 0 and "built" in proc.stdout, proc.stderr[-3000:]


def test_trl_probe_is_true_exactly_when_verls_import_would_work():
    from verl.utils import import_utils

    import varpo.verl.plugin  # noqa: F401
    from varpo.verl import compat

    probe = import_utils.is_trl_available
    assert probe.__varpo_wraps__ is not None
    assert probe() == compat.value_head_importable()
    try:
        from trl import AutoModelForCausalLMWithValueHead  # noqa: F401

        importable = True
    except ImportError:
        try:
            from trl.experimental.ppo import AutoModelForCausalLMWithValueHead  # noqa: F401

            importable = True
        except ImportError:
            importable = False
    assert compat.value_head_importable() is importable
    assert compat.install() is probe  # idempotent


# -- verl's V1 trainer (VarpoTrainerSync.fit) with a real TransferQueue --------------------------------------


def test_v1_fit_carries_components_from_transferqueue_to_the_estimator(v1):
    """Components written by the agent-loop worker's own postprocess reach varpo_dvao through TransferQueue; the
    advantages equal the core with the scheduled weights and a chained σ̄, and varpo's metrics are logged."""
    run = v1["v1"]
    assert run["steps"] == [1, 2] and run["sessions"] == 2 * 2 * 4
    assert run["weights"] == [pytest.approx([0.9, 0.1]), pytest.approx([0.7, 0.3])]
    assert run["logged_reward_weights"] == run["weights"]
    assert max(run["max_abs_diff"]) < F32 and min(run["nonzero_advantages"]) > 0
    assert {"varpo/weight/accuracy", "varpo/weight/format", "varpo/frac_zero_std_groups"} <= set(run["varpo_metrics"])
    assert run["param_max_change"] > 0 and all(abs(v) < 1e6 for v in run["losses"])


def test_v1_checkpoint_and_resume_restore_the_running_sigma_and_the_schedule(v1):
    run, resume = v1["v1"], v1["v1_resume"]
    assert run["saved_state"]["sigma_ema"] == [run["reference_state"]]
    assert resume["steps"] == [3] and resume["state_before"] == run["saved_state"]
    assert resume["weights"] == pytest.approx([0.5, 0.5]) and resume["max_abs_diff"] < F32


def test_v1_gvpo_mode_keeps_groups_whole_and_trains(v1):
    """One group per micro-batch (force_group_size), whole groups per rank (_balance_batch), worker loss with
    uids: the GVPO loss raises on a split group, so a finite loss and moved parameters show the groups held."""
    gvpo = v1["v1_gvpo"]
    assert gvpo["param_max_change"] > 0 and gvpo["nonzero_advantages"] > 0
    assert all(abs(v) < 1e6 for v in gvpo["losses"])
    assert "actor/varpo_gvpo/implicit_reward_mean" in gvpo["gvpo_metrics"]
