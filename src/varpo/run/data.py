"""The data of a run: task, SFT demonstrations, RL prompts, held-out evaluation prompts, tokenizer corpus.

Seeds are split so the three sets never share a prompt: SFT demonstrations are generated with ``task_seed``, RL
prompts with ``task_seed + 1`` (both from the task's *train* split), evaluation prompts from its *test* split, which
the tasks package hash-partitions away from every train split.
"""

from __future__ import annotations

from varpo.run.spec import RunSpec


def task_of(spec: RunSpec, **extra):
    return spec.make_task(**extra)


def load_file(spec: RunSpec, name: str):
    """``task.load(spec.<name>)`` (``train_file`` / ``eval_file``); a file that cannot be read or parsed is a
    one-line ValueError naming the field and the file."""
    source = getattr(spec, name)
    try:
        return task_of(spec).load(source, **spec.load_options)
    except (OSError, ValueError, TypeError, KeyError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"{name}={source!r} cannot be loaded: {type(err).__name__}: {message}") from err


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
        ds = load_file(spec, "train_file")
        if hasattr(task, "held_out") and not spec.eval_file:
            ds = task.held_out(ds, "train")  # the rest of the file is the held-out evaluation set
    else:
        ds = task.generate(spec.train_prompts, spec.task_seed + 1)
    return ds.remove_columns([c for c in ("completion",) if c in ds.column_names and c not in keep])


def eval_data(spec: RunSpec, n: int | None = None):
    """Held-out prompts (test split) or the user's evaluation file."""
    task = task_of(spec)
    if spec.eval_file:
        return load_file(spec, "eval_file")
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
        texts += [_text(p) for p in load_file(spec, "train_file")["prompt"]]
    return texts


def _text(x) -> str:
    from varpo.text import completion_text, prompt_text

    return x if isinstance(x, str) else prompt_text(x) or completion_text(x)
