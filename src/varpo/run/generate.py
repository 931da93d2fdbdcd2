"""Batched sampling of k completions per prompt, for evaluation (avg@k needs samples, not greedy decoding).

Decoding mirrors TRL's rollout: left-padded prompts, ``do_sample`` at the given temperature, completions decoded with
``skip_special_tokens=True`` (what the reward functions see during training).
"""

from __future__ import annotations

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[str],
    k: int,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    batch_size: int = 128,
    seed: int = 0,
    description: str = "sampling",
) -> list[list[str]]:
    """``k`` sampled completions for each prompt, as ``[len(prompts)][k]`` strings (deterministic for a seed)."""
    model.eval()
    tokenizer.padding_side = "left"
    flat = [p for p in prompts for _ in range(k)]
    order = sorted(range(len(flat)), key=lambda i: len(flat[i]))  # similar lengths per batch: less padding
    texts: list[str] = [""] * len(flat)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with progress() as bar:
            task = bar.add_task(description, total=len(flat))
            for start in range(0, len(flat), batch_size):
                idx = order[start : start + batch_size]
                enc = tokenizer([flat[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = {key: value.to(model.device) for key, value in enc.items()}
                out = model.generate(
                    **enc,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_p=1.0,
                    top_k=0,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                for i, text in zip(idx, decoded, strict=True):
                    texts[i] = text
                bar.advance(task, len(idx))
    finally:
        torch.random.set_rng_state(generator_state)
    return [texts[i * k : (i + 1) * k] for i in range(len(prompts))]
