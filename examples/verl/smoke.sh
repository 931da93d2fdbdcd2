#!/usr/bin/env bash
# GPU smoke run of the varpo plug-in in verl's own V1 training loop: 5 steps of a locally built model per varpo
# estimator (and the varpo_gvpo loss) on one GPU with vLLM, printing per-step loss, advantage and weight metrics.
#
# Source: not a paper set-up; it checks that every estimator runs end to end on a real GPU stack (verl 0.9.1,
# vLLM, FSDP2) with no hub download: the model (2-layer Qwen2) and the Countdown data are built locally.
# Needs one GPU and `pip install "varpo[verl]" vllm`. Check every configuration anywhere (CPU, no Ray):
#   bash examples/verl/smoke.sh --dry-run
# Options: --out DIR (default runs/verl-smoke), --steps N (default 5), --only varpo_dvao,varpo_gvpo
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/smoke.py" "$@"
