#!/usr/bin/env bash
# The learning benchmark of issue 6: the exact sweeps behind docs/results/learning-*/.
#
#   bash benchmarks/learning/run.sh toolcall   # 6 methods x 5 weights x 3 seeds = 90 runs  (~1.5 h on 2 cores)
#   bash benchmarks/learning/run.sh math       # 6 methods x 3 weights x 3 seeds = 54 runs  (~0.5 h on 2 cores)
#
# Resumable: re-running the same command skips finished runs. When the sweep is complete, the report, its figures,
# the config and the manifest are copied to docs/results/learning-<task>/ (commit them with the command below).
# `python -m varpo.experiments sweep` is the same command as `varpo sweep`.
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

task=${1:?usage: run.sh toolcall|math}
case "$task" in
  toolcall) weights=0.1,0.3,0.5,0.7,0.9; eval_every=10 ;;
  math) weights=0.1,0.5,0.9; eval_every=10 ;;
  *) echo "unknown task $task (toolcall|math)" >&2; exit 2 ;;
esac
out=runs/learning/$task

status=0
python -m varpo.experiments sweep "benchmarks/learning/$task.yaml" "eval_every=$eval_every" \
  --methods grpo,ac,gdpo,dvao,saw,rvpo --weights "$weights" --seeds 3 \
  --jobs 2 --threads-per-run 1 --out "$out" || status=$?
if [ "$status" -ne 0 ]; then
  echo "some runs failed (listed in the report); re-run this command to retry them" >&2
fi

python -m varpo.experiments report "$out"
dest=docs/results/learning-$task
mkdir -p "$dest"
cp "$out"/report.md "$out"/*.png "$out"/config.yaml "$out"/sweep.json "$dest"/
echo "published to $dest (commit with: git add $dest && git commit -m 'learning benchmark: $task' -- $dest)"
