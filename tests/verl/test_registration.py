"""Plug-in loading: the real entry point in a fresh process, verl's own CPU tests with it loaded, loud failure,
and the one wrapped legacy function (including the checks that fail when a verl upgrade moves it)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import verl
from verl.trainer.ppo import core_algos, ray_trainer

import varpo
import varpo.verl.plugin  # noqa: F401
from tests.verl.helpers import make_batch
from varpo.verl import POLICY_LOSS_NAME, legacy
from varpo.verl.estimators import ESTIMATORS
from varpo.verl.losses import gvpo_policy_loss

NAMES = [f"varpo_{m}" for m in varpo.METHODS]
SHIPPED_TESTS = Path(verl.__file__).parent.parent / "tests" / "trainer" / "ppo" / "test_core_algos_on_cpu.py"


def run_python(code: str, timeout: int = 240, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
        cwd=Path(__file__).parents[2],
    )


def test_entry_point_is_declared():
    eps = [ep for ep in importlib.metadata.entry_points(group="verl.plugins") if ep.name == "varpo"]
    assert [ep.value for ep in eps] == ["varpo.verl.plugin"], "pip install -e . so the entry point is visible"


def test_names_in_both_registries():
    assert set(NAMES) == set(ESTIMATORS)
    for name in NAMES:
        assert core_algos.get_adv_estimator_fn(name) is ESTIMATORS[name]
    assert core_algos.get_policy_loss_fn(POLICY_LOSS_NAME) is gvpo_policy_loss


def test_registration_is_idempotent():
    varpo.verl.plugin.register()
    assert core_algos.get_adv_estimator_fn("varpo_dvao") is ESTIMATORS["varpo_dvao"]
    assert getattr(ray_trainer.compute_advantage, "__varpo_wraps__", None) is not None
    assert getattr(ray_trainer.compute_advantage.__varpo_wraps__, "__varpo_wraps__", None) is None  # wrapped once


def test_fresh_import_verl_loads_plugin_and_verl_cpu_tests_still_pass():
    """Only `import verl` (no varpo import): the entry point registers us, then verl's own core_algos CPU tests run."""
    # the pinned wheel (verl==0.9.1) ships its tests/ next to the package; a wheel without them must not pass silently
    assert SHIPPED_TESTS.is_file(), f"verl {verl.__version__} does not ship {SHIPPED_TESTS}"
    proc = run_python(f"""
        import sys
        import pytest
        import verl
        from verl.trainer.ppo import core_algos
        assert "varpo.verl.plugin" in sys.modules, "entry point not loaded"
        missing = [n for n in {NAMES!r} if n not in core_algos.ADV_ESTIMATOR_REGISTRY]
        assert not missing and "varpo_gvpo" in core_algos.POLICY_LOSS_REGISTRY, missing
        sys.exit(pytest.main([{str(SHIPPED_TESTS)!r}, "-q", "-p", "no:cacheprovider", "-W", "ignore"]))
    """)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def test_broken_plugin_import_is_loud():
    """verl logs plug-in import errors at debug level; ours must show up at ERROR with the traceback."""
    proc = run_python("""
        import sys
        sys.modules["varpo.verl.estimators"] = None  # simulate our own module failing to import
        import verl
        from verl.trainer.ppo import core_algos
        print("registered:", "varpo_dvao" in core_algos.ADV_ESTIMATOR_REGISTRY)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]  # verl itself keeps going ...
    assert "registered: False" in proc.stdout
    assert "varpo verl plug-in failed to load" in proc.stderr  # ... but the failure is on stderr at ERROR
    assert "ModuleNotFoundError" in proc.stderr or "ImportError" in proc.stderr


def test_legacy_hook_passes_other_estimators_through_unchanged():
    original = ray_trainer.compute_advantage.__varpo_wraps__
    a = ray_trainer.compute_advantage(make_batch(seed=1)[0], adv_estimator="grpo").batch["advantages"]
    b = original(make_batch(seed=1)[0], adv_estimator="grpo").batch["advantages"]
    assert a.equal(b)


def _module(compute_advantage=None, fit_calls_global=True, checkpoints=True) -> types.ModuleType:
    """A stand-in for ray_trainer whose RayPPOTrainer.fit looks compute_advantage up as a module global (or not)."""
    mod = types.ModuleType("fake_ray_trainer")
    if compute_advantage is not None:
        mod.compute_advantage = compute_advantage
    body = "compute_advantage(None, adv_estimator='grpo')" if fit_calls_global else "None"
    ckpt = "    def _save_checkpoint(self): pass\n    def _load_checkpoint(self): pass\n" if checkpoints else ""
    exec(f"class RayPPOTrainer:\n    def fit(self):\n        return {body}\n{ckpt}", mod.__dict__)
    return mod


def test_legacy_hook_refuses_when_verl_moves_the_target():
    def good(data, adv_estimator, gamma=1.0):
        return data

    def renamed(batch, estimator):
        return batch

    with pytest.raises(legacy.HookError, match="is gone"):
        legacy.install(_module())
    with pytest.raises(legacy.HookError, match="signature"):
        legacy.install(_module(renamed))
    with pytest.raises(legacy.HookError, match="no longer calls"):
        legacy.install(_module(good, fit_calls_global=False))
    with pytest.raises(legacy.HookError, match="_save_checkpoint"):
        legacy.install(_module(good, checkpoints=False))
    mod = _module(good)
    fit = mod.RayPPOTrainer.fit
    wrapper = legacy.install(mod)
    assert mod.compute_advantage is wrapper and wrapper.__varpo_wraps__ is good
    assert mod.RayPPOTrainer.fit.__varpo_wraps__ is fit
    assert legacy.install(mod) is wrapper and mod.RayPPOTrainer.fit.__varpo_wraps__ is fit  # idempotent


def test_installed_verl_still_matches_the_legacy_hook():
    """The real target: fails loudly when a verl upgrade moves what we wrap."""
    assert legacy.check_target(ray_trainer) is ray_trainer.compute_advantage
