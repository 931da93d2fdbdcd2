"""Stand-in for ``python -m varpo.experiments.runner``: obeys the runner contract without training.

``fake_runner.py CONFIG --run-dir DIR key=value…`` writes a deterministic ``metrics.jsonl`` and, last and atomically,
``eval.json`` whose scores depend on method, weights and seed. It appends the run name to ``<sweep>/launches.log`` so
tests can count launches. ``FAKE_FAIL=<method>`` makes that method's runs exit 3 without an eval file;
``FAKE_CONSTANT=<objective>`` makes that reward constant in every group (within-group std 0, as a reward that is always
0 or always full marks). Imports only
the standard library, so a launch costs a bare interpreter start.
"""

import json
import math
import os
import sys
from pathlib import Path

args = sys.argv[1:]
if "--prepare" in args:  # nothing shared to build; the sweep logs this call under prepare/
    print("prepared", " ".join(args[2:]))
    sys.exit(0)
at = args.index("--run-dir")
run_dir = Path(args[at + 1])
overrides = dict(item.split("=", 1) for item in args[at + 2 :])
method = overrides["advantage_method"]
weights = [float(w) for w in overrides["reward_weights"].strip("[]").split(",")]
seed = int(overrides["seed"])
steps = int(overrides.get("max_steps", 30))
names = (
    ["correctness", "format", "length"][: len(weights)]
    if len(weights) <= 3
    else [f"obj{i:02d}" for i in range(len(weights))]
)

with open(run_dir.parent.parent / "launches.log", "a") as f:
    f.write(run_dir.name + "\n")
if os.environ.get("FAKE_FAIL") == method:
    print("simulated crash", file=sys.stderr)
    sys.exit(3)

bonus = {"dvao": 0.08, "gdpo": -0.05}.get(method, 0.0)
final = {n: min(1.0, 0.25 + 0.5 * w + bonus + 0.02 * seed) for n, w in zip(names, weights)}
with open(run_dir / "metrics.jsonl", "w") as f:
    for step in range(1, steps + 1):
        frac = step / steps
        rec = {
            "step": step,
            "completions/mean_length": 40 + 10 * math.sin(step + seed),
            "adv/adv_abs_mean": 0.8 - 0.3 * frac,
        }
        for n, w in zip(names, weights):
            rec[f"reward/{n}/mean"] = final[n] * frac + 0.05 * math.sin(3 * step + seed)
            rec[f"reward/{n}/std"] = 0.5 * (1 - frac) + 0.05
            rec[f"adv/group_std_mean/{n}"] = 0.4 * (1 - frac) + 0.02
            if os.environ.get("FAKE_CONSTANT") == n:
                rec[f"reward/{n}/mean"], rec[f"reward/{n}/std"], rec[f"adv/group_std_mean/{n}"] = 0.0, 0.0, 0.0
            rec[f"adv/weight/{n}"] = w / sum(weights)
            if len(names) > 3 and method != "grpo":  # many objectives: adaptive methods move their weights
                rec[f"adv/weight/{n}"] *= 1 + 0.6 * math.sin(step / 6 + names.index(n) / 3)
        f.write(json.dumps(rec) + "\n")
    f.write('{"step": 99, "torn')  # a torn last line (killed writer) must be ignored
curve = []
for step in range(0, steps + 1, max(1, steps // 3)):
    frac = step / steps
    scores = {n: 0.1 + (v - 0.1) * frac for n, v in final.items()}
    curve.append(
        {
            "step": step,
            "objectives": scores,
            "mean_reward": {n: v / 2 for n, v in scores.items()},
            "all": math.prod(scores.values()),
        }
    )
# mean_reward = half the avg@k score (partial credit, a distinct block the report can be pointed at with --score)
result = {
    "objectives": final,
    "mean_reward": {n: v / 2 for n, v in final.items()},
    "all": math.prod(final.values()),
    "curve": curve,
    "k": 4,
    "prompts": 16,
}
tmp = run_dir / "eval.json.tmp"
tmp.write_text(json.dumps(result))
os.replace(tmp, run_dir / "eval.json")
