"""tests/verl/conftest.py: without the verl extra the folder is skipped with a reason, or, in CI, is an error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.verl.conftest import verl_required

REPO = Path(__file__).resolve().parents[2]

BLOCKER = textwrap.dedent("""
    import sys

    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("verl", "transfer_queue"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Block())
""")


@pytest.mark.parametrize(
    ("env", "required"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": ""}, False),
        ({"VARPO_REQUIRE_VERL": "1"}, True),
        ({"CI": "true", "VARPO_REQUIRE_VERL": "0"}, False),
    ],
)
def test_when_verl_is_required(env, required):
    assert verl_required(env) is required


def _pytest_without_verl(tmp_path, **env_extra):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "VARPO_REQUIRE_VERL")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *filter(None, [env.get("PYTHONPATH")])])
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/verl/test_gvpo.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_verl_skips_with_a_reason_outside_ci(tmp_path):
    proc = _pytest_without_verl(tmp_path)
    assert proc.returncode == 5, proc.stdout + proc.stderr  # 5: no test ran (the file was skipped, not failed)
    assert "1 skipped" in proc.stdout and "the verl extra is not installed" in proc.stdout


@pytest.mark.parametrize("env", [{"CI": "true"}, {"VARPO_REQUIRE_VERL": "1"}])
def test_missing_verl_is_an_error_in_ci(tmp_path, env):
    proc = _pytest_without_verl(tmp_path, **env)
    assert proc.returncode != 0
    assert "1 error" in proc.stdout and "required because CI or VARPO_REQUIRE_VERL=1 is set" in proc.stdout
