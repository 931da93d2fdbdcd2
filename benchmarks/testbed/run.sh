#!/usr/bin/env bash
# The testbed sweeps behind docs/claims.md (issue 10): the `constraints` task, real RL of builtin:tiny on 2 CPU cores.
#
#   bash benchmarks/testbed/run.sh easy_hard     # setting A: 6 methods x 6 seeds, 80 steps     (~30 min on 2 cores)
#   bash benchmarks/testbed/run.sh bottleneck    # setting B: K = 8, one rare rule: 3 methods x 5 seeds, 40 steps
#   bash benchmarks/testbed/run.sh hard_length   # setting C: hard rule + length budget: 4 methods x 3 w1 x 3 seeds
#   bash benchmarks/testbed/run.sh easy_hard --out docs/results/testbed-easy_hard   # ... and publish
#
# Resumable: re-running the same command skips finished runs. The sweep and its report stay in
# runs/testbed/<setting>/. Only with `--out DEST` are the report, its figures, the config, the manifest and every
# run's eval.json/run.json and compact per-step metrics (benchmarks/testbed/compact_metrics.py) copied to DEST
# (replacing it; the committed results are docs/results/testbed-<setting>).
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

usage="usage: run.sh easy_hard|bottleneck|hard_length [--out DEST]"
setting=${1:?$usage}
dest=
if [ $# -ge 2 ]; then
  if [ "$2" != --out ] || [ $# -ne 3 ] || [ -z "$3" ]; then echo "$usage" >&2; exit 2; fi
  dest=$3
fi
config=benchmarks/testbed/$setting.yaml
case "$setting" in
  easy_hard) methods=grpo,ac,gdpo,dvao,saw,rvpo; weights=0.25:0.25:0.25:0.25; seeds=6 ;;
  bottleneck) methods=grpo,gdpo,rvpo; weights=0.125:0.125:0.125:0.125:0.125:0.125:0.125:0.125; seeds=5 ;;
  hard_length) methods=grpo,ac,gdpo,dvao; weights=0.1,0.5,0.9; seeds=3 ;;
  *) echo "unknown setting $setting" >&2; exit 2 ;;
esac
out=runs/testbed/$setting

status=0
python -m varpo.experiments sweep "$config" eval_every=10 --methods "$methods" --weights "$weights" --seeds "$seeds" \
  --jobs 2 --threads-per-run 1 --out "$out" || status=$?
if [ "$status" -ne 0 ]; then
  echo "some runs failed (listed in the report); re-run this command to retry them" >&2
fi
python -m varpo.experiments report "$out"
if [ -z "$dest" ]; then
  echo "report in $out (not published; to publish: bash $0 $setting --out docs/results/testbed-$setting)"
  exit "$status"
fi
bash benchmarks/testbed/publish.sh "$out" "$dest"
