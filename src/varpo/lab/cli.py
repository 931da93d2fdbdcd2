"""``varpo lab``: run a scenario or YAML config, see how estimators allocate learning, replay a reward log, run a
pre-registered claim. Errors in inputs print one line and exit with status 2."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help="The mechanism lab (docs/lab.md).")
console = Console()
errors = Console(stderr=True)  # errors go to stderr, like every varpo command's
DEFAULT_METHODS = "grpo,ac,gdpo,dvao,saw,rvpo"


def _threads() -> None:
    import torch

    torch.set_num_threads(1)  # the lab is many tiny ops: one thread is fastest and leaves cores to others


def _fail(err: Exception) -> None:
    errors.print(f"[bold red]error:[/] {' '.join(str(err).split())}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _csv(text: str | None, cast=str) -> list | None:
    return None if text is None else [cast(x.strip()) for x in text.split(",") if x.strip()]


def _per_objective(flag: str, text: str | None, k: int, default, cast=str) -> list:
    """One value per objective (``k`` from ``--success``): a single value applies to every objective."""
    values = _csv(text, cast)
    if not values:
        return [default] * k
    if len(values) == 1:
        return values * k
    if len(values) != k:
        raise ValueError(f"{flag} has {len(values)} values for {k} objectives (--success); give 1 or {k}")
    return values


METHODS_HELP = "Comma list of advantage estimators (built-in or registered; see `varpo sweep --help`)."


def _commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    t = Table(title=title)
    for k in keys:
        t.add_column(k, overflow="fold")
    for r in rows:
        t.add_row(*[f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys])
    console.print(t)


@app.command("scenarios")
def scenarios_() -> None:
    """List the named scenarios."""
    from varpo.lab.scenarios import SCENARIOS

    for name, s in SCENARIOS.items():
        console.print(f"[bold]{name}[/]: {s['doc']}")


def _spec_and_config(scenario: str | None, config: Path | None, overrides: dict):
    from varpo.lab import scenarios as sc

    if (scenario is None) == (config is None):
        raise ValueError("give exactly one of a scenario name or --config YAML")
    if config is not None:
        data = sc.load_yaml(config)
        spec = sc.build_spec(data["spec"], f"{config}:spec")
        cfg = sc.build_config({**data.get("train", {}), **overrides}, f"{config}:train")
        return spec, cfg, data.get("methods"), data.get("seeds")
    spec, cfg = sc.scenario(scenario, **overrides)
    return spec, cfg, None, None


@app.command()
def run(
    scenario: str | None = typer.Argument(None, help="Scenario name (`varpo lab scenarios`)."),
    config: Path | None = typer.Option(None, "--config", help="Lab YAML (spec / train / methods / seeds)."),
    methods: str | None = typer.Option(None, "--methods", help=f"Comma list (default {DEFAULT_METHODS})."),
    seeds: int | None = typer.Option(None, "--seeds", min=1, help="Independent seeds per method (default 64)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Training steps."),
    out: Path = typer.Option(Path("runs/lab"), "--out", "-o", help="Output directory (JSON + PNG)."),
) -> None:
    """Train every method on a scenario; table of final satisfaction per objective, all-objectives rate, weights."""
    _threads()
    from dataclasses import replace

    from varpo.lab import report
    from varpo.lab.claims import _row
    from varpo.lab.train import train as train_fn

    try:
        spec, cfg, cfg_methods, cfg_seeds = _spec_and_config(scenario, config, {})
        if steps is not None:
            cfg = replace(cfg, steps=steps)
        names = _csv(methods) or cfg_methods or _csv(DEFAULT_METHODS)
        n = seeds or cfg_seeds or 64
        rows, curves, runs = [], {}, {}
        for m in names:
            h = train_fn(spec, replace(cfg, method=m), seeds=n)
            runs[m] = h
            row = dict(method=m, all_rate=float(h.all_rate[-1].mean()), worst=float(h.satisfied[-1].min(1).mean()))
            for j, name in enumerate(spec.names):
                row[f"sat/{name}"] = float(h.satisfied[-1, :, j].mean())
                row[f"weight/{name}"] = float(h.weights[:, j].mean())
            row["seconds"] = h.seconds
            rows.append(row)
            curves.setdefault("all_rate", {})[m] = h.all_rate.mean(1).tolist()
    except ValueError as err:
        _fail(err)
    _table(f"lab: {scenario or config} ({n} seeds, {cfg.steps} steps)", rows)
    from varpo.lab.claims import ClaimResult

    result = ClaimResult(
        f"run-{scenario or Path(config).stem}", f"lab run {scenario or config}", table=rows, curves=curves
    )
    if "grpo" in runs:  # paired (by seed index) differences against grpo; two-sided reading, '>0' = beats grpo
        g = runs["grpo"]
        for m, h in runs.items():
            if m == "grpo":
                continue
            for j, name in enumerate(spec.names):
                diff = h.satisfied[-1, :, j] - g.satisfied[-1, :, j]
                result.rows.append(_row(f"{m} − grpo", f"satisfaction {name}", ">0", diff))
            result.rows.append(_row(f"{m} − grpo", "all-objectives rate", ">0", h.all_rate[-1] - g.all_rate[-1]))
    result.config = dict(spec=spec.meta, train=repr(cfg), seeds=n)
    path = report.write(result, out, command="varpo lab " + " ".join(sys.argv[2:]), commit=_commit())
    console.print(f"report: {path}")


@app.command()
def allocate(
    scenario: str | None = typer.Argument(None, help="Scenario name, or use --success / --log / --config."),
    success: str | None = typer.Option(None, "--success", help="Per-objective initial success rates, e.g. 0.1,0.9."),
    names: str | None = typer.Option(None, "--names", help="Objective names (default o0,o1,...)."),
    scale: str | None = typer.Option(None, "--scale", help="Per-objective reward scales (default 1)."),
    kind: str | None = typer.Option(None, "--kind", help="Per-objective binary|partial (default binary)."),
    correlation: float = typer.Option(0.0, "--correlation", help="Equicorrelation of the objectives' latents."),
    weights: str | None = typer.Option(None, "--weights", help="Objective weights (default uniform)."),
    log: Path | None = typer.Option(None, "--log", help="A reward_log directory of a real run."),
    config: Path | None = typer.Option(None, "--config", help="Lab YAML."),
    methods: str = typer.Option(DEFAULT_METHODS, "--methods", help=METHODS_HELP),
    seeds: int = typer.Option(64, "--seeds", min=1, help="Simulated seeds."),
    steps: int = typer.Option(20, "--steps", min=1, help="Short horizon: allocation is about the first steps."),
    prompts_per_step: int | None = typer.Option(
        None, "--prompts-per-step", min=1, help="Prompts drawn per step (default 8; at most the log's prompts)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write allocation.json here."),
) -> None:
    """Which objective each estimator learns, and which it neglects (effective weights, gain per step)."""
    _threads()
    from varpo.lab import allocate as al
    from varpo.lab import env
    from varpo.lab import scenarios as sc

    try:
        overrides = dict(steps=steps)
        if prompts_per_step is not None:
            overrides["prompts_per_step"] = prompts_per_step
        if weights is not None:
            overrides["weights"] = tuple(_csv(weights, float))
        if log is not None:
            spec, cfg = env.from_reward_log(log), sc.build_config(overrides)
        elif success is not None:
            rates = _csv(success, float)
            k = len(rates)
            labels = _csv(names) or [f"o{i}" for i in range(k)]
            if len(labels) != k:
                raise ValueError(f"--names has {len(labels)} values for {k} objectives (--success)")
            scales = _per_objective("--scale", scale, k, 1.0, float)
            kinds = _per_objective("--kind", kind, k, "binary")
            objs = [env.Objective(name=labels[i], success=rates[i], scale=scales[i], kind=kinds[i]) for i in range(k)]
            spec, cfg = env.synthetic(objs, correlation=correlation), sc.build_config(overrides)
        else:
            spec, cfg, _, _ = _spec_and_config(scenario, config, overrides)
        rows = al.allocation(spec, _csv(methods), cfg, seeds=seeds)
    except ValueError as err:
        _fail(err)
    init = spec.initial_rates().tolist()
    console.print("initial full-marks rates: " + ", ".join(f"{n}={r:.3f}" for n, r in zip(spec.names, init)))
    t = Table(title=f"allocation over {steps} steps, {seeds} seeds (weight / Δrate per step / share of headroom)")
    t.add_column("method")
    for n in spec.names:
        t.add_column(n)
    t.add_column("all-objectives")
    t.add_column("neglects")
    for a in rows:
        cells = [
            f"{a.weight[j]:.2f} / {a.gain_per_step[j]:+.4f} / {a.headroom_share[j]:.2f}" for j in range(len(a.names))
        ]
        t.add_row(a.method, *cells, f"{a.all_rate:.3f}", a.neglected)
    console.print(t)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "allocation.json").write_text(json.dumps([a.to_dict() for a in rows], indent=1))
        console.print(f"wrote {out / 'allocation.json'}")


@app.command()
def replay(
    log: Path = typer.Argument(..., help="A reward_log directory (TRL engine, log_reward_matrix: true)."),
    methods: str = typer.Option(DEFAULT_METHODS, "--methods", help=METHODS_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write replay.json here."),
) -> None:
    """Recompute every estimator on every logged batch: mean effective weights, mean A², zero-signal groups."""
    from varpo.lab import allocate as al

    try:
        rows = al.replay(log, _csv(methods))
    except ValueError as err:
        _fail(err)
    _table(f"replay of {log}", rows)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "replay.json").write_text(json.dumps(rows, indent=1))


@app.command()
def claim(
    name: str = typer.Argument(..., help="A claim of docs/claims.md (gvpo_thm31, dvao_bounds, vl_norm, ...)."),
    seeds: int | None = typer.Option(None, "--seeds", min=1),
    steps: int | None = typer.Option(None, "--steps", min=1),
    worlds: int | None = typer.Option(
        None, "--worlds", min=2, help="Synthetic worlds (env seeds); intervals over world means (saw, rvpo, dvao_*)."
    ),
    first_world: int | None = typer.Option(None, "--first-world", min=0, help="Env seed of the first world."),
    optimizer: str | None = typer.Option(None, "--optimizer", help="sgd (default, lr 10) or adam (lr 0.05)."),
    out: Path = typer.Option(..., "--out", "-o"),
) -> None:
    """Run one pre-registered lab claim and publish report.md, result.json and PNGs in --out."""
    _threads()
    import time

    from varpo.lab import claims, report

    if name not in claims.CLAIMS:
        _fail(ValueError(f"unknown claim {name!r}; choose one of {sorted(claims.CLAIMS)}"))
    given = dict(seeds=seeds, steps=steps, worlds=worlds, first_world=first_world, optimizer=optimizer)
    kw = {k: v for k, v in given.items() if v is not None}
    extra = sorted(set(kw) - set(inspect.signature(claims.CLAIMS[name]).parameters))
    if extra:
        _fail(ValueError(f"claim {name!r} has no option(s) {['--' + k.replace('_', '-') for k in extra]}"))
    start = time.perf_counter()
    try:
        result = claims.CLAIMS[name](**kw)
    except (ValueError, TypeError) as err:
        _fail(err)
    result.seconds = time.perf_counter() - start
    path = report.write(result, out, command="varpo lab " + " ".join(sys.argv[2:]), commit=_commit())
    _table(result.title, [dict(zip(claims.FIELDS, r.cells(), strict=True)) for r in result.rows])  # decided
    console.print(f"report: {path}")
