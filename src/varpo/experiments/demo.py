"""``varpo demo``, the main job: does the choice of multi-reward method change what a model learns?

Offline on a CPU, in a few minutes: build ``builtin:tiny`` and, for every seed, warm-start it by SFT on the
``constraints`` task's imperfect demonstrations (three word rules met 60 / 35 / 10 % of the time, and a length budget
of three words that conflicts with them; SFT seed = the run's seed, each warm start cached), then train it by RL from
that seed's warm start with the ``grpo`` baseline (sum the rewards, z-score per group) and with ``saw`` (SAW:
per-objective weights that follow each reward's coefficient of variation), ``len(SEEDS)`` seeds each, two runs at a
time. Every run is evaluated on the same held-out prompts during training; the final evaluation (step ``max_steps``)
is the one compared.

The report (:mod:`varpo.experiments.demo_stats`, on :mod:`varpo.significance`) gives each objective's held-out rate
per method (mean over seeds ± an s.e. that accounts for seeds and prompt clustering), the difference ``saw - grpo``
with its 95 % interval and exact two-sample permutation p, per-seed outcomes (how many seeds lost the objective), and
the verdict. Only the pre-registered ``PRIMARY`` metric (the length budget; docs/claims.md, DM3) can be
*established* (Holm-adjusted p < 0.05 within its family, the project-wide definition); every other row is
descriptive. The setting is the testbed's setting A (``benchmarks/testbed/easy_hard.yaml``).

Runs go through the same sweep machinery as ``varpo sweep`` (one process per run, resumable; the per-seed warm starts
are the sweep's ``prepare`` step, two at a time); ``output/runs/`` holds them, ``output/`` the table (``eval.md``),
``results.json`` (every per-seed number) and ``demo.png``.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from varpo.experiments import demo_plots, demo_stats
from varpo.run import data
from varpo.run.spec import load_yaml, parse_overrides, resolve, validate

BASELINE = "grpo"
METHODS = (BASELINE, "saw")
SEEDS = (0, 1, 2, 3)
PRIMARY = ("length",)  # the pre-registered family (docs/claims.md, DM3); every other row is descriptive
EVAL_EVERY = 20

DEMO: dict = {
    # what to train on: 3 word rules (warm-start rates 0.6 / 0.35 / 0.1) + a 3-word length budget
    "model": "builtin:tiny",
    "task": "constraints",
    "train_prompts": 1024,
    "task_seed": 0,
    # warm start: SFT on the task's imperfect demonstrations, one per seed (SFT seed = run seed)
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


LIMITATION = (
    "What the demo does not show: it is {n} seeds of one small synthetic task (builtin:tiny, 80 RL steps); only the "
    "pre-registered length-budget difference can be established, every other row is descriptive; and grpo with "
    "tuned static per-objective weights was not run, so saw is compared with the equal-weight sum only."
)


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
    primary: tuple[str, ...] = PRIMARY,
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
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"demo seeds must be distinct, got {list(seeds)}")
    for m in methods:  # validate every run's configuration (and its files) before any work
        resolved = resolve({**values, "advantage_method": m, "output_dir": str(output / "runs" / m)})
        validate(resolved)
    spec = resolved.spec
    objectives = data.task_of(spec).reward_names
    unknown = [p for p in primary if p not in (*objectives, demo_stats.ALL)]
    if unknown:
        raise ValueError(f"primary metric(s) {unknown} are not objectives of {spec.task} ({objectives})")
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    n_runs = len(methods) * len(seeds)
    warm_word = "one SFT warm start per seed (SFT seed = run seed, cached)" if spec.warm_start == "sft" else (
        f"warm start {spec.warm_start or 'none'} for every seed")  # fmt: skip
    console.print(
        f"[bold]1/2 warm starts and RL[/]: {warm_word}, {jobs} at a time (logs: {output / 'prepare'}/); then "
        f"{', '.join(methods)} x seeds {list(seeds)} = {n_runs} runs of {values['max_steps']} steps, {jobs} at a "
        f"time (logs: {output / 'runs'}/<run>/run.log)"
    )
    output.mkdir(parents=True, exist_ok=True)
    config_file = output / "demo.yaml"  # the sweep pins its own copy as output/config.yaml
    config_file.write_text(yaml.safe_dump(values, sort_keys=False))
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
        prepare=True,  # the per-seed warm starts (and their step-0 evaluations), before any run could race for them
        prepare_jobs=jobs,
        on_outcome=progress,
    )
    failed = [o for o in outcomes if o.status in ("failed", "held")]  # held: another live demo owns the run
    if failed:
        raise RuntimeError(f"{len(failed)} demo run(s) failed, first: {failed[0].error}")
    seconds["warm_starts_and_rl"] = round(time.perf_counter() - start, 1)

    console.print("[bold]2/2 report[/]")
    runs = demo_stats.load_runs([run_dir(output, p) for p in points])
    runs = {m: runs[m] for m in methods}
    summary = demo_stats.summarize(runs, BASELINE, tuple(primary))
    starts = {s: demo_stats.rates(runs[BASELINE][s]["curve"][0]) for s in summary["seeds"]}  # step-0 evals
    warm_rates = {o: statistics.fmean(starts[s][o] for s in starts) for o in summary["objectives"]}
    title = (
        f"{spec.task}: held-out rate ({spec.eval_prompts} prompts x {spec.eval_k} samples) after "
        f"{values['max_steps']} RL steps, mean ± s.e. over {len(summary['seeds'])} seeds (each its own warm start)"
    )
    console.print(_rich_table(summary, warm_rates, title))
    verdicts = demo_stats.verdict_lines(summary, BASELINE)
    limitation = LIMITATION.format(n=len(summary["seeds"]))
    for line in [*verdicts, limitation]:
        console.print("  " + line, highlight=False)
    run_dirs = {m: {s: run_dir(output, _point(points, m, s)) for s in summary["seeds"]} for m in methods}
    png = demo_plots.plot(runs, run_dirs, objectives, output / "demo.png")
    seconds["total"] = round(time.perf_counter() - start, 1)
    (output / "eval.md").write_text(
        f"{title}\n\n{_markdown_table(summary, warm_rates)}\n\n" + "\n".join(f"- {v}" for v in verdicts)
        + f"\n\n{limitation}\n"
    )  # fmt: skip
    result = {
        "summary": demo_stats.to_json(summary),
        "warm_start_rates": warm_rates,
        "warm_start_rates_per_seed": starts,
        "warm_start_models": {s: runs[BASELINE][s]["start_model"] for s in summary["seeds"]},
        "verdicts": verdicts,
        "limitation": limitation,
        "conclusion": conclusion(summary),
        "seconds": seconds,
        "config": {**values, "methods": list(methods), "seeds": list(seeds), "primary": list(primary)},
    }
    (output / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    console.print(f"picture: {png}; table: {output / 'eval.md'}; total {seconds['total']:.0f} s", highlight=False)
    return result


def conclusion(summary: dict) -> dict[str, dict[str, str]]:
    """Per method and objective, the verdict word: the better method's name where established (only the
    pre-registered family can be), else "none"."""
    out: dict[str, dict[str, str]] = {}
    for method, per_obj in summary["diffs"].items():
        out[method] = {
            o: ((method if r.estimate > 0 else BASELINE) if r.established else "none") for o, r in per_obj.items()
        }
    return out


def _point(points, method: str, seed: int):
    return next(p for p in points if p.method == method and p.seed == seed)


def _rows(summary: dict, warm: dict) -> list[list[str]]:
    rows = []
    for o in summary["objectives"]:
        row = [o, f"{warm[o]:.3f}"]
        row += [f"{summary['table'][m][o]['mean']:.3f} ± {summary['table'][m][o]['se']:.3f}" for m in summary["table"]]
        for r in (summary["diffs"][m][o] for m in summary["diffs"]):
            primary = o in summary["primary"]
            row += [f"{r.estimate:+.3f} [{r.low:+.3f}, {r.high:+.3f}]", f"{r.p:.3f}"]
            row += [demo_stats.lost_counts(summary, o), demo_stats.verdict(r, primary)]
        rows.append(row)
    return rows


def _header(summary: dict) -> list[str]:
    head = ["objective", "warm start", *summary["table"]]
    for m in summary["diffs"]:
        head += [f"{m} − {BASELINE} [95 % CI]", "p (exact)", f"lost ≤ {demo_stats.LOST:g}", "verdict"]
    return head


CAPTION = (
    "Rates: mean ± s.e. over seeds (s.e. = max of between-seed and prompt-clustered sampling s.e.). p: exact two-sample "
    "permutation test over the seeds (conservative: a seed's two runs share a warm start). Established = Holm-adjusted "
    "p < 0.05 within the pre-registered family ({family}); other rows are descriptive."
)


def _rich_table(summary: dict, warm: dict, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(_header(summary)):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in _rows(summary, warm):
        table.add_row(*row)
    table.caption = CAPTION.format(family=", ".join(summary["primary"]))
    table.caption_justify = "left"
    return table


def _markdown_table(summary: dict, warm: dict) -> str:
    header = _header(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(summary, warm)]
    return "\n".join(lines) + "\n\n" + CAPTION.format(family=", ".join(summary["primary"]))
