"""Validate the objective-collapse alarm (varpo.collapse) on a sweep's per-step metrics.

    python benchmarks/testbed/collapse_alarm.py runs/testbed/easy_hard
    python benchmarks/testbed/collapse_alarm.py runs/testbed/easy_hard --window 10 --out docs/results/x.json

Reads every ``<sweep>/runs/*/metrics.jsonl`` (the trainer's per-step log) with its ``eval.json`` (held-out rates,
curve), replays the alarm the trainer would have run — the same :class:`varpo.collapse.CollapseAlarm` — and asks
two questions per (run, objective):

* an objective the run **ends with lost** (final held-out rate <= ``--lost-below``): did the alarm flag it, and how
  many steps before the final evaluation (``lead``)? Also how many steps before the periodic evaluation curve first
  showed the loss for good (``lead_vs_curve``; positive = the alarm was earlier);
* an objective the run **keeps**: did the alarm fire anyway (a false alarm; those on saturated objectives, final
  rate >= ``--saturated-above``, are counted apart: constant because always met, not lost).

Signal per step: ``adv/frac_signal/<name>`` when logged; older runs (before the metric existed) fall back to
``adv/group_std_mean/<name>``, which is 0 exactly when the objective varies in no group — the same "no signal"
condition. Exits 2 when the folder has no run with both files (nothing validated is not a result).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from varpo import significance
from varpo.collapse import DEFAULT_WINDOW, CollapseAlarm

SIGNAL_KEYS = ("adv/frac_signal/", "adv/group_std_mean/")


def signal_series(metrics_path: Path) -> tuple[list[int], dict[str, list[float | None]]]:
    """Steps and, per objective, the signal at each step (None: not logged that step)."""
    steps: list[int] = []
    rows: list[dict] = []
    for line in metrics_path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "step" not in record or not any(k.startswith(SIGNAL_KEYS) for k in record):
            continue  # eval / summary records
        steps.append(int(record["step"]))
        rows.append(record)
    names = sorted({k.split("/", 2)[2] for r in rows for k in r if k.startswith(SIGNAL_KEYS)})
    series: dict[str, list[float | None]] = {}
    for name in names:
        values = []
        for r in rows:
            v = r.get(f"adv/frac_signal/{name}", r.get(f"adv/group_std_mean/{name}"))
            values.append(None if v is None else float(v))
        series[name] = values
    return steps, series


def alarm_steps(steps: list[int], values: list[float | None], window: int) -> list[int]:
    """Steps at which the trainer's alarm would have warned for this objective."""
    alarm = CollapseAlarm(window)
    fired = []
    for step, v in zip(steps, values, strict=True):
        if alarm.update({} if v is None else {"frac_signal/x": v}, step=step):
            fired.append(step)
    return fired


def reward_series(metrics_path: Path, name: str, steps: list[int]) -> list[float | None]:
    """``reward/<name>/mean`` at each of ``steps`` (None where not logged)."""
    by_step = {}
    for line in metrics_path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if "step" in record and f"reward/{name}/mean" in record:
                by_step[int(record["step"])] = float(record[f"reward/{name}/mean"])
    return [by_step.get(step) for step in steps]


def rolling_alarm_steps(
    steps: list[int],
    signal: list[float | None],
    reward: list[float | None],
    window: int,
    signal_below: float,
    reward_below: float,
) -> list[int]:
    """The candidate rule (not the shipped alarm): the first step at which the ``window``-step rolling means of the
    signal and of the objective's mean reward are both at or below their thresholds (low signal *and* a low
    reward: a collapse, not saturation)."""

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return sum(present) / len(present) if present else None

    for i in range(window - 1, len(steps)):
        sig, rew = mean(signal[i - window + 1 : i + 1]), mean(reward[i - window + 1 : i + 1])
        if sig is not None and rew is not None and sig <= signal_below and rew <= reward_below:
            return [steps[i]]
    return []


def curve_lost_step(curve: list[dict], name: str, lost_below: float) -> int | None:
    """First evaluation step from which the objective's rate stays <= lost_below to the end."""
    first = None
    for point in curve:
        rate = point.get("objectives", {}).get(name)
        if rate is None:
            continue
        if rate <= lost_below:
            first = point["step"] if first is None else first
        else:
            first = None
    return first


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float] | None:
    """Exact two-sided (1 - alpha) interval for a binomial proportion k/n (`varpo.significance.clopper_pearson`);
    None when there is nothing to count (n = 0)."""
    return None if n == 0 else significance.clopper_pearson(k, n, level=1 - alpha)


def analyse(
    sweep: Path, window: int, lost_below: float, saturated_above: float, rule: tuple[float, float] | None = None
) -> dict:
    """``rule=None``: the shipped alarm (``CollapseAlarm``); ``rule=(signal_below, reward_below)``: the rolling-mean
    candidate rule (:func:`rolling_alarm_steps`)."""
    rows = []
    for metrics_path in sorted(sweep.glob("runs/*/metrics.jsonl")):
        eval_path = metrics_path.with_name("eval.json")
        if not eval_path.exists():
            continue
        ev = json.loads(eval_path.read_text())
        final = ev["objectives"]
        final_step = int(ev.get("steps") or ev["curve"][-1]["step"])
        steps, series = signal_series(metrics_path)
        for name, values in series.items():
            if name not in final:
                continue
            if rule is None:
                fired = alarm_steps(steps, values, window)
            else:
                rewards = reward_series(metrics_path, name, steps)
                fired = rolling_alarm_steps(steps, values, rewards, window, *rule)
            rate = float(final[name])
            lost = rate <= lost_below
            row = {
                "run": metrics_path.parent.name,
                "objective": name,
                "final_rate": rate,
                "lost": lost,
                "saturated": rate >= saturated_above,
                "alarm_steps": fired,
                "first_alarm": fired[0] if fired else None,
                "final_step": final_step,
            }
            if lost:
                row["lead"] = final_step - fired[0] if fired else None
                seen = curve_lost_step(ev.get("curve", []), name, lost_below)
                row["curve_lost_step"] = seen
                row["lead_vs_curve"] = seen - fired[0] if fired and seen is not None else None
            rows.append(row)
    lost = [r for r in rows if r["lost"]]
    kept = [r for r in rows if not r["lost"]]
    leads = [r["lead"] for r in lost if r["lead"] is not None]
    vs_curve = [r["lead_vs_curve"] for r in lost if r.get("lead_vs_curve") is not None]

    def rate(k: int, n: int) -> float | None:
        return None if n == 0 else k / n

    flagged = sum(r["first_alarm"] is not None for r in lost)
    false_alarms = sum(r["first_alarm"] is not None for r in kept)
    return {
        "sweep": str(sweep),
        "window": window,
        "rule": "shipped" if rule is None else {"signal_below": rule[0], "reward_below": rule[1]},
        "lost_below": lost_below,
        "saturated_above": saturated_above,
        "runs": len({r["run"] for r in rows}),
        "lost": {
            "n": len(lost),
            "flagged": flagged,
            "detection_rate": rate(flagged, len(lost)),
            "detection_ci95": clopper_pearson(flagged, len(lost)),
            "lead_steps_median": statistics.median(leads) if leads else None,
            "lead_steps_min": min(leads) if leads else None,
            "lead_steps_max": max(leads) if leads else None,
            "lead_vs_curve_median": statistics.median(vs_curve) if vs_curve else None,
        },
        "kept": {
            "n": len(kept),
            "fired": false_alarms,
            "false_alarm_rate": rate(false_alarms, len(kept)),
            "false_alarm_ci95": clopper_pearson(false_alarms, len(kept)),
            "fired_on_saturated": sum(r["first_alarm"] is not None and r["saturated"] for r in kept),
        },
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="sweep folder with runs/*/metrics.jsonl and runs/*/eval.json")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="alarm window (default: the trainers')")
    parser.add_argument("--lost-below", type=float, default=0.05, help="final rate <= this: objective lost")
    parser.add_argument("--saturated-above", type=float, default=0.95, help="final rate >= this: saturated")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument(
        "--rolling",
        nargs=2,
        type=float,
        metavar=("SIGNAL_BELOW", "REWARD_BELOW"),
        help="evaluate the rolling-mean candidate rule instead of the shipped alarm (e.g. 0.15 0.5)",
    )
    args = parser.parse_args(argv)
    rule = tuple(args.rolling) if args.rolling else None
    result = analyse(args.sweep, args.window, args.lost_below, args.saturated_above, rule)
    if result["runs"] == 0:
        print(
            f"{args.sweep}: no runs/*/metrics.jsonl with an eval.json beside it: nothing to validate", file=sys.stderr
        )
        return 2
    lost, kept = result["lost"], result["kept"]
    print(f"{args.sweep}: {result['runs']} runs, window {args.window}")
    print(
        f"  lost objectives: {lost['flagged']}/{lost['n']} flagged; steps before the final evaluation: median "
        f"{lost['lead_steps_median']} (min {lost['lead_steps_min']}, max {lost['lead_steps_max']}); vs the eval "
        f"curve: median {lost['lead_vs_curve_median']}"
    )
    print(
        f"  kept objectives: alarm fired on {kept['fired']}/{kept['n']} ({kept['fired_on_saturated']} of them "
        f"saturated, final rate >= {args.saturated_above})"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
