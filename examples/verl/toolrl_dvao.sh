#!/usr/bin/env bash
# Tool use with ToolRL's correctness + format rewards, DVAO advantages, on stock verl 0.9.1 with the varpo plug-in.
#
# Source: ToolRL (Qian et al. 2025, arXiv 2504.13958, github qiancheng0/ToolRL, GRPO script): rlla_4k data,
# batch 512 prompts, rollout.n = 4, lr 1e-6, max response 1024, KL coefficient 0.001, 15 epochs; model
# Qwen2.5-3B-Instruct (one of ToolRL's models; DVAO arXiv 2605.25604 Table 2 evaluates this tool-use setting).
# Rewards as ToolRL: correctness in [-3, 3], format in {0, 1} (varpo.tasks "toolcall").
# Our choices: ToolRL put the KL penalty into the reward; with reward components the penalty would be dropped
# (components come straight from the grader, as in verl's gdpo), so we use the equivalent-strength KL *loss*.
# Other papers on the same data: GDPO (arXiv 2601.05242) -> algorithm.adv_estimator=varpo_gdpo;
# SAW (arXiv 2606.07705) -> varpo_saw with '+algorithm.varpo.saw_offsets=[3,0]'; RVPO -> varpo_rvpo.
#
# Data: ToolRL's rlla_4k in verl parquet layout (`reward_model.ground_truth` = gold output). Needs GPUs and
# `pip install "varpo[verl]" vllm`. Check the configuration anywhere: bash examples/verl/toolrl_dvao.sh --dry-run
set -euo pipefail

DATA_DIR=${DATA_DIR:-$HOME/data/rlla_4k}
MODEL=${MODEL:-Qwen/Qwen2.5-3B-Instruct}

${PYTHON:-python3} -m varpo.verl.train \
    algorithm.adv_estimator=varpo_dvao \
    '+algorithm.varpo.reward_keys=[correctness,format]' \
    trainer.v1.trainer_mode=varpo \
    reward.custom_reward_function.path=pkg://varpo.verl.rewards \
    reward.custom_reward_function.name=compute_score \
    +reward.custom_reward_function.reward_kwargs.task=toolcall \
    data.train_files="$DATA_DIR/train.parquet" \
    data.val_files="$DATA_DIR/test.parquet" \
    data.train_batch_size=512 \
    data.max_prompt_length=2048 \
    data.max_response_length=1024 \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=128 \
    actor_rollout_ref.actor.use_dynamic_bsz=true \
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384 \
    actor_rollout_ref.actor.use_kl_loss=true \
    actor_rollout_ref.actor.kl_loss_coef=0.001 \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.n=4 \
    trainer.total_epochs=15 \
    trainer.n_gpus_per_node="${N_GPUS:-8}" \
    trainer.nnodes=1 \
    trainer.project_name=varpo \
    trainer.experiment_name=toolrl-dvao-qwen2.5-3b \
    "$@"
