"""The verl plug-in's tests need the ``verl`` extra (verl and TransferQueue, ``pip install -e ".[verl]"``).

The one place that decides what a missing extra means, for every file here (and the extension test that registers
in verl): in CI (``CI`` set, as CI services do, or ``VARPO_REQUIRE_VERL=1``; ``.ci/run`` sets it) it is an error
that stops the run, so ~150 tests cannot pass by skipping; elsewhere the tests are skipped with one visible reason.
``VARPO_REQUIRE_VERL=0`` opts out explicitly.
"""

from __future__ import annotations

import importlib
import os

import pytest

EXTRA = ("verl", "transfer_queue")


def verl_required(env=os.environ) -> bool:
    flag = env.get("VARPO_REQUIRE_VERL", "").strip()
    return flag == "1" if flag else bool(env.get("CI", "").strip())


def missing_verl_extra() -> list[str]:
    missing = []
    for name in EXTRA:
        try:
            importlib.import_module(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    return missing


def _problem() -> str | None:
    missing = missing_verl_extra()
    return f"the verl extra is not installed: {', '.join(missing)} (pip install -e '.[verl]')" if missing else None


def require_verl_extra() -> None:
    """For a test outside this folder that needs verl: fail (in CI) or skip it (elsewhere) without the extra."""
    problem = _problem()
    if problem and verl_required():
        pytest.fail(f"{problem}; required because CI or VARPO_REQUIRE_VERL=1 is set", pytrace=False)
    if problem:
        pytest.skip(problem)


PROBLEM = _problem()


class _UnavailableModule(pytest.Module):
    """Stands in for a test file here when the extra is missing: one skip (or, in CI, one error) per file, the
    file itself never imported."""

    def collect(self):
        if verl_required():
            pytest.fail(f"{PROBLEM}; required because CI or VARPO_REQUIRE_VERL=1 is set", pytrace=False)
        pytest.skip(PROBLEM)


def pytest_pycollect_makemodule(module_path, parent):
    if PROBLEM and module_path.name.startswith("test_"):
        return _UnavailableModule.from_parent(parent, path=module_path)
    return None
