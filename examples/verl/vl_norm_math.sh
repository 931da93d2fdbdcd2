#!/usr/bin/env bash
# VL Norm (ΔL Normalization, α = 0.75) with GRPO advantages on math, on stock verl 0.9.1 with the varpo plug-in.
#
# Source: He et al., "ΔL Normalization: Rethink Loss Aggregation in RLVR" (arXiv 2509.07558), official code
# zerolllin/Delta-L-Normalization: GRPO advantages scaled by L_i^-α / mean_j L_j^-α over the whole rollout batch,
# then a sum over tokens divided by batch size x maximum length; α = 0.75 for math (1.0 for CountDown).
# verl has no aggregation registry, so this is exactly that recipe: +algorithm.varpo.vl_norm_alpha scales the
# advantages, loss_agg_mode=seq-mean-token-sum-norm with loss_scale_factor = the maximum response length M.
# Our choices (not from the source): model, data, batch sizes, 8 GPUs. For CountDown use
# reward_kwargs.task=countdown, vl_norm_alpha=1.0.
#
# Data: a math set in verl parquet layout (e.g. verl's examples/data_preprocess/math_dataset.py).
# Check the configuration anywhere: bash examples/verl/vl_norm_math.sh --dry-run
set -euo pipefail

DATA_DIR=${DATA_DIR:-$HOME/data/math}
MODEL=${MODEL:-Qwen/Qwen2.5-Math-7B}
MAX_RESPONSE=${MAX_RESPONSE:-3072}

${PYTHON:-python3} -m varpo.verl.train \
    algorithm.adv_estimator=varpo_grpo \
    +algorithm.varpo.vl_norm_alpha=0.75 \
    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm \
    actor_rollout_ref.actor.loss_scale_factor="$MAX_RESPONSE" \
    reward.custom_reward_function.path=pkg://varpo.verl.rewards \
    reward.custom_reward_function.name=compute_score \
    +reward.custom_reward_function.reward_kwargs.task=math \
    '+reward.custom_reward_function.reward_kwargs.weights={accuracy:1.0}' \
    data.train_files="$DATA_DIR/train.parquet" \
    data.val_files="$DATA_DIR/test.parquet" \
    data.train_batch_size=128 \
    data.max_prompt_length=1024 \
    data.max_response_length="$MAX_RESPONSE" \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=64 \
    actor_rollout_ref.actor.use_dynamic_bsz=true \
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384 \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=8 \
    trainer.n_gpus_per_node=8 \
    trainer.nnodes=1 \
    trainer.project_name=varpo \
    trainer.experiment_name=vl-norm-math \
    "$@"
