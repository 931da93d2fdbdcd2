"""Typer commands ``sweep`` and ``report``. The main CLI registers them as ``varpo sweep`` / ``varpo report``::

    from varpo.experiments import cli as experiments_cli
    app.command("sweep")(experiments_cli.sweep)
    app.command("report")(experiments_cli.report)

They also run standalone: ``python -m varpo.experiments sweep …`` / ``python -m varpo.experiments report …``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from varpo.cli_errors import OneLineErrors

DEFAULT_METHODS = "grpo,ac,gdpo,dvao,saw,rvpo"
DEFAULT_WEIGHTS = "0.1,0.3,0.5,0.7,0.9"


def _argv() -> list[str]:
    """The command line as the user typed it (``varpo …`` or ``python -m varpo.experiments …``)."""
    head = Path(sys.argv[0]).name
    if head == "__main__.py":
        head = f"python -m {Path(sys.argv[0]).resolve().parent.name}"
        if "experiments" in head:
            head = "python -m varpo.experiments"
    return [head, *sys.argv[1:]]


def sweep(
    config: Annotated[Path, typer.Argument(help="YAML run config every run starts from.", exists=True, dir_okay=False)],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value applied to every run (e.g. max_steps=40 eval_prompts=64).")
    ] = None,
    methods: Annotated[str, typer.Option(help="Comma list of advantage methods.")] = DEFAULT_METHODS,
    weights: Annotated[
        str, typer.Option(help="Comma list: w1 per item (w2 = 1 - w1) or colon vectors for K objectives (0.2:0.3:0.5).")
    ] = DEFAULT_WEIGHTS,
    seeds: Annotated[str, typer.Option(help="N (seeds 0..N-1) or a comma list of seeds.")] = "3",
    aggregations: Annotated[
        str, typer.Option(help="Comma list of loss aggregations to sweep (empty: the config's).")
    ] = "",
    losses: Annotated[str, typer.Option(help="Comma list of policy losses to sweep (empty: the config's).")] = "",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Sweep directory (default runs/sweeps/<config stem>).")
    ] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="Runs at once (default: CPUs // threads-per-run).")] = None,
    threads_per_run: Annotated[int, typer.Option(min=1, help="torch/OpenMP threads of each run.")] = 1,
    timeout: Annotated[
        float | None, typer.Option(help="Kill a run after this many seconds (> 0; marked failed).")
    ] = None,
    runner: Annotated[
        str | None, typer.Option(help="Command of one run (default: python -m varpo.experiments.runner).")
    ] = None,
    report_after: Annotated[bool, typer.Option("--report/--no-report", help="Write report.md when done.")] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the grid and the first command; run nothing.")
    ] = False,
) -> None:
    """Run methods × weights × seeds (× aggregations × losses), one process per run; resumable, parallel."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from varpo.experiments.grid import expand_grid
    from varpo.experiments.sweep import (
        DEFAULT_RUNNER,
        check_grid,
        default_jobs,
        is_finished,
        run_command,
        run_dir,
        run_sweep,
    )

    console = Console(stderr=True)
    if timeout is not None and not timeout > 0:
        raise typer.BadParameter(f"{timeout!r}: a run timeout must be > 0 seconds", param_hint="'--timeout'")
    try:
        points = expand_grid(methods, weights, seeds, aggregations or None, losses or None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    sweep_dir = out or Path("runs") / "sweeps" / config.stem
    runner_argv = shlex.split(runner) if runner else list(DEFAULT_RUNNER)
    if runner is None:  # a custom runner has its own keys; the default one gets the engine's checks up front
        check_grid(config, points, overrides or [], threads_per_run)
    n_jobs = jobs or default_jobs(threads_per_run)
    done = sum(is_finished(sweep_dir, p) for p in points)
    console.print(f"sweep {sweep_dir}: {len(points)} runs ({done} already finished), {n_jobs} at once")
    if dry_run:
        for p in points:
            console.print(f"  {p.name}")
        cmd = run_command(
            runner_argv, config, run_dir(sweep_dir, points[0]), points[0], overrides or [], threads_per_run
        )
        console.print("first run: " + shlex.join(cmd))
        return

    failed, held = [], []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("runs", total=len(points))

        def show(outcome) -> None:
            bar.advance(task)
            if outcome.status == "failed":
                failed.append(outcome)
                bar.console.print(f"[red]failed[/red] {outcome.point.name}: {escape(str(outcome.error))}")
            elif outcome.status == "held":
                held.append(outcome)
                bar.console.print(f"[yellow]skipped[/yellow] {outcome.point.name}: {escape(str(outcome.error))}")

        run_sweep(
            config,
            sweep_dir,
            points,
            overrides or [],
            runner=runner_argv,
            jobs=n_jobs,
            threads_per_run=threads_per_run,
            timeout=timeout,
            check=False,  # done above
            argv=_argv(),
            on_outcome=show,
        )
    if report_after:
        from varpo.experiments.report import write_report

        path = write_report(sweep_dir, argv=["varpo", "report", str(sweep_dir)])
        console.print(f"report: {path}")
        _warn_never_varied(path)
    if held:
        console.print(f"{len(held)} run(s) are in use by another live sweep process and were not started.")
    if failed:
        console.print(f"{len(failed)} run(s) failed; re-run the same command to retry them.")
    if failed or held:
        raise typer.Exit(1)


def _warn_never_varied(report_path: Path) -> None:
    """A valid result nobody could learn from must be seen where the command is run, not only in report.md."""
    from varpo.experiments.report import never_varied

    for objective in never_varied(report_path.parent):
        typer.echo(
            f"warning: objective {objective!r} never varied within a group in training: no method could learn it "
            f"(see {report_path})",
            err=True,
        )


def report(
    sweep_dir: Annotated[
        Path, typer.Argument(help="A directory written by varpo sweep.", exists=True, file_okay=False)
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where report.md and PNGs go (default SWEEP_DIR).")
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="Hypervolume reference point, one value per objective (default 0 each).")
    ] = None,
    confidence: Annotated[float, typer.Option(help="Level of the t-intervals over seeds.")] = 0.95,
    window: Annotated[
        int,
        typer.Option(min=1, help="Centered moving-average window of the curves, capped at a quarter of their points."),
    ] = 15,
    score: Annotated[
        str,
        typer.Option(help="Held-out score compared: objectives (avg@k, full marks), mean_reward or pass_at_k."),
    ] = "objectives",
) -> None:
    """Write report.md + PNGs: Pareto frontiers, hypervolume ± CI, training dynamics, monotonicity, score table;
    report.json holds the flags (objectives that never varied within a group)."""
    from varpo.experiments.report import write_report
    from varpo.experiments.results import load_sweep

    ref = None
    if reference:
        try:
            ref = [float(x) for x in reference.split(",")]
        except ValueError:
            raise typer.BadParameter(f"--reference {reference!r}: expected comma-separated numbers") from None
    try:
        path = write_report(
            sweep_dir, out, reference=ref, confidence=confidence, window=window, score=score, argv=_argv()
        )
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(str(path))
    _warn_never_varied(path)
    unreadable = load_sweep(sweep_dir, score).unreadable
    for run in unreadable:  # the report is written (the other runs are valid) but this must not pass unnoticed
        typer.echo(f"warning: {run.point.name}: {run.status}", err=True)
    if unreadable:
        typer.echo(f"{len(unreadable)} run(s) have an unreadable eval.json; see {path}", err=True)
        raise typer.Exit(1)


app = typer.Typer(
    cls=OneLineErrors,
    help="varpo experiments: weight/seed sweeps and their reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("sweep")(sweep)
app.command("report")(report)
