"""Experiment instruments: weight × seed sweeps through the engine, Pareto frontiers, hypervolume, reports.

    from varpo.experiments import expand_grid, run_sweep, write_report, hypervolume, non_dominated
    points = expand_grid("grpo,dvao", "0.1,0.5,0.9", seeds=3)
    run_sweep("configs/demo.yaml", "runs/sweeps/demo", points, ["max_steps=40"])
    write_report("runs/sweeps/demo")                  # report.md + PNGs in the sweep directory

See ``docs/experiments.md`` for the commands, every figure and metric, and how to read the intervals.
"""

from varpo.experiments.grid import GridPoint, expand_grid, parse_seeds, parse_weights
from varpo.experiments.pareto import dominates, hypervolume, non_dominated, pareto_front
from varpo.experiments.report import write_report
from varpo.experiments.results import MetricKeys, Run, Sweep, load_sweep
from varpo.experiments.summary import MeanCI, mean_ci, monotonicity, moving_average, pearson, t_quantile
from varpo.experiments.sweep import RunOutcome, run_sweep

__all__ = [
    "GridPoint",
    "MeanCI",
    "MetricKeys",
    "Run",
    "RunOutcome",
    "Sweep",
    "dominates",
    "expand_grid",
    "hypervolume",
    "load_sweep",
    "mean_ci",
    "monotonicity",
    "moving_average",
    "non_dominated",
    "pareto_front",
    "parse_seeds",
    "parse_weights",
    "pearson",
    "run_sweep",
    "t_quantile",
    "write_report",
]
