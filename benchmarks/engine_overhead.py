"""Overhead of VarpoGRPOTrainer(advantage_method="grpo") over TRL's own GRPOTrainer on the same tiny config.

Both trainers start from the same builtin:tiny weights, data, seed and batch layout (TRL: loss_type="dapo" = token
mean, group-z-scored reward sum; varpo: grpo + token_mean, i.e. the same objective). Runs are interleaved
(plain, varpo, varpo, plain, ...) so drift in machine load hits both alike; the wall time of every optimizer step
(generation + loss + backward + optimizer + logging, from ``on_step_begin`` to ``on_step_end``) is recorded, the
first steps of each run are dropped as warm-up, and the ratio of medians is reported.

    HF_HUB_OFFLINE=1 python benchmarks/engine_overhead.py [--repeats 6] [--steps 12]      # runs/bench/engine_overhead/
    HF_HUB_OFFLINE=1 python benchmarks/engine_overhead.py --out benchmarks/results/engine_overhead.json  # publish

Writes ``runs/bench/engine_overhead/engine_overhead.json`` unless ``--out`` names another file (the committed result
is ``benchmarks/results/engine_overhead.json``).

``--features`` instead measures one row per varpo feature (:data:`FEATURES`: every feature off, then each one on
alone), each as a ratio to plain TRL measured in the same process, rows interleaved in a rotating order per repeat
(committed: ``benchmarks/results/engine_overhead_features.json``)::

    HF_HUB_OFFLINE=1 python benchmarks/engine_overhead.py --features --repeats 3 --steps 10 \
        --out benchmarks/results/engine_overhead_features.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from varpo.experiments.outdir import add_out_option, out_path, write_result

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

WARMUP = 2
#: varpo with every optional feature off (the collapse alarm is on by default).
OFF = dict(advantage_method="grpo", loss_aggregation="token_mean", collapse_window=None)
#: row -> VarpoGRPOConfig overrides on top of :data:`OFF` (None: TRL's own GRPOTrainer). dvao rows: sigma_ema is a
#: dvao option, so "dvao" is its baseline.
FEATURES: dict[str, dict | None] = {
    "trl": None,
    "all features off": {},
    "reward_weight_schedule": dict(reward_weight_schedule={"type": "linear", "points": [[0, [1, 1]], [8, [2, 1]]]}),
    "dvao": dict(advantage_method="dvao"),
    "dvao + sigma_ema": dict(advantage_method="dvao", sigma_ema=0.9),
    "collapse alarm (default window)": dict(collapse_window=20),
    "dynamic_sampling (max 1 extra round)": dict(dynamic_sampling=True, dynamic_sampling_max_rounds=1),
    "log_reward_matrix": dict(log_reward_matrix=True),
}


#: the clock of each step: wall time (default), or this process's CPU time (``--clock cpu``: with one torch thread it
#: is the step's own work, far less sensitive than wall time to other processes on a shared machine).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def step_timer():
    """A TrainerCallback recording each optimizer step's time on the selected clock (torch/transformers/trl are
    imported only when the benchmark runs, so ``--help`` and argument parsing stay instant)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = _clock()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(_clock() - self._start)

    return StepTimer()


def common_args(out: str, steps: int) -> dict:
    return dict(
        output_dir=out,
        use_cpu=True,
        bf16=False,
        max_steps=steps,
        per_device_train_batch_size=32,
        num_generations=8,
        max_completion_length=48,
        learning_rate=1e-4,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        gradient_checkpointing=False,
        disable_tqdm=True,
        seed=0,
    )


def run_once(kind: str, model_dir: Path, dataset, rewards, steps: int, overrides: dict | None = None) -> list[float]:
    import trl

    from varpo import models
    from varpo.trl import VarpoGRPOConfig, VarpoGRPOTrainer

    model, tokenizer = models.load(str(model_dir))
    timer = step_timer()
    with tempfile.TemporaryDirectory() as out:
        if kind == "trl":
            cls, args = (
                trl.GRPOTrainer,
                trl.GRPOConfig(**common_args(out, steps), loss_type="dapo", scale_rewards="group"),
            )
        elif overrides is not None:
            cls = VarpoGRPOTrainer
            args = VarpoGRPOConfig(**common_args(out, steps), **{**OFF, **overrides})
        else:
            cls = VarpoGRPOTrainer
            args = VarpoGRPOConfig(**common_args(out, steps), advantage_method="grpo", loss_aggregation="token_mean")
        trainer = cls(
            model=model,
            reward_funcs=rewards,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[timer],
        )
        trainer.train()
    return timer.times[WARMUP:]


NAME, FILENAME = "engine_overhead", "engine_overhead.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--features", action="store_true", help="one row per varpo feature (ratio to plain TRL)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall", help="step clock: wall or process CPU time")
    add_out_option(parser, NAME, FILENAME, publish="benchmarks/results/engine_overhead.json")
    args = parser.parse_args(argv)
    args.out = out_path(args.out, NAME, FILENAME)
    return args


def main(argv: list[str] | None = None) -> None:
    global _clock
    args = parse_args(argv)
    _clock = CLOCKS[args.clock]
    import torch
    import trl

    import varpo.tasks
    from varpo import models

    torch.set_num_threads(1)

    task = varpo.tasks.get_task("toolcall")
    demos = task.generate(256, seed=0)
    model_dir = models.build_tiny([p + c for p, c in zip(demos["prompt"], demos["completion"], strict=True)])
    dataset = task.generate(512, seed=1).remove_columns(["completion"])
    rewards = task.reward_funcs
    if args.features:
        return features(args, model_dir, dataset, rewards)

    times: dict[str, list[float]] = {"trl": [], "varpo": []}
    medians: dict[str, list[float]] = {"trl": [], "varpo": []}
    for repeat in range(args.repeats):
        order = ("trl", "varpo") if repeat % 2 == 0 else ("varpo", "trl")
        for kind in order:
            step_times = run_once(kind, model_dir, dataset, rewards, args.steps)
            times[kind] += step_times
            medians[kind].append(statistics.median(step_times))
            print(f"repeat {repeat} {kind:5s}: median step {medians[kind][-1] * 1000:.1f} ms", flush=True)

    ratio = statistics.median(times["varpo"]) / statistics.median(times["trl"])
    paired = [v / t for v, t in zip(medians["varpo"], medians["trl"], strict=True)]
    result = {
        "median_step_s": {k: statistics.median(v) for k, v in times.items()},
        "ratio_of_medians": ratio,
        "paired_ratios": paired,
        "median_paired_ratio": statistics.median(paired),
        "target": 1.05,
        "config": {**common_args("-", args.steps), "repeats": args.repeats, "warmup_steps_dropped": WARMUP},
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    write_result(args.out, json.dumps(result, indent=2) + "\n")
    print(
        f"median step time: trl {result['median_step_s']['trl'] * 1000:.1f} ms, "
        f"varpo {result['median_step_s']['varpo'] * 1000:.1f} ms -> ratio {ratio:.3f} "
        f"(median of paired ratios {result['median_paired_ratio']:.3f}; target <= 1.05)"
    )


def features(args: argparse.Namespace, model_dir: Path, dataset, rewards) -> None:
    """One row per :data:`FEATURES` entry: median step time and its ratio to plain TRL (ratio of medians over all
    kept steps, and the median of the per-repeat paired ratios). The machine may be shared: medians, interleaving."""
    import torch
    import trl

    rows = list(FEATURES)
    times: dict[str, list[float]] = {r: [] for r in rows}
    medians: dict[str, list[float]] = {r: [] for r in rows}
    for repeat in range(args.repeats):
        shift = repeat % len(rows)
        for row in rows[shift:] + rows[:shift]:  # rotating order: machine drift hits every row alike
            overrides = FEATURES[row]
            kind = "trl" if overrides is None else "varpo"
            step_times = run_once(kind, model_dir, dataset, rewards, args.steps, overrides)
            times[row] += step_times
            medians[row].append(statistics.median(step_times))
            print(f"repeat {repeat} {row}: median step {medians[row][-1] * 1000:.1f} ms", flush=True)
    base = statistics.median(times["trl"])
    table = {
        row: {
            "median_step_s": statistics.median(times[row]),
            "ratio_of_medians": statistics.median(times[row]) / base,
            "median_paired_ratio": statistics.median(v / t for v, t in zip(medians[row], medians["trl"], strict=True)),
            "overrides": FEATURES[row],
        }
        for row in rows
    }
    result = {
        "rows": table,
        "target_all_off": 1.02,
        "clock": args.clock,
        "config": {**common_args("-", args.steps), "repeats": args.repeats, "warmup_steps_dropped": WARMUP},
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "shared": True},
    }
    write_result(args.out, json.dumps(result, indent=2) + "\n")
    for row, r in table.items():
        print(
            f"{row:40s} {r['median_step_s'] * 1000:8.1f} ms  x{r['ratio_of_medians']:.3f}  paired {r['median_paired_ratio']:.3f}"
        )


if __name__ == "__main__":
    main()
