"""Models: any HF causal LM by local path or hub id, or ``builtin:tiny``, built offline and deterministically.

``builtin:tiny`` is a small Qwen2-architecture model with a byte-level BPE tokenizer trained (``tokenizers``) on the
task's own text, so SFT + RL run on 2 CPU cores in minutes with no download. The task's markup tags (``<think>``,
``<tool_call>``, ...) are found in that text and added as single tokens (ordinary, not "special", tokens: TRL decodes
completions with ``skip_special_tokens=True`` and the graders must see the tags). Built models are cached under
``$VARPO_CACHE/models/<hash>`` (default ``~/.cache/varpo``), keyed by the architecture spec and a hash of the text.

Hub ids are resolved by ``transformers`` itself: with ``HF_HUB_OFFLINE=1`` only the local HF cache is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

BUILTIN_TINY = "builtin:tiny"
BUILDER_VERSION = 1  # part of the cache key: bump when the tokenizer or model construction changes
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
_TAG = re.compile(r"</?[A-Za-z_][A-Za-z0-9_]*>")


@dataclass(frozen=True)
class TinySpec:
    """Architecture of ``builtin:tiny`` (defaults: ~0.9M parameters, ~15 ms per 64-sample decode step on 1 core)."""

    vocab_size: int = 640
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 1024
    seed: int = 0


def cache_root() -> Path:
    """``$VARPO_CACHE`` or ``~/.cache/varpo``."""
    return Path(os.environ.get("VARPO_CACHE") or Path.home() / ".cache" / "varpo")


def text_digest(texts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()


def find_tags(texts: Iterable[str]) -> list[str]:
    """Markup tags (``<think>``, ``</tool_call>``, ...) that occur in ``texts``, sorted."""
    tags: set[str] = set()
    for t in texts:
        tags.update(_TAG.findall(t))
    return sorted(tags)


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE trained on ``texts`` with the texts' tags as single tokens; eos ``<|endoftext|>``, pad
    ``<|pad|>``. Deterministic for a given text list. Returns a ``transformers`` fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # Qwen2's normalizer and pre-tokenizer (digits split one by one), so that AutoTokenizer, which loads a saved
    # qwen2 tokenizer as Qwen2Tokenizer and rebuilds this pipeline, tokenizes exactly as during training.
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    hf.add_tokens(find_tags(texts))
    hf.padding_side = "left"
    return hf


def tiny_config(spec: TinySpec, tokenizer):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_key(texts: list[str], spec: TinySpec) -> str:
    import tokenizers
    import transformers

    blob = json.dumps(
        {
            "builder": BUILDER_VERSION,
            "spec": asdict(spec),
            "text": text_digest(texts),
            "tok": tokenizers.__version__,
            "tf": transformers.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_tiny(texts: list[str], spec: TinySpec = TinySpec(), cache_dir: str | os.PathLike | None = None) -> Path:
    """Build (or reuse from cache) ``builtin:tiny`` for ``texts``; returns the saved model directory."""
    from transformers import Qwen2ForCausalLM

    root = Path(cache_dir) if cache_dir else cache_root() / "models"
    target = root / f"tiny-{tiny_key(texts, spec)}"
    if (target / "config.json").exists():
        return target
    tokenizer = train_tokenizer(texts, spec.vocab_size)
    config = tiny_config(spec, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a concurrent builder either wins or finds the finished directory
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(spec: str, texts: list[str] | None = None, tiny: TinySpec = TinySpec()) -> str:
    """A loadable model path or hub id for ``spec`` (``builtin:tiny`` is built from ``texts``)."""
    if spec == BUILTIN_TINY:
        if not texts:
            raise ValueError("model 'builtin:tiny' needs the task's text to train its tokenizer")
        return str(build_tiny(texts, tiny))
    if spec.startswith("builtin:"):
        raise ValueError(f"model={spec!r} is invalid; allowed: {BUILTIN_TINY}, a local path or a hub id")
    return spec


def load(path_or_id: str, dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)`` from a local directory or hub id (hub only when online or already cached)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path_or_id, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=dtype)
    return model, tokenizer


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def inspect(spec: str, texts: list[str] | None = None, tiny: TinySpec = TinySpec()) -> tuple[object | None, str]:
    """For ``--dry-run``: ``(model config or None, one-line note)`` without downloading or loading weights.

    ``builtin:tiny`` trains its tokenizer and builds the config; a local path or a cached hub id loads
    ``config.json`` (and the tokenizer) from disk; an uncached hub id is skipped when offline.
    """
    from transformers import AutoConfig, AutoTokenizer

    if spec == BUILTIN_TINY:
        tokenizer = train_tokenizer(texts or [""], tiny.vocab_size)
        config = tiny_config(tiny, tokenizer)
        return config, f"builtin:tiny: Qwen2 {tiny.num_hidden_layers}x{tiny.hidden_size}, vocab {len(tokenizer)}"
    try:
        config = AutoConfig.from_pretrained(spec, local_files_only=offline())
        tokenizer = AutoTokenizer.from_pretrained(spec, local_files_only=offline())
    except (OSError, ValueError) as err:
        if offline():
            return None, f"{spec}: skipped model config and tokenizer (not in the local HF cache; HF_HUB_OFFLINE=1)"
        raise ValueError(f"model={spec!r}: cannot load its config ({err})") from err
    return config, f"{spec}: {config.model_type}, vocab {len(tokenizer)}"
