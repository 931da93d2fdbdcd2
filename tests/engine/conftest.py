"""Shared fixtures for the engine tests: a very small builtin model built offline once per test session (per xdist
worker), toolcall data, and a factory for few-step VarpoGRPOTrainer runs on CPU."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

import varpo.tasks  # noqa: E402
from varpo import models  # noqa: E402

# Smaller than the demo's model: these tests check wiring, not learning.
TEST_TINY = {
    "vocab_size": 400,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 64,
    "max_position_embeddings": 256,
}


def length(completions, **kwargs):
    """Varies on any output, so even an untrained model gets non-zero advantages."""
    return [min(len(c), 40) / 40 for c in completions]


def vowels(completions, **kwargs):
    """A second, differently scaled component; None (missing) for empty completions."""
    return [sum(ch in "aeiou" for ch in c) / len(c) * 3 if c else None for c in completions]


@pytest.fixture(scope="session", autouse=True)
def _session_env(private_varpo_cache):
    return private_varpo_cache  # tests/conftest.py


@pytest.fixture(scope="session")
def task():
    return varpo.tasks.get_task("toolcall")


@pytest.fixture(scope="session")
def train_ds(task):
    return task.generate(32, seed=1).remove_columns(["completion"])


@pytest.fixture(scope="session")
def tiny_dir(task, _session_env):
    demos = task.generate(64, seed=0)
    texts = [p + c for p, c in zip(demos["prompt"], demos["completion"], strict=True)]
    return models.build_tiny(texts, models.TinySpec(**TEST_TINY))


@pytest.fixture()
def make_trainer(tiny_dir, task, train_ds, tmp_path):
    """``make_trainer(**config) -> VarpoGRPOTrainer`` with a fresh copy of the tiny model, 2 steps by default."""
    from varpo.trl import Trace, VarpoGRPOConfig, VarpoGRPOTrainer

    def make(reward_funcs=None, dataset=None, eval_dataset=None, **overrides):
        config = dict(
            output_dir=str(tmp_path / "run"),
            use_cpu=True,
            max_steps=2,
            per_device_train_batch_size=8,
            num_generations=4,
            max_completion_length=12,
            learning_rate=5e-2,
            report_to="none",
            save_strategy="no",
            gradient_checkpointing=False,
            disable_tqdm=True,
            seed=0,
        )
        config.update(overrides)
        model, tokenizer = models.load(str(tiny_dir))
        trainer = VarpoGRPOTrainer(
            model=model,
            reward_funcs=reward_funcs if reward_funcs is not None else [length, vowels],
            args=VarpoGRPOConfig(**config),
            train_dataset=dataset if dataset is not None else train_ds,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
        )
        trainer.trace = Trace()
        return trainer

    return make
