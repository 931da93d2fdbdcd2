"""Warm start: TRL ``SFTTrainer`` on the task's gold demonstrations, cached by a hash of everything that shapes it.

The demonstrations are deliberately imperfect (``sft_corrupt_fraction`` of them carry a format or value error) and
training is short, so the warm-started policy is good enough to produce reward signal but leaves room on every
objective for RL. The result is cached under ``$VARPO_CACHE/sft/<hash>``: a second ``varpo sft`` / ``varpo demo``
with the same configuration reuses it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from varpo import models
from varpo.run import data
from varpo.run.progress import quiet_library_bars, use_compact_progress
from varpo.run.spec import RunSpec, digest

MARKER = "varpo_sft.json"


def base_model(spec: RunSpec) -> str:
    """Path (or hub id) of the model before any warm start; builds ``builtin:tiny`` from the task's text."""
    return models.resolve(spec.model, data.corpus(spec) if spec.model == models.BUILTIN_TINY else None, tiny_spec(spec))


def tiny_spec(spec: RunSpec) -> models.TinySpec:
    try:
        return models.TinySpec(**spec.tiny)
    except TypeError as err:
        raise ValueError(
            f"tiny={spec.tiny!r} is invalid; allowed keys: {list(models.TinySpec.__annotations__)}"
        ) from err


def demos_digest(demos) -> str:
    """Digest of the demonstrations themselves: a task whose data is not in the spec's options (``reward_funcs``
    with a ``train_file``, a registered task reading its own files) still gets a new warm start when they change."""
    as_text = (p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in demos["prompt"])
    return models.text_digest(f"{p}\0{c}" for p, c in zip(as_text, demos["completion"], strict=True))


def sft_key(spec: RunSpec, base: str, seed: int, demos) -> str:
    import trl

    fields = {k: getattr(spec, k) for k in RunSpec.__dataclass_fields__ if k.startswith("sft_")}
    return digest(
        {
            "demos": demos_digest(demos),
            "base": base if spec.model != models.BUILTIN_TINY else os.path.basename(base),
            "task": spec.task,
            "task_options": spec.task_options,
            "task_seed": spec.task_seed,
            "seed": seed,
            "trl": trl.__version__,
            **fields,
        }
    )


def warm_start(spec: RunSpec, *, seed: int = 0, max_length: int = 512, force: bool = False) -> Path:
    """SFT the base model on the task's demonstrations (or reuse the cached result); returns the model directory."""
    quiet_library_bars()  # first: building builtin:tiny (base_model) saves a model, whose shard bar went to the log
    base = base_model(spec)
    demos = data.sft_data(spec)
    target = models.cache_root() / "sft" / f"sft-{sft_key(spec, base, seed, demos)}"
    if (target / MARKER).exists() and not force:
        return target
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = models.load(base)
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=".sft-"))
    try:
        args = SFTConfig(
            output_dir=str(work / "trainer"),
            num_train_epochs=spec.sft_epochs,
            learning_rate=spec.sft_learning_rate,
            per_device_train_batch_size=spec.sft_batch_size,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            max_length=max_length,
            seed=seed,
            logging_steps=10,
            save_strategy="no",
            report_to="none",
            gradient_checkpointing=False,
            bf16=False if not torch.cuda.is_available() else None,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=demos, processing_class=tokenizer)
        use_compact_progress(trainer)
        result = trainer.train()
        out = work / "model"
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
        info = {"base": base, "key": target.name, "train_loss": result.training_loss, "demos": len(demos)}
        (out / MARKER).write_text(json.dumps(info, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
