#!/usr/bin/env bash
# GVPO (β = 0.1) on math, on stock verl 0.9.1 with the varpo plug-in.
#
# Source: GVPO (Zhang et al., NeurIPS 2025, arXiv 2504.19599), official script jszkc/GVPO
# GVPO/run_qwen2-7b_math_gvpo.sh: Qwen2.5-Math-7B, GSM8K + MATH, centered rewards (GRPO advantage without std),
# gvpo_beta 0.1, rollout.n = 4, batch 1024 prompts, mini-batch 256, micro-batch 16 sequences per GPU, lr 1e-6,
# entropy coefficient 0, no KL loss. Our choices: 8 GPUs, max response 1024, accuracy-only reward.
#
# Whole groups per micro-batch, the stock-config way: trainer.v1.trainer_mode=varpo balances whole uid groups over DP
# ranks and sets verl's force_group_size = rollout.n, so ppo_micro_batch_size_per_gpu counts GROUPS (4 groups x 4 =
# the official 16 sequences). Requirements checked at launch: actor.shuffle=false, ppo_mini_batch_size divisible by
# the DP size, no KL loss, no rollout correction.
#
# Data: GSM8K + MATH in verl parquet layout (verl's examples/data_preprocess gsm8k.py / math_dataset.py).
# Check the configuration anywhere: bash examples/verl/gvpo_math.sh --dry-run
set -euo pipefail

DATA_DIR=${DATA_DIR:-$HOME/data}
MODEL=${MODEL:-Qwen/Qwen2.5-Math-7B}

${PYTHON:-python3} -m varpo.verl.train \
    algorithm.adv_estimator=varpo_dr_grpo \
    actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo \
    +algorithm.varpo.gvpo_beta=0.1 \
    trainer.v1.trainer_mode=varpo \
    reward.custom_reward_function.path=pkg://varpo.verl.rewards \
    reward.custom_reward_function.name=compute_score \
    +reward.custom_reward_function.reward_kwargs.task=math \
    '+reward.custom_reward_function.reward_kwargs.weights={accuracy:1.0}' \
    data.train_files="[$DATA_DIR/gsm8k/train.parquet,$DATA_DIR/math/train.parquet]" \
    data.val_files="[$DATA_DIR/gsm8k/test.parquet,$DATA_DIR/math/test.parquet]" \
    data.train_batch_size=1024 \
    data.max_prompt_length=1024 \
    data.max_response_length=1024 \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=256 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4 \
    actor_rollout_ref.actor.shuffle=false \
    actor_rollout_ref.actor.entropy_coeff=0 \
    actor_rollout_ref.actor.use_kl_loss=false \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16 \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=4 \
    trainer.n_gpus_per_node=8 \
    trainer.nnodes=1 \
    trainer.project_name=varpo \
    trainer.experiment_name=gvpo-math-qwen2.5-math-7b \
    "$@"
