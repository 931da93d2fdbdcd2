#!/usr/bin/env bash
# GVPO Fig. 4 on the testbed (issue 13): groups of G = 8 with h historical responses from the per-prompt buffer,
# h in {0, 2, 4, 6}, 3 seeds, setting A with gvpo (dr_grpo advantages) and 64 training prompts (a prompt recurs
# every 8 steps). One sweep per h (the sweep grid has no h axis); resumable.
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for h in 0 2 4 6; do
  python -m varpo.experiments sweep benchmarks/testbed/easy_hard.yaml eval_every=20 max_steps=60 train_prompts=64 \
    policy_loss=gvpo gvpo_history_per_group=$h --methods dr_grpo --weights 0.25:0.25:0.25:0.25 --seeds 3 \
    --jobs 2 --threads-per-run 1 --no-report --out runs/testbed/gvpo_h$h
done
