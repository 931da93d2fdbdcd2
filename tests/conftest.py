"""Fixtures shared by every test suite. Nothing here touches the network."""

import os
from pathlib import Path

import pytest
import torch

_REPO = Path(__file__).resolve().parents[1]
# The real ToolRL sample sits in the workplace's shared folder next to the checkout (../shared); VARPO_SHARED_DIR
# overrides it. The first candidate that exists wins.
_SHARED = [Path(p) for p in (os.environ.get("VARPO_SHARED_DIR"), _REPO.parent / "shared", "/work/shared") if p]
TOOLRL_TEST = next(
    (d / "data/toolrl/test.parquet" for d in _SHARED if (d / "data/toolrl/test.parquet").is_file()),
    _SHARED[0] / "data/toolrl/test.parquet",
)


@pytest.fixture(scope="session")
def toolrl_path() -> Path:
    # The real ToolRL sample lives outside the repo on purpose (it is read, never copied); a missing sample fails
    # loudly rather than skipping, so a CI machine without it cannot pass silently.
    assert TOOLRL_TEST.is_file(), f"missing {TOOLRL_TEST} (set VARPO_SHARED_DIR to the folder holding data/toolrl/)"
    return TOOLRL_TEST


@pytest.fixture(scope="session")
def private_varpo_cache(tmp_path_factory):
    """One thread and a private varpo cache for the session (nothing is written to the user's ~/.cache); the
    suites that build models request it through an autouse fixture of their own conftest."""
    cache = tmp_path_factory.mktemp("varpo-cache")
    old = os.environ.get("VARPO_CACHE")
    os.environ["VARPO_CACHE"] = str(cache)
    torch.set_num_threads(1)
    yield cache
    if old is None:
        os.environ.pop("VARPO_CACHE", None)
    else:
        os.environ["VARPO_CACHE"] = old
