"""``varpo demo``, the main job: does variance-aware advantage weighting help a model improve on *every* objective?

Offline on a CPU: build ``builtin:tiny`` (Qwen2 architecture, BPE tokenizer trained on the task's text), warm-start
it with SFT on ``toolcall`` demonstrations of which 30 % carry a format or value error, then run RL twice from that
warm start with the same seed, data and budget, at equal reward weights: the ``grpo`` baseline (sum the rewards,
then z-score per group: the correctness reward's [-3, 3] range drowns the 0/1 format reward) and ``dvao``
(per-component variance-adaptive weights). Both are evaluated on held-out prompts (the task's test split) with
k samples each, and ``runs/demo/`` gets ``eval.md``, ``results.json``, one ``metrics.jsonl`` per run and PNG curves.

``DEMO`` below is the configuration; ``configs/demo.yaml`` is the same dictionary as a file (a test keeps them
equal) for ``varpo train configs/demo.yaml advantage_method=...``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from varpo.run import data, plots, sft
from varpo.run import train as train_mod
from varpo.run.evaluate import evaluate_model
from varpo.run.report import markdown_table, rich_table
from varpo.run.spec import load_yaml, parse_overrides, resolve

METHODS = ("grpo", "dvao")

DEMO: dict = {
    # what to train on
    "model": "builtin:tiny",
    "task": "toolcall",
    "train_prompts": 1024,
    "task_seed": 0,
    # warm start: short SFT on imperfect demonstrations, so RL has room on both objectives
    "warm_start": "sft",
    "sft_demos": 512,
    "sft_corrupt_fraction": 0.3,
    "sft_epochs": 12.0,
    "sft_learning_rate": 0.003,
    "sft_batch_size": 16,
    # evaluation on held-out prompts
    "eval_prompts": 256,
    "eval_k": 4,
    # RL (VarpoGRPOConfig); advantage_method and output_dir are set per run
    "max_steps": 80,
    "num_generations": 8,
    "per_device_train_batch_size": 48,
    "gradient_accumulation_steps": 1,
    "max_completion_length": 96,
    "temperature": 1.0,
    "learning_rate": 0.0005,
    "lr_scheduler_type": "constant",
    "beta": 0.0,
    "reward_weights": [1.0, 1.0],
    "loss_aggregation": "token_mean",
    "seed": 0,
    "logging_steps": 1,
    "save_strategy": "no",
    "gradient_checkpointing": False,
}


def demo_values(config: Path | None = None, overrides: list[str] = ()) -> dict:
    values = dict(DEMO)
    if config:
        values.update(load_yaml(config))
    values.update(parse_overrides(list(overrides)))
    values.pop("advantage_method", None)
    return values


def run(output: Path = Path("runs/demo"), config: Path | None = None, overrides: list[str] = ()) -> dict:
    """Run the demo end to end; returns ``{"results": {column: metrics}, "seconds": {stage: s}}``."""
    console = Console()
    output = Path(output)
    values = demo_values(config, overrides)
    runs = {m: resolve({**values, "advantage_method": m, "output_dir": str(output / m)}) for m in METHODS}
    for resolved in runs.values():
        resolved.trainer_config(**train_mod.cpu_defaults(resolved.train))  # validate both before any work
    spec = runs["dvao"].spec
    train_mod.set_threads(spec)
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    console.rule("[bold]1/4 warm start (SFT, cached by config hash)")
    t = time.perf_counter()
    warm = sft.warm_start(spec, seed=values["seed"])
    seconds["warm_start"] = time.perf_counter() - t
    console.print(f"warm start: {warm} ({seconds['warm_start']:.0f} s)")

    for i, (method, resolved) in enumerate(runs.items(), start=1):
        console.rule(f"[bold]2/4 RL run {i}/{len(runs)}: {method} ({values['max_steps']} steps)")
        t = time.perf_counter()
        train_mod.train(resolved)
        seconds[f"rl_{method}"] = time.perf_counter() - t

    console.rule("[bold]3/4 evaluation on held-out prompts")
    t = time.perf_counter()
    columns = {"warm start": str(warm), **{m: str(output / m / train_mod.FINAL_DIR) for m in METHODS}}
    eval_args = dict(
        k=spec.eval_k,
        max_new_tokens=values["max_completion_length"],
        temperature=values["temperature"] if spec.eval_temperature is None else spec.eval_temperature,
        seed=values["seed"],
    )
    results = {
        label: evaluate_model(
            path, spec, label=label, samples_file=output / f"samples_{label.replace(' ', '_')}.jsonl", **eval_args
        )
        for label, path in columns.items()
    }
    seconds["eval"] = time.perf_counter() - t

    console.rule("[bold]4/4 report")
    objectives = data.task_of(spec).reward_names
    title = (
        f"toolcall, {spec.eval_prompts} held-out prompts x {spec.eval_k} samples (T={eval_args['temperature']:g}), "
        f"{values['max_steps']} RL steps x {values['per_device_train_batch_size']} completions, equal weights"
    )
    console.print(rich_table(results, objectives, title))
    pngs = plots.plot_runs({m: output / m for m in METHODS}, objectives, output / "plots")
    seconds["total"] = time.perf_counter() - start
    (output / "eval.md").write_text(f"{title}\n\n" + markdown_table(results, objectives))
    summary = {"results": results, "seconds": seconds, "config": {**values, "warm_start_path": str(warm)}}
    (output / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    for metric in ("mean", "avg@k"):
        deltas = ", ".join(
            f"{o} {results['dvao'][f'{o}/{metric}'] - results['warm start'][f'{o}/{metric}']:+.3f}" for o in objectives
        )
        console.print(f"dvao - warm start ({'mean reward' if metric == 'mean' else 'avg@k satisfied'}): {deltas}")
    console.print(f"plots: {', '.join(str(p) for p in pngs)}")
    console.print(f"table: {output / 'eval.md'}; total {seconds['total']:.0f} s")
    return summary
