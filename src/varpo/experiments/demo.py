"""``varpo demo``, the main job: does the choice of multi-reward method change what a model learns?

Offline on a CPU, in a few minutes: build ``builtin:tiny``, warm-start it by SFT on the ``constraints`` task's
imperfect demonstrations (three word rules met 60 / 35 / 10 % of the time, and a length budget of three words that
conflicts with them), then train it by RL from that one warm start with the ``grpo`` baseline (sum the rewards,
z-score per group) and with ``saw`` (SAW: per-objective weights that follow each reward's coefficient of variation),
``len(SEEDS)`` seeds each, two runs at a time. Every run is evaluated on the same held-out prompts during training.

The report gives each objective's held-out rate per method with its standard error (over seeds, never below the
evaluation sample's), the paired difference against ``grpo`` and whether it is established (>= 3 s.e.), and a
picture: rates over training and the effective weights. The setting is the testbed's setting A
(``benchmarks/testbed/easy_hard.yaml``), where the pre-registered sweep found its largest difference
(docs/claims.md); the demo is that comparison at a smaller evaluation budget.

Runs go through the same sweep machinery as ``varpo sweep`` (one process per run, resumable); ``output/runs/`` holds
them, ``output/`` the table (``eval.md``), ``results.json`` and ``demo.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from varpo.experiments import demo_plots, demo_stats
from varpo.run import data, sft
from varpo.run import train as train_mod
from varpo.run.spec import load_yaml, parse_overrides, resolve, validate

BASELINE = "grpo"
METHODS = (BASELINE, "saw")
SEEDS = (0, 1, 2)
EVAL_EVERY = 20

DEMO: dict = {
    # what to train on: 3 word rules (warm-start rates 0.6 / 0.35 / 0.1) + a 3-word length budget
    "model": "builtin:tiny",
    "task": "constraints",
    "train_prompts": 1024,
    "task_seed": 0,
    # warm start: SFT on the task's imperfect demonstrations
    "warm_start": "sft",
    "sft_demos": 512,
    "sft_epochs": 3.0,
    "sft_learning_rate": 0.003,
    "sft_batch_size": 16,
    # evaluation on held-out prompts (the task's test split)
    "eval_prompts": 64,
    "eval_k": 4,
    # RL (VarpoGRPOConfig): 8 prompts x 8 completions per step; advantage_method, seed and output_dir set per run
    "max_steps": 80,
    "num_generations": 8,
    "per_device_train_batch_size": 64,
    "gradient_accumulation_steps": 1,
    "max_completion_length": 16,
    "temperature": 1.0,
    "learning_rate": 0.001,
    "lr_scheduler_type": "constant",
    "beta": 0.0,
    "loss_aggregation": "token_mean",
    "seed": 0,
    "logging_steps": 1,
    "save_strategy": "no",
    "gradient_checkpointing": False,
    "num_threads": 1,
}


def demo_values(config: Path | None = None, overrides: list[str] = ()) -> dict:
    values = dict(DEMO)
    if config:
        values.update(load_yaml(config))
    values.update(parse_overrides(list(overrides)))
    values.pop("advantage_method", None)
    return values


def run(
    output: Path = Path("runs/demo"),
    config: Path | None = None,
    overrides: list[str] = (),
    *,
    seeds: tuple[int, ...] = SEEDS,
    methods: tuple[str, ...] = METHODS,
    jobs: int = 2,
) -> dict:
    """Run the demo end to end; returns ``{"summary", "seconds", "verdicts", ...}`` (also in results.json)."""
    from varpo.experiments.grid import expand_grid
    from varpo.experiments.sweep import run_dir, run_sweep

    console = Console()
    if not console.is_terminal:  # a log file: rich would wrap lines at 80 columns (tables size to their content)
        console.width = 200
    output = Path(output)
    values = demo_values(config, overrides)
    if methods[0] != BASELINE:
        raise ValueError(f"the first demo method must be the baseline {BASELINE!r}")
    for m in methods:  # validate every run's configuration (and its files) before any work
        resolved = resolve({**values, "advantage_method": m, "output_dir": str(output / "runs" / m)})
        validate(resolved)
    spec = resolved.spec
    train_mod.set_threads(spec)
    objectives = data.task_of(spec).reward_names
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    console.print(f"[bold]1/3 warm start[/] (SFT on {spec.task} demonstrations, cached by config hash)")
    t = time.perf_counter()
    warm = sft.warm_start(spec, seed=values["seed"])
    seconds["warm_start"] = round(time.perf_counter() - t, 1)
    console.print(f"  warm start: {warm} ({seconds['warm_start']:.0f} s)")

    n_runs = len(methods) * len(seeds)
    console.print(
        f"[bold]2/3 RL[/]: {', '.join(methods)} x seeds {list(seeds)} = {n_runs} runs of {values['max_steps']} "
        f"steps, {jobs} at a time (logs: {output / 'runs'}/<run>/run.log)"
    )
    t = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    config_file = output / "demo.yaml"  # the sweep pins its own copy as output/config.yaml
    config_file.write_text(yaml.safe_dump({**values, "warm_start": str(warm)}, sort_keys=False))
    equal = ":".join(f"{1 / len(objectives):g}" for _ in objectives)
    # expand_grid validates the methods; the seeds are set explicitly (its "N" form would read one seed as a count)
    points = [dataclasses.replace(p, seed=s) for s in seeds for p in expand_grid(list(methods), [equal], 1)]
    done = [0]

    def progress(outcome) -> None:
        done[0] += 1
        p = outcome.point
        tail = f"failed: {outcome.error}" if outcome.status == "failed" else outcome.status
        wall = f" in {outcome.wall_s:.0f} s" if outcome.wall_s else ""
        console.print(f"  [{done[0]}/{n_runs}] {p.method} seed {p.seed}: {tail}{wall}", highlight=False)

    outcomes = run_sweep(
        config_file,
        output,
        points,
        overrides=[f"eval_every={EVAL_EVERY}", "save_model=false"],
        jobs=jobs,
        prepare=False,
        on_outcome=progress,
    )
    failed = [o for o in outcomes if o.status in ("failed", "held")]  # held: another live demo owns the run
    if failed:
        raise RuntimeError(f"{len(failed)} demo run(s) failed, first: {failed[0].error}")
    seconds["rl"] = round(time.perf_counter() - t, 1)

    console.print("[bold]3/3 report[/]")
    runs = demo_stats.load_runs([run_dir(output, p) for p in points])
    runs = {m: runs[m] for m in methods}
    n_eval = spec.eval_prompts * spec.eval_k
    summary = demo_stats.summarize(runs, BASELINE, n_eval)
    starts = [demo_stats.rates(p["curve"][0]) for p in runs[BASELINE].values()]  # step-0 evals of the warm start
    warm_rates = {o: sum(r[o] for r in starts) / len(starts) for o in summary["objectives"]}
    title = (
        f"{spec.task}: held-out rate ({spec.eval_prompts} prompts x {spec.eval_k} samples) after "
        f"{values['max_steps']} RL steps, mean ± s.e. over {len(summary['seeds'])} seeds"
    )
    console.print(_rich_table(summary, warm_rates, title))
    verdicts = demo_stats.verdict_lines(summary, BASELINE)
    for line in verdicts:
        console.print("  " + line, highlight=False)
    run_dirs = {m: {s: run_dir(output, _point(points, m, s)) for s in summary["seeds"]} for m in methods}
    png = demo_plots.plot(runs, run_dirs, objectives, output / "demo.png")
    seconds["total"] = round(time.perf_counter() - start, 1)
    (output / "eval.md").write_text(f"{title}\n\n{_markdown_table(summary, warm_rates)}\n\n" + "\n".join(verdicts))
    result = {
        "summary": _jsonable(summary),
        "warm_start_rates": warm_rates,
        "verdicts": verdicts,
        "conclusion": conclusion(summary),
        "seconds": seconds,
        "config": {**values, "warm_start_path": str(warm), "methods": list(methods), "seeds": list(seeds)},
    }
    (output / "results.json").write_text(json.dumps(result, indent=2, default=str))
    console.print(f"picture: {png}; table: {output / 'eval.md'}; total {seconds['total']:.0f} s", highlight=False)
    return result


def conclusion(summary: dict) -> dict[str, dict[str, str]]:
    """Per method and objective, the verdict word: the better method's name, or "none" (not established)."""
    out: dict[str, dict[str, str]] = {}
    for method, per_obj in summary["diffs"].items():
        out[method] = {
            o: ((method if d.mean > 0 else BASELINE) if demo_stats.established(d) else "none")
            for o, d in per_obj.items()
        }
    return out


def _point(points, method: str, seed: int):
    return next(p for p in points if p.method == method and p.seed == seed)


def _rows(summary: dict, warm: dict) -> list[list[str]]:
    rows = []
    for o in summary["objectives"]:
        row = [o, f"{warm[o]:.3f}"]
        row += [str(summary["table"][m][o]) for m in summary["table"]]
        row += [f"{d.mean:+.3f} ± {d.se:.3f}{' *' if demo_stats.established(d) else ''}" for d in
                (summary["diffs"][m][o] for m in summary["diffs"])]  # fmt: skip
        rows.append(row)
    return rows


def _header(summary: dict) -> list[str]:
    return ["objective", "warm start", *summary["table"], *(f"{m} − {BASELINE}" for m in summary["diffs"])]


def _rich_table(summary: dict, warm: dict, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(_header(summary)):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in _rows(summary, warm):
        table.add_row(*row)
    table.caption = "* established: |difference| >= 3 s.e."
    return table


def _markdown_table(summary: dict, warm: dict) -> str:
    header = _header(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(summary, warm)]
    return "\n".join(lines) + "\n\n\\* established: |difference| >= 3 s.e."


def _jsonable(summary: dict) -> dict:
    def est(e):
        return {"mean": e.mean, "se": e.se, "n_seeds": e.n_seeds}

    return {
        "seeds": summary["seeds"],
        "objectives": summary["objectives"],
        "per_seed": summary["rates"],
        "table": {m: {o: est(e) for o, e in per.items()} for m, per in summary["table"].items()},
        "diffs": {m: {o: est(e) for o, e in per.items()} for m, per in summary["diffs"].items()},
    }
