"""The data of a run: task, SFT demonstrations, RL prompts, held-out evaluation prompts, tokenizer corpus.

Seeds are split so the three sets never share a prompt: SFT demonstrations are generated with ``task_seed``, RL
prompts with ``task_seed + 1`` (both from the task's *train* split), evaluation prompts from its *test* split, which
the tasks package hash-partitions away from every train split.
"""

from __future__ import annotations

from varpo.run.spec import RunSpec


def task_of(spec: RunSpec, **extra):
    """The configured task; an unknown option is a one-line ``ValueError`` naming ``task_options`` (CLI exit 2)."""
    import difflib
    from dataclasses import fields

    import varpo.tasks

    try:
        return varpo.tasks.get_task(spec.task, **{**spec.task_options, **extra})
    except TypeError as err:
        cls = varpo.tasks.TASKS.get(spec.task)
        valid = sorted(f.name for f in fields(cls) if f.init) if cls is not None else []
        hints = [
            f"{k} -> {m[0]}"
            for k in spec.task_options
            if k not in valid
            for m in [difflib.get_close_matches(k, valid, 1)]
            if m
        ]
        hint = f" (did you mean: {', '.join(hints)}?)" if hints else ""
        raise ValueError(f"task_options={spec.task_options!r} is invalid{hint}; {err}") from None


def sft_data(spec: RunSpec):
    """SFT demonstrations as a prompt/completion dataset: the task's own imperfect ones where it defines
    ``demonstrations`` (constraints: each rule met at its warm-start rate), else gold ones of which
    ``sft_corrupt_fraction`` carry one format or value error (if the task has the ``corrupt_frac`` knob)."""
    if hasattr(task_of(spec), "demonstrations"):
        ds = task_of(spec).demonstrations(spec.sft_demos, seed=spec.task_seed)
    else:
        ds = task_of(spec, **_corrupt_option(spec)).generate(spec.sft_demos, seed=spec.task_seed, split="train")
    return ds.select_columns(["prompt", "completion"])


def _corrupt_option(spec: RunSpec) -> dict:
    import dataclasses

    task = task_of(spec)
    names = {f.name for f in dataclasses.fields(task)} if dataclasses.is_dataclass(task) else set()
    return {"corrupt_frac": spec.sft_corrupt_fraction} if "corrupt_frac" in names else {}


def train_data(spec: RunSpec, keep: tuple[str, ...] = ()):
    """RL prompts (the gold ``completion`` column is dropped: the policy must not see it, unless ``keep`` names it,
    as ``gvpo_external_column=completion`` does: then gold answers join GVPO groups as responses, never prompts)."""
    task = task_of(spec)
    if spec.train_file:
        ds = task.load(spec.train_file, **spec.load_options)
    else:
        ds = task.generate(spec.train_prompts, spec.task_seed + 1)
    return ds.remove_columns([c for c in ("completion",) if c in ds.column_names and c not in keep])


def eval_data(spec: RunSpec, n: int | None = None):
    """Held-out prompts (test split) or the user's evaluation file."""
    task = task_of(spec)
    if spec.eval_file:
        return task.load(spec.eval_file, **spec.load_options)
    return task.generate(n or spec.eval_prompts, seed=spec.task_seed, split="test")


def corpus(spec: RunSpec) -> list[str]:
    """Text the builtin tokenizer is trained on: the gold demonstrations and the RL prompts (train split only)."""
    task = task_of(spec)
    demos = task.generate(max(spec.sft_demos, 1), seed=spec.task_seed, split="train")
    if hasattr(task, "demonstrations"):  # the fillers only occur in the demonstrations
        extra = task.demonstrations(max(spec.sft_demos, 1), seed=spec.task_seed)
        demos = {c: list(demos[c]) + list(extra[c]) for c in ("prompt", "completion")}
    texts = [_text(p) + _text(c) for p, c in zip(demos["prompt"], demos["completion"], strict=True)]
    if spec.train_file:
        texts += [_text(p) for p in task.load(spec.train_file, **spec.load_options)["prompt"]]
    return texts


def _text(x) -> str:
    from varpo.tasks.base import completion_text, prompt_text

    return x if isinstance(x, str) else prompt_text(x) or completion_text(x)
