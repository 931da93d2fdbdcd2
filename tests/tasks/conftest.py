"""Shared fixtures for the task tests (the ToolRL sample's `toolrl_path` is in tests/conftest.py). No network."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def gsm8k_path() -> Path:
    return DATA / "gsm8k_sample.jsonl"
