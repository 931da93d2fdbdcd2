"""The ``varpo`` command line: ``demo`` (the main job), ``sft``, ``train``, ``eval`` (and ``sweep``, ``report``).

Every error is one line on stderr with a non-zero exit status, never a traceback: the app's click group
(:class:`varpo.cli_errors.OneLineErrors`) formats them all, so commands raise and never catch. Configuration
errors (unknown key, invalid value or combination, unreadable file) name the field and exit with status 2; they
are found by :func:`varpo.run.spec.validate` before a model build or a rollout starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from varpo.cli_errors import OneLineErrors

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="varpo: variance-aware multi-reward group policy optimization (DVAO, GVPO, VL Norm, SAW, RVPO) on TRL.",
)
console = Console()

OVERRIDES = typer.Argument(
    None,
    help="key=value overrides, the YAML keys: RunSpec and VarpoGRPOConfig fields (shipped reference: "
    "`python -m pydoc varpo.run.spec`, `python -m pydoc varpo.trl.config`; an unknown key lists the closest).",
    show_default=False,
)


def _environment() -> None:
    """No telemetry; tokenizers' fork warning off (we never fork while a tokenizer is busy)."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@app.command()
def demo(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Directory for runs, plots and tables."),
    config: Path | None = typer.Option(
        None, "--config", exists=True, dir_okay=False, help="YAML overriding the built-in demo configuration."
    ),
    seeds: str = typer.Option(
        "0,1,2,3", "--seeds", help="Comma list of seeds (each its own SFT warm start; each method runs once per seed)."
    ),
    jobs: int = typer.Option(2, "--jobs", min=1, help="Runs at once (one process each)."),
    overrides: list[str] | None = OVERRIDES,
) -> None:
    """The main job: tiny model, constraints testbed, an SFT warm start per seed, then RL with grpo and saw over 4
    seeds; held-out rates with standard errors, saw - grpo with an exact test, per-seed outcomes, and a picture."""
    _environment()
    from varpo.experiments import demo as demo_mod

    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        seed_list = ()
    if not seed_list:
        raise typer.BadParameter(f"{seeds!r}: expected a comma list of integer seeds", param_hint="'--seeds'")
    demo_mod.run(output, config=config, overrides=overrides or [], seeds=seed_list, jobs=jobs)


@app.command()
def sft(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML run configuration."),
    overrides: list[str] | None = OVERRIDES,
    force: bool = typer.Option(False, "--force", help="Retrain even if a cached warm start exists."),
) -> None:
    """Warm-start the configured model with TRL's SFTTrainer on the task's demonstrations (cached by config hash)."""
    _environment()
    from varpo.run import sft as sft_mod
    from varpo.run import spec as spec_mod
    from varpo.run.train import set_threads

    resolved = spec_mod.load_config(config, overrides or [])
    spec_mod.validate(resolved)
    set_threads(resolved.spec)
    path = sft_mod.warm_start(resolved.spec, seed=resolved.train.get("seed", 42), force=force)
    console.print(f"warm start: {path}")


@app.command()
def train(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML run configuration."),
    overrides: list[str] | None = OVERRIDES,
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate config, data, rewards, tokenizer, model config."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in output_dir (its run.json must match)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run in a non-empty output_dir."),
    override: bool = typer.Option(False, "--override", help="With --resume: accept config changes vs run.json."),
) -> None:
    """RL with any advantage method, policy loss and aggregation (VarpoGRPOTrainer on TRL)."""
    _environment()
    from rich.table import Table

    from varpo.run import spec as spec_mod
    from varpo.run import train as train_mod

    resolved = spec_mod.load_config(config, overrides or [])
    if dry_run:
        table = Table(title=f"dry run: {config}", show_header=False)
        for item, result in train_mod.dry_run(resolved, resume=resume, overwrite=overwrite, override=override):
            table.add_row(item, result)
        console.print(table)
        console.print("[green]ok[/]: nothing was trained or downloaded")
        return
    out = train_mod.train(resolved, resume=resume, overwrite=overwrite, override=override)
    console.print(f"run directory: {out}")


@app.command(name="eval")
def eval_(
    target: str = typer.Argument(..., help="A run directory (before/after table) or a model path."),
    task: str = typer.Option("toolcall", "--task", help="Task to evaluate on (ignored for a run directory)."),
    k: int = typer.Option(4, "--k", min=1, help="Samples per prompt (avg@k)."),
    prompts: int | None = typer.Option(
        None, "--prompts", min=1, help="Held-out prompts (default: the run's eval_prompts)."
    ),
    temperature: float | None = typer.Option(None, "--temperature", help="Sampling temperature."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1, help="Completion budget."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
) -> None:
    """avg@k per objective and the all-objectives rate on held-out prompts."""
    _environment()
    from varpo.run import evaluate as eval_mod

    eval_mod.command(target, task, k, prompts, temperature, max_new_tokens, seed, console)


# Experiments (issue 6): the grid runner and the report live in varpo.experiments; registered here so that
# `varpo --help` lists every command.
from varpo.experiments import cli as _experiments_cli  # noqa: E402

app.command("sweep")(_experiments_cli.sweep)
app.command("report")(_experiments_cli.report)

# The mechanism lab (issue 10): `varpo lab run|allocate|replay|claim|scenarios`.
from varpo.lab import cli as _lab_cli  # noqa: E402

app.add_typer(_lab_cli.app, name="lab")


def main() -> None:  # pragma: no cover - console entry point alias
    app()
