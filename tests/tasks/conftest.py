"""Shared fixtures for the task tests. Nothing here touches the network."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[1] / "data"
_REPO = Path(__file__).resolve().parents[2]
# The real ToolRL sample sits in the workplace's shared folder next to the checkout (../shared); VARPO_SHARED_DIR
# overrides it. The first candidate that exists wins.
_SHARED = [Path(p) for p in (os.environ.get("VARPO_SHARED_DIR"), _REPO.parent / "shared", "/work/shared") if p]
TOOLRL_TEST = next(
    (d / "data/toolrl/test.parquet" for d in _SHARED if (d / "data/toolrl/test.parquet").is_file()),
    _SHARED[0] / "data/toolrl/test.parquet",
)


@pytest.fixture(scope="session")
def toolrl_path() -> Path:
    # The real ToolRL sample lives outside the repo on purpose (it is read, never copied).
    assert TOOLRL_TEST.is_file(), f"missing {TOOLRL_TEST}"
    return TOOLRL_TEST


@pytest.fixture(scope="session")
def gsm8k_path() -> Path:
    return DATA / "gsm8k_sample.jsonl"
