"""verl's V1 trainer on CPU with varpo's trainer mode and a real TransferQueue (run by ``test_engine_loop.py``).

Real verl code: ``VarpoTrainerSync`` (verl's ``PPOTrainerSync`` + varpo's overrides) built by its own
``__init__`` and ``fit``: dataloader, ``ReplayBuffer.sample``, ``_balance_batch``, ``_compute_old_log_prob``,
``_compute_advantage``, ``_update_actor``, ``_compute_metrics``, ``_save_checkpoint`` / ``_load_checkpoint``;
TransferQueue's controller and storage (Ray actors on a local Ray instance); the agent-loop worker's
``generate_sequences`` / ``_run_prompt`` (prompt status tags) / ``_agent_loop_postprocess`` (the TransferQueue
row layout); the actor worker and its FSDP2 engine on gloo. Stand-ins: the LLM server + agent loop + reward loop
of one session (``_run_agent_loop``: HF ``generate`` or a fixed gold / format-only answer, scored by verl's reward
manager), the worker group (the real worker in-process) and the weight sync.

``python -m tests.verl.v1_loop <out.json> <work dir>`` needs :func:`tests.verl.cpu_platform.engine_env`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch

from tests.verl.engine_loop import (
    FORMAT_ONLY,
    PATTERNS,
    RESPONSE_LEN,
    SCHEDULE,
    LocalWorkerGroup,
    N,
    OnePool,
    StandInWeightSync,
    build_model_and_data,
    compose,
    core_advantages,
    max_change,
    parameters,
)

# calculate_log_probs: the stand-in rollout returns no sampling log-probs (vLLM would).
V1 = ("trainer.use_v1=true", "trainer.v1.trainer_mode=varpo", "actor_rollout_ref.rollout.calculate_log_probs=false")


def agent_worker_class():
    """verl's agent-loop worker for TransferQueue with only ``_run_agent_loop`` (one session) replaced."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ

    base = AgentLoopWorkerTQ.__ray_metadata__.modified_class  # the class behind verl's @ray.remote

    class StandInAgentLoopWorker(base):
        def __init__(self, config, tokenizer, model, reward):  # verl's __init__ connects LLM servers and tools
            self.config, self.tokenizer, self.model, self.reward = config, tokenizer, model, reward
            self.processor, self.distillation_enabled, self.reward_loop_worker_handles = None, False, None
            self.background_tasks = set()
            self.sessions = 0
            self.errors: list[BaseException] = []

        async def _run_agent_loop(self, sampling_params, trajectory, *, agent_name, trace=True, **kwargs):
            try:
                return await self._session(trajectory, **kwargs)
            except BaseException as exc:  # verl only logs a failed session and refills: stop the test instead
                self.errors.append(exc)
                raise

        async def _session(self, trajectory, **kwargs):
            from verl import DataProto

            tok = self.tokenizer
            prompt_ids = tok.apply_chat_template(list(kwargs["raw_prompt"]), add_generation_prompt=True)
            prompt_ids = list(prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids)
            pattern = PATTERNS[(int(kwargs["global_steps"]) - 1) % len(PATTERNS)]
            kind = pattern[int(kwargs["session_id"]) % N]
            if kind == "sample":
                torch.manual_seed(1000 * int(kwargs["global_steps"]) + int(kwargs["session_id"]))
                with torch.no_grad():
                    out = self.model.generate(
                        torch.tensor([prompt_ids]),
                        max_new_tokens=RESPONSE_LEN,
                        do_sample=True,
                        pad_token_id=tok.pad_token_id,
                    )[0, len(prompt_ids) :].tolist()
                response = out[: out.index(tok.eos_token_id) + 1] if tok.eos_token_id in out else out
            else:
                text = kwargs["extra_info"]["completion"] if kind == "gold" else FORMAT_ONLY
                response = tok(text, add_special_tokens=False)["input_ids"][: RESPONSE_LEN - 1] + [tok.eos_token_id]
            row = DataProto.from_dict(
                tensors={
                    "responses": torch.tensor([response]),
                    "attention_mask": torch.ones(1, len(prompt_ids) + len(response), dtype=torch.long),
                },
                non_tensors={
                    k: np.array([kwargs[k]], dtype=object) for k in ("data_source", "reward_model", "extra_info")
                },
            )
            scored = await self.reward.run_single(row)  # verl's reward manager -> varpo.verl.rewards.compute_score
            self.sessions += 1
            output = AgentLoopOutput(
                prompt_ids=prompt_ids,
                response_ids=response,
                response_mask=[1] * len(response),
                reward_score=scored["reward_score"],
                num_turns=2,
                metrics=AgentLoopMetrics(),
                extra_fields={
                    "reward_extra_info": scored["reward_extra_info"],
                    "min_global_steps": kwargs["global_steps"],
                    "max_global_steps": kwargs["global_steps"],
                },
            )
            return await self._agent_loop_postprocess(output, trajectory["validate"], **kwargs)

    return StandInAgentLoopWorker


class StandInAgentLoopManager:
    """Runs the (real) agent-loop worker's ``generate_sequences`` to completion: the sync trainer's contract."""

    def __init__(self, worker):
        self.worker = worker
        self.loop = worker.reward.loop  # verl's reward manager runs its executor calls on this loop

    def generate_sequences(self, batch):
        self.loop.run_until_complete(self.worker.generate_sequences(batch))
        self.loop.run_until_complete(asyncio.gather(*list(self.worker.background_tasks)))
        if self.worker.errors:
            raise RuntimeError("stand-in agent loop failed") from self.worker.errors[0]


def make_trainer(cfg, tokenizer, path, worker_loss=None):
    from transformers import AutoModelForCausalLM
    from verl.trainer.ppo.reward import load_reward_manager
    from verl.workers.engine_workers import ActorRolloutRefWorker

    from varpo.verl.trainer import VarpoTrainerSync

    actor = ActorRolloutRefWorker(cfg.actor_rollout_ref, role="actor")
    actor.init_model()
    trainer = VarpoTrainerSync(cfg)
    trainer._init_tokenizer()
    trainer._init_dataloader()
    trainer._init_dump_executor()
    trainer.actor_rollout_wg = LocalWorkerGroup(actor)
    trainer.resource_pool_manager = OnePool()
    trainer.reward_loop_manager = SimpleNamespace(reward_loop_worker_handles=["scored in the agent loop"])
    model = AutoModelForCausalLM.from_pretrained(path)
    rollout = SimpleNamespace(model=model)
    trainer.checkpoint_manager = StandInWeightSync(rollout, actor)
    worker = agent_worker_class()(cfg, tokenizer, model, load_reward_manager(cfg, tokenizer))
    return trainer, actor, StandInAgentLoopManager(worker)


def fit(trainer, manager):
    """verl's V1 ``fit`` (after the part of ``init`` that needs Ray workers: checkpoint load, weight sync)."""
    from verl.trainer.ppo.v1 import trainer_base

    seen, wrapped = [], trainer_base.PPOTrainer._compute_advantage
    from varpo.verl import state as verl_state

    def spy(self, batch, metrics):
        held = verl_state.of(self).state_dict()
        out = wrapped(self, batch, metrics)
        data = trainer_base.tq.kv_batch_get(
            keys=out.keys,
            partition_id=out.partition_id,
            select_fields=["uid", "extra_fields", "advantages", "response_mask"],
        )
        seen.append({"step": self.global_steps, "state_before": held, "data": data})
        return out

    logged = []
    from verl.utils import tracking

    original_log = tracking.Tracking.log
    trainer_base.PPOTrainer._compute_advantage = spy
    tracking.Tracking.log = lambda self, data, step, *a, **k: logged.append({"step": step, **data})
    try:
        trainer._load_checkpoint()
        trainer.on_init_end()
        trainer.fit(manager)
    finally:
        trainer_base.PPOTrainer._compute_advantage = wrapped
        tracking.Tracking.log = original_log
    return seen, logged


def rows(data):
    """uids, reward components [N, 2], sequence advantages [N], response masks from a TransferQueue batch."""
    from varpo.verl.context import as_list

    uids = [str(u) for u in as_list(data["uid"])]
    infos = [e["reward_extra_info"] for e in as_list(data["extra_fields"])]
    rewards = np.array([[i["accuracy"], i["format"]] for i in infos], dtype=np.float64)
    adv = torch.stack([a[0] for a in data["advantages"].unbind(0)])
    return uids, rewards, adv


def main(out_path: str, work: str) -> None:
    t0 = time.time()
    import ray

    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    # TransferQueue's controller and two storage units are Ray actors of 1 CPU each: 4 logical CPUs.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="varpo_test")
    try:
        import transfer_queue as tq

        tq.init()
        run(out_path, work, t0)
        tq.close()
    finally:
        ray.shutdown()


def run(out_path: str, work: str, t0: float) -> None:
    from omegaconf import OmegaConf

    import varpo
    from varpo.schedules import parse_schedule, step_of_verl

    result: dict = {"tq_ready_s": time.time() - t0}
    _, path, data, tokenizer = build_model_and_data(work)
    ema = ("+algorithm.varpo.sigma_ema=0.5", "+algorithm.varpo.sigma_ema_shrink=0.5")
    common = (*V1, f"+algorithm.varpo.reward_weight_schedule={SCHEDULE}", *ema)

    # 1. two V1 steps, a checkpoint after each (actor, dataloader, TransferQueue, varpo state).
    cfg = compose(
        path, data, work, "varpo_dvao", *common, "trainer.total_training_steps=2", "trainer.resume_mode=disable"
    )
    schedule = parse_schedule(OmegaConf.to_container(cfg.algorithm.varpo.reward_weight_schedule), 2)
    trainer, actor, manager = make_trainer(cfg, tokenizer, path)
    before = parameters(actor)
    seen, logged = fit(trainer, manager)
    after = parameters(actor)
    reference = varpo.SigmaEMA(0.5, 0.5)
    diffs, weights, nonzero = [], [], []
    for rec in seen:
        uids, rewards, adv = rows(rec["data"])
        w = schedule.at(step_of_verl(rec["step"]))
        weights.append(w)
        want = core_advantages(rewards, uids, "dvao", weights=w, sigma_ema=reference)
        diffs.append(float((adv.double() - want).abs().max()))
        nonzero.append(int((adv != 0).sum()))
    saved = json.load(open(os.path.join(work, "ckpt", "global_step_2", "varpo_state.json")))
    step_metrics = [m for m in logged if "varpo/weight/accuracy" in m]
    result["v1"] = {
        "steps": [rec["step"] for rec in seen],
        "weights": weights,
        "max_abs_diff": diffs,
        "nonzero_advantages": nonzero,
        "param_max_change": max_change(before, after),
        "losses": [m.get("actor/pg_loss") for m in logged if "actor/pg_loss" in m],
        "varpo_metrics": sorted({k for m in step_metrics for k in m if k.startswith("varpo/")}),
        "logged_reward_weights": [
            [m.get("varpo/reward_weight/accuracy"), m.get("varpo/reward_weight/format")] for m in step_metrics
        ],
        "saved_state": saved,
        "reference_state": reference.state_dict(),
        "sessions": manager.worker.sessions,
    }

    # 2. resume (resume_mode=auto): verl restores actor, dataloader and TransferQueue; varpo its running σ̄.
    cfg3 = compose(
        path, data, work, "varpo_dvao", *common, "trainer.total_training_steps=3", "trainer.resume_mode=auto"
    )
    trainer3, _, manager3 = make_trainer(cfg3, tokenizer, path)
    seen3, _ = fit(trainer3, manager3)
    uids, rewards, adv = rows(seen3[0]["data"])
    w3 = schedule.at(step_of_verl(seen3[0]["step"]))
    want = core_advantages(rewards, uids, "dvao", weights=w3, sigma_ema=reference)
    result["v1_resume"] = {
        "steps": [rec["step"] for rec in seen3],
        "state_before": seen3[0]["state_before"],
        "weights": w3,
        "max_abs_diff": float((adv.double() - want).abs().max()),
    }

    # 3. GVPO in the varpo mode: whole uid groups per rank (_balance_batch), force_group_size, the worker loss.
    shutil.rmtree(os.path.join(work, "ckpt"), ignore_errors=True)
    cfg4 = compose(
        path,
        data,
        work,
        "varpo_dr_grpo",
        *V1,
        "actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",  # counts groups under force_group_size
        "trainer.total_training_steps=1",
        "trainer.resume_mode=disable",
        "trainer.save_freq=-1",
    )
    trainer4, actor4, manager4 = make_trainer(cfg4, tokenizer, path)
    trainer4.install_worker_loss()  # what VarpoTrainerMixin.init does after verl's init builds the workers
    before = parameters(actor4)
    seen4, logged4 = fit(trainer4, manager4)
    after = parameters(actor4)
    result["v1_gvpo"] = {
        "param_max_change": max_change(before, after),
        "losses": [m.get("actor/pg_loss") for m in logged4 if "actor/pg_loss" in m],
        "gvpo_metrics": sorted({k for m in logged4 for k in m if k.startswith("actor/varpo_gvpo/")}),
        "nonzero_advantages": int((rows(seen4[0]["data"])[2] != 0).sum()),
    }
    result["seconds"] = time.time() - t0
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
