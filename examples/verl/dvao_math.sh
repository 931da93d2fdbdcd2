#!/usr/bin/env bash
# DVAO on math, accuracy + length, on stock verl 0.9.1 with the varpo plug-in.
#
# Source: DVAO (Jiang et al., "Dynamic Variance-adaptive Advantage Optimization", arXiv 2605.25604), math setting
# (Table 1): Qwen3-4B-Base, DAPO-Math-17k, G = 16 rollouts per prompt, 128 prompts per step, lr 1e-6, maximum
# response length 8192, length reward r_len = 1 iff the response has at most l = 4000 tokens, 8 GPUs.
# Our choices (not stated in the source we had): one PPO update per step (mini-batch = 128 prompts), no KL term,
# dynamic batch sizes, vLLM rollout, 2048 prompt tokens, 16k tokens per GPU per micro-batch.
#
# Data: DAPO-Math-17k in verl parquet layout (BytedTsinghua-SIA/DAPO-Math-17k; `reward_model.ground_truth` is the
# answer, which varpo's math grader reads as its `answer` column) and a validation parquet (e.g. AIME 2024).
# Needs 8 GPUs and `pip install "varpo[verl]" vllm`. Check the configuration anywhere (no GPU, no Ray):
#   bash examples/verl/dvao_math.sh --dry-run
set -euo pipefail

DATA_DIR=${DATA_DIR:-$HOME/data/dapo-math-17k}
MODEL=${MODEL:-Qwen/Qwen3-4B-Base}

${PYTHON:-python3} -m varpo.verl.train \
    algorithm.adv_estimator=varpo_dvao \
    '+algorithm.varpo.reward_keys=[accuracy,length]' \
    trainer.v1.trainer_mode=varpo \
    reward.custom_reward_function.path=pkg://varpo.verl.rewards \
    reward.custom_reward_function.name=compute_score \
    +reward.custom_reward_function.reward_kwargs.task=math \
    +reward.custom_reward_function.reward_kwargs.task_options.max_tokens=4000 \
    +reward.custom_reward_function.reward_kwargs.tokenizer="$MODEL" \
    data.train_files="$DATA_DIR/train.parquet" \
    data.val_files="${VAL_FILES:-$DATA_DIR/aime-2024.parquet}" \
    data.train_batch_size=128 \
    data.max_prompt_length=2048 \
    data.max_response_length=8192 \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=128 \
    actor_rollout_ref.actor.use_dynamic_bsz=true \
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384 \
    actor_rollout_ref.actor.use_kl_loss=false \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=16 \
    trainer.n_gpus_per_node=8 \
    trainer.nnodes=1 \
    trainer.project_name=varpo \
    trainer.experiment_name=dvao-math-qwen3-4b \
    "$@"
