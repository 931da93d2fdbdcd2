from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.fixture
def fake_runner() -> list[str]:
    """argv prefix of the stand-in runner (no training; see fake_runner.py)."""
    return [sys.executable, str(Path(__file__).with_name("fake_runner.py"))]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text("task: toolcall\nmax_steps: 30\n")
    return path
