"""builtin:tiny is deterministic, offline, and its saved tokenizer reloads (via AutoTokenizer) token-for-token."""

from __future__ import annotations

import torch

from varpo import models

from .conftest import TEST_TINY


def test_builtin_tiny_is_deterministic(tmp_path, task):
    demos = task.generate(32, seed=0)
    texts = [p + c for p, c in zip(demos["prompt"], demos["completion"], strict=True)]
    spec = models.TinySpec(**TEST_TINY)
    a = models.build_tiny(texts, spec, cache_dir=tmp_path / "a")
    b = models.build_tiny(texts, spec, cache_dir=tmp_path / "b")
    assert a.name == b.name  # same cache key
    assert models.build_tiny(texts, spec, cache_dir=tmp_path / "a") == a  # cached
    (ma, ta), (mb, tb) = models.load(str(a)), models.load(str(b))
    for (na, pa), (_, pb) in zip(ma.named_parameters(), mb.named_parameters(), strict=True):
        assert torch.equal(pa, pb), na
    original = models.train_tokenizer(texts, spec.vocab_size)
    sample = demos["prompt"][3] + demos["completion"][3] + " 12345 Ünïcödé"
    assert ta(sample)["input_ids"] == original(sample)["input_ids"] == tb(sample)["input_ids"]
    assert ta.decode(ta(sample)["input_ids"], skip_special_tokens=True) == sample
    for tag in ("<think>", "</tool_call>"):  # task tags are single, non-special tokens
        assert len(ta(tag)["input_ids"]) == 1
    assert ta.eos_token == models.EOS_TOKEN and ta.pad_token == models.PAD_TOKEN
    assert ma.config.model_type == "qwen2" and ma.config.vocab_size == len(ta)


def test_inspect_hub_model_offline_skips():
    config, note = models.inspect("Qwen/Qwen2.5-3B-Instruct")
    assert config is None and "skipped" in note
