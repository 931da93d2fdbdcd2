#!/usr/bin/env bash
# Publish a finished sweep folder for the repository: its report, figures, config and manifest, and every run's
# eval.json/run.json and compact per-step metrics (benchmarks/testbed/compact_metrics.py) — no checkpoints, no model
# files, a few kB per run.
#
#   bash benchmarks/testbed/publish.sh runs/testbed/tuned_static docs/results/testbed-tuned_static
#
# DEST is replaced. Files the sweep did not write (e.g. no report.md for a sweep run with --no-report) are skipped.
set -euo pipefail
src=${1:?usage: publish.sh SWEEP DEST}
dest=${2:?usage: publish.sh SWEEP DEST}
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$src/runs" ] || { echo "$src: no runs/ folder (not a sweep)" >&2; exit 2; }
rm -rf "$dest" && mkdir -p "$dest"
for f in report.md report.json config.yaml sweep.json "$src"/*.png; do
  f=$(basename "$f")
  if [ -f "$src/$f" ]; then cp "$src/$f" "$dest/"; fi
done
n=0
for run in "$src"/runs/*/; do
  name=$(basename "$run")
  if [ -f "$run/eval.json" ]; then
    mkdir -p "$dest/runs/$name" && cp "$run"/eval.json "$dest/runs/$name/"
    if [ -f "$run/run.json" ]; then cp "$run"/run.json "$dest/runs/$name/"; fi
    # the per-step signal the collapse alarm and the claims' dynamics read, a few kB per run
    if [ -f "$run/metrics.jsonl" ]; then
      python "$here/compact_metrics.py" "$run/metrics.jsonl" "$dest/runs/$name/metrics.jsonl"
    fi
    n=$((n + 1))
  fi
done
echo "published $n runs of $src to $dest"
