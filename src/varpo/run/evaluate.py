"""``varpo eval``: sample k completions per held-out prompt and score them with ``varpo.tasks.evaluate``.

Reported per objective: the mean raw reward and avg@k (mean over prompts of the fraction of the k samples that
satisfy the objective, the papers' metric), plus the fraction of completions that satisfy every objective at once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from varpo import models
from varpo.run import data, generate
from varpo.run.spec import RunSpec


def flatten(result) -> dict[str, float]:
    """``EvalResult`` -> ``{"<name>/mean", "<name>/avg@k", "<name>/pass@k", "all/rate", "all/pass@k"}``."""
    return result.to_dict(prefix="", k_label="k")


def evaluate_model(
    path: str,
    spec: RunSpec,
    *,
    k: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    label: str = "",
    samples_file: str | Path | None = None,
) -> dict[str, float]:
    """avg@k metrics of the model at ``path`` on the run's held-out prompts (same prompts and seed for every model)."""
    import varpo.tasks

    model, tokenizer = models.load(str(path))
    task = data.task_of(spec)
    ds = data.eval_data(spec)
    prompts = [
        p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        for p in ds["prompt"]
    ]
    samples = generate.sample(
        model,
        tokenizer,
        prompts,
        k,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        batch_size=spec.eval_batch_size,
        seed=seed,
        description=f"eval {label or path}: {len(prompts)} prompts x {k}",
    )
    if samples_file:
        with open(samples_file, "w") as f:
            for row, completions in zip(ds, samples, strict=True):
                f.write(json.dumps({"prompt": row["prompt"], "samples": completions}) + "\n")
    return flatten(varpo.tasks.evaluate(task, zip(ds, samples, strict=True), k=k))


def _read_run_file(path: Path) -> dict:
    """The run's ``run.json``; unreadable or incomplete is a one-line ValueError naming the file."""
    try:
        record = json.loads(path.read_text())
        keys = ("spec", "start_model", "temperature", "max_completion_length")
        missing = [k for k in keys if not isinstance(record, dict) or k not in record]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is unreadable: {' '.join(str(err).split())}") from None
    if missing:
        raise ValueError(f"{path} is not a varpo run file (missing {', '.join(missing)})")
    if not isinstance(record["spec"], dict):
        raise ValueError(f"{path}: 'spec' is {record['spec']!r}, not a mapping of config keys")
    return record


def _run_spec(path: Path, values: dict) -> RunSpec:
    """The RunSpec a run file records; a key or value this version rejects is a one-line error naming the file."""
    try:
        return RunSpec(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: 'spec' is not a valid run spec: {' '.join(str(err).split())}") from None


def command(target, task, k, prompts, temperature, max_new_tokens, seed, console) -> dict[str, dict[str, float]]:
    """``varpo eval``: a run directory gives a before (warm start) / after table, a model path one column."""
    from varpo.run.report import markdown_table, rich_table
    from varpo.run.train import FINAL_DIR, RUN_FILE, set_threads

    run_file = Path(target) / RUN_FILE
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"--temperature {temperature!r} is invalid; allowed: a finite number > 0")
    if run_file.exists():
        record = _read_run_file(run_file)
        spec = _run_spec(run_file, record["spec"])
        columns = {"before (start model)": record["start_model"], "after (RL)": str(Path(target) / FINAL_DIR)}
        temperature = record["temperature"] if temperature is None else temperature
        max_new_tokens = max_new_tokens or record["max_completion_length"]
    else:
        path = Path(target)
        if path.exists() and not (path / "config.json").is_file():
            raise ValueError(
                f"eval target {target!r} is neither a run directory (with {RUN_FILE}) nor a model directory "
                "(with config.json)"
            )
        if not path.exists() and models.offline():
            raise ValueError(f"model {target!r} is neither a run directory nor a local model (HF_HUB_OFFLINE=1)")
        spec = RunSpec(task=task)
        columns = {str(target): target}
        temperature = 1.0 if temperature is None else temperature
        max_new_tokens = max_new_tokens or 256
    if prompts:
        spec.eval_prompts = prompts
    set_threads(spec)
    results = {
        label: evaluate_model(
            path, spec, k=k, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, label=label
        )
        for label, path in columns.items()
    }
    objectives = data.task_of(spec).reward_names
    title = f"{spec.task}: {spec.eval_prompts} held-out prompts x {k} samples, T={temperature:g}"
    console.print(rich_table(results, objectives, title))
    if run_file.exists():
        (Path(target) / "eval.md").write_text(f"{title}\n\n" + markdown_table(results, objectives))
    return results
