#!/usr/bin/env bash
# The learning benchmark of issue 6: the exact sweeps behind docs/results/learning-*/.
#
#   bash benchmarks/learning/run.sh toolcall   # 6 methods x 5 weights x 3 seeds = 90 runs  (~1.5 h on 2 cores)
#   bash benchmarks/learning/run.sh math       # 6 methods x 3 weights x 3 seeds = 54 runs  (~0.5 h on 2 cores)
#   bash benchmarks/learning/run.sh aggregation  # grpo x 3 loss aggregations x 3 seeds = 9 runs (~10 min)
#   bash benchmarks/learning/run.sh toolcall --out docs/results/learning-toolcall   # ... and publish
#
# Resumable: re-running the same command skips finished runs. The sweep and its reports (avg@k and mean reward)
# stay in runs/learning/<task>/. Only with `--out DEST` are the reports, their figures, the config, the manifest and
# every run's eval.json/run.json copied to DEST (replacing it; the committed results are docs/results/learning-<task>).
# `python -m varpo.experiments sweep` is the same command as `varpo sweep`.
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

usage="usage: run.sh toolcall|math|aggregation [--out DEST]"
task=${1:?$usage}
dest=
if [ $# -ge 2 ]; then
  if [ "$2" != --out ] || [ $# -ne 3 ] || [ -z "$3" ]; then echo "$usage" >&2; exit 2; fi
  dest=$3
fi
config=benchmarks/learning/$task.yaml
methods=grpo,ac,gdpo,dvao,saw,rvpo
extra=()
case "$task" in
  toolcall) weights=0.1,0.3,0.5,0.7,0.9 ;;
  math) weights=0.1,0.5,0.9 ;;
  # VL Norm Table 5's question (does the loss aggregation change how monotonically training improves?) on the
  # toolcall setting: grpo at equal weights, three aggregations
  aggregation) config=benchmarks/learning/toolcall.yaml; methods=grpo; weights=0.5
    extra=(--aggregations token_mean,seq_mean_token_mean,vl_norm) ;;
  *) echo "unknown task $task (toolcall|math|aggregation)" >&2; exit 2 ;;
esac
out=runs/learning/$task

status=0
python -m varpo.experiments sweep "$config" eval_every=10 \
  --methods "$methods" --weights "$weights" --seeds 3 "${extra[@]}" \
  --jobs 2 --threads-per-run 1 --out "$out" || status=$?
if [ "$status" -ne 0 ]; then
  echo "some runs failed (listed in the report); re-run this command to retry them" >&2
fi

# two reports: full-marks rates (avg@k, the default) and mean rewards (partial credit), see docs/experiments.md
python -m varpo.experiments report "$out"
python -m varpo.experiments report "$out" --score mean_reward --out "$out/mean_reward"
if [ -z "$dest" ]; then
  echo "reports in $out (not published; to publish: bash $0 $task --out docs/results/learning-$task)"
  exit "$status"
fi
rm -rf "$dest" && mkdir -p "$dest/mean_reward"
cp "$out"/report.md "$out"/report.json "$out"/*.png "$out"/config.yaml "$out"/sweep.json "$dest"/
cp "$out"/mean_reward/report.md "$out"/mean_reward/report.json "$out"/mean_reward/*.png "$dest"/mean_reward/
# every run's held-out results (eval.json: final + curve; run.json: command, commit, wall time): enough to recompute
# the frontiers, hypervolumes and tables with `varpo report $dest` (training curves stay in runs/, 76 KB a run)
for run in "$out"/runs/*/; do
  name=$(basename "$run")
  if [ -f "$run/eval.json" ]; then mkdir -p "$dest/runs/$name" && cp "$run"/eval.json "$run"/run.json "$dest/runs/$name/"; fi
done
echo "published to $dest (commit with: git add $dest && git commit -m 'learning benchmark: $task' -- $dest)"
