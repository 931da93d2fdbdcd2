"""A real OpenAI-compatible judge server on 127.0.0.1 (varpo.judge.devserver: FastAPI + uvicorn in a thread)
serving a tiny transformers model built offline, shared by the judge tests. Nothing leaves localhost."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("OPENAI_API_KEY", None)  # the dev server needs none; never send a real key anywhere

import pytest  # noqa: E402

from varpo import models  # noqa: E402
from varpo.tasks import get_task  # noqa: E402

TINY = {
    "vocab_size": 400,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}
SLOW_SECONDS = 0.6


@pytest.fixture(scope="session", autouse=True)
def _judge_env(private_varpo_cache):
    return private_varpo_cache  # tests/conftest.py


@pytest.fixture(scope="session")
def judge_model_dir(_judge_env):
    ds = get_task("rubric").generate(64)
    return models.build_tiny([p + c for p, c in zip(ds["prompt"], ds["completion"])], models.TinySpec(**TINY))


@pytest.fixture(scope="session")
def server(judge_model_dir):
    from varpo.judge.devserver import DevServer

    with DevServer(str(judge_model_dir), slow_seconds=SLOW_SECONDS) as srv:
        yield srv


@pytest.fixture()
def stats(server):
    """Reset the server's counters; returns a function reading them."""
    import httpx

    httpx.post(f"http://127.0.0.1:{server.port}/reset", timeout=5)
    return lambda: httpx.get(f"http://127.0.0.1:{server.port}/stats", timeout=5).json()
