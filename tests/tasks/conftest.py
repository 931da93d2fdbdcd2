"""Shared fixtures for the task tests. Nothing here touches the network."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TOOLRL_TEST = Path("/work/shared/data/toolrl/test.parquet")
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def toolrl_path() -> Path:
    # The real ToolRL sample lives outside the repo on purpose (it is read, never copied).
    assert TOOLRL_TEST.is_file(), f"missing {TOOLRL_TEST}"
    return TOOLRL_TEST


@pytest.fixture(scope="session")
def gsm8k_path() -> Path:
    return DATA / "gsm8k_sample.jsonl"
