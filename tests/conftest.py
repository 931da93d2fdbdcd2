"""Fixtures shared by every test suite. Nothing here touches the network."""

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (derandomize: examples come from a hash of the test), so a CI
# failure is reproducible and a pass is not luck of the draw; no example database is written. Bugs a fixed draw
# must not miss have fixed cases of their own (tests/core/test_advantages.py). VARPO_HYPOTHESIS_PROFILE=explore
# searches with fresh random draws locally.
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("VARPO_HYPOTHESIS_PROFILE", "deterministic"))

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
