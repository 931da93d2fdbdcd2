"""verl's own training loop on CPU with varpo plugged in (run by ``test_engine_loop.py`` in a subprocess).

Real verl code: the actor worker (``ActorRolloutRefWorker``) and its FSDP2 engine on gloo, verl's dataset
(``RLHFDataset`` + collate) and reward manager (``load_reward_manager`` -> ``varpo.verl.rewards.compute_score``),
and the legacy trainer's ``RayPPOTrainer.fit`` with its checkpoint save/resume: ``_compute_old_log_prob`` ->
``compute_advantage`` -> ``_update_actor``. Stand-ins, because verl 0.9.1 has no CPU path for them: the rollout
(HF ``generate`` instead of vLLM/SGLang, plus fixed gold and format-only answers so every group has reward
variance; assembled in the agent loop's output layout), the worker group (the real worker called in-process
instead of through Ray) and the weight sync to that rollout.

``python -m tests.verl.engine_loop <out.json> <work dir>`` needs the environment of
:func:`tests.verl.cpu_platform.engine_env`; it writes the measurements as JSON and the test asserts on them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import sys
import time
from functools import partial

import numpy as np
import torch

TASK = "countdown"
N = 4  # rollout.n
PROMPTS = 2  # data.train_batch_size
RESPONSE_LEN = 64
SCHEDULE = "{type: linear, points: [[0, [0.9, 0.1]], [2, [0.5, 0.5]]]}"
FORMAT_ONLY = "<think> </think>\n<answer> 1 </answer>"
#: per call, what each of the N responses of a group is (gold / format-only / model sample): the group statistics
#: change from step to step, so dvao's running σ̄ and its checkpoint matter to the advantages.
PATTERNS = (
    ("gold", "format", "sample", "sample"),
    ("gold", "gold", "format", "sample"),
    ("gold", "format", "format", "sample"),
)
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def build_model_and_data(work: str):
    """A 2-layer Qwen2 with a BPE tokenizer trained on the task's text, and a verl parquet file (``to_verl``)."""
    from transformers import AutoTokenizer

    from varpo.models import TinySpec, build_tiny
    from varpo.tasks import get_task

    task = get_task(TASK)
    ds = task.generate(16)
    spec = TinySpec(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=2)
    base = build_tiny([r["prompt"] + r["completion"] for r in ds], spec, cache_dir=os.path.join(work, "cache"))
    path = os.path.join(work, "model")
    shutil.copytree(base, path, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    data = os.path.join(work, "train.parquet")
    task.to_verl(ds).to_parquet(data)
    return task, path, data, tokenizer


def compose(path: str, data: str, work: str, estimator: str, *extra: str):
    from varpo.verl.train import compose_config

    base = [
        f"actor_rollout_ref.model.path={path}",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",  # default is flash_attention_2
        "actor_rollout_ref.model.use_remove_padding=false",
        "actor_rollout_ref.actor.strategy=fsdp2",  # FSDP1 needs an accelerator device_id
        "actor_rollout_ref.actor.fsdp_config.model_dtype=fp32",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={PROMPTS}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={PROMPTS * N}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={PROMPTS * N}",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.shuffle=false",
        f"actor_rollout_ref.rollout.n={N}",
        f"data.train_batch_size={PROMPTS}",
        f"data.train_files={data}",
        f"data.val_files={data}",
        "data.max_prompt_length=128",
        f"data.max_response_length={RESPONSE_LEN}",
        "trainer.device=cpu",
        "trainer.use_v1=false",
        "trainer.logger=[console]",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=1",
        f"trainer.default_local_dir={work}/ckpt",
        "reward.custom_reward_function.path=pkg://varpo.verl.rewards",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.custom_reward_function.reward_kwargs.task={TASK}",
        f"algorithm.adv_estimator={estimator}",
        "+algorithm.varpo.reward_keys=[accuracy,format]",
    ]
    overridden = {e.split("=", 1)[0] for e in extra}
    return compose_config([o for o in base if o.split("=", 1)[0] not in overridden] + list(extra))


class LocalWorkerGroup:
    """Stand-in for verl's Ray worker group: the real worker, called in this process (one DP rank)."""

    world_size = 1

    def __init__(self, worker):
        self.worker = worker
        self._dispatch_info = {"actor": [0]}

    def _query_dispatch_info(self, role):
        return [0]

    def compute_log_prob(self, data):
        return self.worker.compute_log_prob(data)

    def update_actor(self, data):
        return self.worker.update_actor(data)

    def set_loss_fn(self, loss_fn):
        self.worker.set_loss_fn(loss_fn)

    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
        self.worker.save_checkpoint(local_path, hdfs_path, global_step, max_ckpt_to_keep)

    def load_checkpoint(self, local_path, hdfs_path=None, del_local_after_load=False):
        self.worker.load_checkpoint(local_path, hdfs_path, del_local_after_load)


class StandInRollout:
    """Stand-in for verl's agent loop + vLLM (no CPU backend in verl 0.9.1).

    Per group of ``N``: gold answers, format-only answers and samples of the model (HF ``generate``) in the
    proportions of :data:`PATTERNS` (one per call), so every group varies in both components. Each response is scored by verl's reward manager
    (``NaiveRewardManager.run_single`` -> the configured ``compute_score``) and the batch is assembled as verl's
    ``AgentLoopWorker._postprocess`` does: ``rm_scores`` at the last response token, every ``reward_extra_info``
    key a ``non_tensor_batch`` column, their names in ``meta_info["reward_extra_keys"]``.
    """

    def __init__(self, config, tokenizer, path):
        from transformers import AutoModelForCausalLM
        from verl.trainer.ppo.reward import load_reward_manager

        self.tok, self.model = tokenizer, AutoModelForCausalLM.from_pretrained(path)
        self.reward = load_reward_manager(config, tokenizer)
        self.calls = 0

    def _encode(self, texts):
        ids = [
            self.tok(t, add_special_tokens=False)["input_ids"][: RESPONSE_LEN - 1] + [self.tok.eos_token_id]
            for t in texts
        ]
        return ids

    def generate_sequences(self, gen):
        from verl import DataProto

        self.calls += 1
        tok = self.tok
        prompts = [
            tok.apply_chat_template(list(m), add_generation_prompt=True, tokenize=False)
            for m in gen.non_tensor_batch["raw_prompt"]
        ]
        prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(len(p) for p in prompt_ids)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompt_ids])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
        torch.manual_seed(self.calls)
        with torch.no_grad():
            sampled = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=RESPONSE_LEN,
                do_sample=True,
                pad_token_id=tok.pad_token_id,
            )[:, width:].tolist()
        gold = [info["completion"] for info in gen.non_tensor_batch["extra_info"]]
        responses = []
        pattern = PATTERNS[(self.calls - 1) % len(PATTERNS)]
        for i, row in enumerate(sampled):
            kind = pattern[i % N]  # verl repeats prompts interleaved: the N rows of one prompt are consecutive
            if kind == "gold":
                responses.append(self._encode([gold[i]])[0])
            elif kind == "format":
                responses.append(self._encode([FORMAT_ONLY])[0])
            else:
                end = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
                responses.append(row[:end])
        resp = torch.tensor([r + [tok.pad_token_id] * (RESPONSE_LEN - len(r)) for r in responses])
        resp_mask = torch.tensor([[1] * len(r) + [0] * (RESPONSE_LEN - len(r)) for r in responses])
        attention = torch.cat([mask, resp_mask], 1)
        position = torch.clamp(torch.cumsum(attention, 1) - 1, min=0)
        tensors = {
            "prompts": ids,
            "responses": resp,
            "response_mask": resp_mask,
            "input_ids": torch.cat([ids, resp], 1),
            "attention_mask": attention,
            "position_ids": position,
        }
        out = DataProto.from_dict(tensors=tensors, non_tensors=dict(gen.non_tensor_batch))
        scored = self.reward.loop.run_until_complete(
            asyncio.gather(*[self.reward.run_single(out[i : i + 1]) for i in range(len(out))])
        )
        rm = torch.zeros(len(out), RESPONSE_LEN)
        rm[torch.arange(len(out)), resp_mask.sum(1) - 1] = torch.tensor([s["reward_score"] for s in scored])
        out.batch["rm_scores"] = rm
        keys = list(scored[0]["reward_extra_info"])
        for key in keys:
            out.non_tensor_batch[key] = np.array([s["reward_extra_info"][key] for s in scored])
        out.non_tensor_batch["multi_modal_inputs"] = np.array([{} for _ in range(len(out))], dtype=object)
        out.non_tensor_batch["__num_turns__"] = np.full(len(out), 2, dtype=np.int32)
        out.meta_info = {"timing": {}, "reward_extra_keys": keys}
        return out


class StandInWeightSync:
    """Stand-in for verl's checkpoint engine: copy the actor's weights (verl's ``get_per_tensor_param``) to the
    stand-in rollout after every update, so it samples from the current policy."""

    def __init__(self, rollout, worker):
        self.rollout, self.worker = rollout, worker

    def update_weights(self, global_steps):
        params, _ = self.worker.actor.engine.get_per_tensor_param()
        full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in params}
        self.rollout.model.load_state_dict(full, strict=False)

    def sleep_replicas(self):
        return None


class OnePool:
    def get_n_gpus(self):
        return 1


def max_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """Largest absolute change of any parameter entry between two :func:`parameters` snapshots."""
    return max(float((after[k] - before[k]).abs().max()) for k in before)


def parameters(worker) -> dict[str, torch.Tensor]:
    state = worker.actor.engine.module.state_dict()
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone() for k, v in state.items()}


def run_fit(cfg, tokenizer, path, loss_fn=None):
    """verl's legacy ``RayPPOTrainer`` on the real worker; returns (trainer, worker, batches seen by the estimator)."""
    from verl.trainer.ppo import ray_trainer
    from verl.trainer.ppo.utils import Role
    from verl.workers.engine_workers import ActorRolloutRefWorker

    from varpo.verl import state as verl_state

    worker = ActorRolloutRefWorker(cfg.actor_rollout_ref, role="actor")
    worker.init_model()
    trainer = ray_trainer.RayPPOTrainer(
        config=cfg,
        tokenizer=tokenizer,
        role_worker_mapping={Role.ActorRollout: object},
        resource_pool_manager=OnePool(),
        device_name="cpu",
    )
    trainer.actor_rollout_wg = LocalWorkerGroup(worker)
    if loss_fn is not None:
        trainer.actor_rollout_wg.set_loss_fn(loss_fn)
    trainer.async_rollout_manager = StandInRollout(cfg, tokenizer, path)
    trainer.checkpoint_manager = StandInWeightSync(trainer.async_rollout_manager, worker)

    seen = []
    wrapped = ray_trainer.compute_advantage  # the plug-in's wrapper around verl's function

    def spy(data, *args, **kwargs):  # records what fit hands the estimator, then runs the real call
        step = trainer.global_steps
        held = verl_state.of(trainer).state_dict()  # what the estimator starts from (restored on resume)
        seen.append({"step": step, "input": copy.deepcopy(data), "state_before": held})
        out = wrapped(data, *args, **kwargs)
        seen[-1]["advantages"] = out.batch["advantages"].clone()
        return out

    ray_trainer.compute_advantage = spy
    try:
        metrics = []
        original_log = None
        from verl.utils import tracking

        original_log = tracking.Tracking.log

        def log(self, data, step, *a, **k):
            metrics.append({"step": step, **{k2: float(v) for k2, v in data.items() if np.isscalar(v)}})

        tracking.Tracking.log = log
        before = parameters(worker)
        trainer.fit()
        after = parameters(worker)
    finally:
        ray_trainer.compute_advantage = wrapped
        if original_log is not None:
            tracking.Tracking.log = original_log
    moved = max_change(before, after)
    return trainer, worker, seen, metrics, moved


def components(batch) -> tuple[np.ndarray, list]:
    rewards = np.stack([np.asarray(batch.non_tensor_batch[k], dtype=np.float64) for k in ("accuracy", "format")], 1)
    return rewards, [str(u) for u in batch.non_tensor_batch["uid"]]


def core_advantages(rewards, uids, method, **kwargs) -> torch.Tensor:
    """``varpo.compute_advantages`` on the components, grouped by uid value: sequence advantages ``[N]``."""
    import varpo
    from varpo.verl.context import group_index

    ids = torch.from_numpy(group_index(uids))
    out = varpo.compute_advantages(torch.as_tensor(rewards), ids, method, names=("accuracy", "format"), **kwargs)
    return out.advantages


def core(rewards, uids, method, mask, **kwargs) -> torch.Tensor:
    """:func:`core_advantages` broadcast over the response mask ``[N, T]``, as verl stores advantages."""
    return core_advantages(rewards, uids, method, **kwargs).unsqueeze(-1) * mask


def main(out_path: str, work: str) -> None:
    t0 = time.time()
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)  # verl's own init asks for cpu:gloo twice
    import verl  # noqa: F401  (loads the cpu platform and the varpo plug-in)
    from verl.trainer.ppo import ray_trainer
    from verl.utils.device import get_device_name

    import varpo
    from varpo.schedules import step_of_verl
    from varpo.verl.losses import worker_loss

    result: dict = {"device": get_device_name()}
    task, path, data, tokenizer = build_model_and_data(work)

    # 1. dvao + reward-weight schedule + running σ̄, verl's PPO loss; 2 steps, a checkpoint after each.
    ema = ["+algorithm.varpo.sigma_ema=0.5", "+algorithm.varpo.sigma_ema_shrink=0.5"]
    cfg = compose(
        path,
        data,
        work,
        "varpo_dvao",
        f"+algorithm.varpo.reward_weight_schedule={SCHEDULE}",
        "trainer.total_training_steps=2",
        "trainer.resume_mode=disable",
        *ema,
    )
    trainer, worker, seen, metrics, moved = run_fit(cfg, tokenizer, path)
    from omegaconf import OmegaConf

    from varpo.schedules import parse_schedule

    schedule = parse_schedule(OmegaConf.to_container(cfg.algorithm.varpo.reward_weight_schedule), 2)
    reference = varpo.SigmaEMA(0.5, 0.5)
    diffs, weights = [], []
    for rec in seen:
        rewards, uids = components(rec["input"])
        w = schedule.at(step_of_verl(rec["step"]))
        weights.append(w)
        want = core(rewards, uids, "dvao", rec["input"].batch["response_mask"], weights=w, sigma_ema=reference)
        diffs.append(float((rec["advantages"].double() - want).abs().max()))
    saved = json.load(open(os.path.join(work, "ckpt", "global_step_2", "varpo_state.json")))
    result["dvao"] = {
        "steps": [rec["step"] for rec in seen],
        "weights": weights,
        "max_abs_diff": diffs,
        "nonzero_advantages": [int((rec["advantages"] != 0).any(-1).sum()) for rec in seen],
        "param_max_change": moved,
        "losses": [m.get("actor/pg_loss") for m in metrics],
        "grad_norms": [m.get("actor/grad_norm") for m in metrics],
        "reward_keys_in_batch": sorted(k for k in seen[0]["input"].non_tensor_batch if k in ("accuracy", "format")),
        "saved_state": saved,
        "reference_state": reference.state_dict(),
    }

    # 2. every varpo_* estimator through verl's compute_advantage on the batch fit built (verl's data path).
    first = seen[0]["input"]
    rewards, uids = components(first)
    mask = first.batch["response_mask"]
    est = {}
    for method in varpo.METHODS:
        algo = OmegaConf.create({"adv_estimator": f"varpo_{method}", "varpo": {"reward_keys": ["accuracy", "format"]}})
        got = ray_trainer.compute_advantage(copy.deepcopy(first), adv_estimator=f"varpo_{method}", config=algo)
        est[method] = float((got.batch["advantages"].double() - core(rewards, uids, method, mask)).abs().max())
    result["estimators"] = est

    # 3. resume from global_step_2: verl reloads the actor, varpo its running σ̄; step 3 continues the schedule.
    cfg3 = compose(
        path,
        data,
        work,
        "varpo_dvao",
        f"+algorithm.varpo.reward_weight_schedule={SCHEDULE}",
        "trainer.total_training_steps=3",
        "trainer.resume_mode=auto",
        *ema,
    )
    trainer3, _, seen3, _, _ = run_fit(cfg3, tokenizer, path)
    rewards, uids = components(seen3[0]["input"])
    w3 = schedule.at(step_of_verl(seen3[0]["step"]))
    want = core(rewards, uids, "dvao", seen3[0]["input"].batch["response_mask"], weights=w3, sigma_ema=reference)
    result["resume"] = {
        "steps": [rec["step"] for rec in seen3],
        "state_before": seen3[0]["state_before"],
        "weights": w3,
        "max_abs_diff": float((seen3[0]["advantages"].double() - want).abs().max()),
    }

    # 4. varpo_gvpo: verl's worker loss with the micro-batch's uids (what the varpo V1 mode installs).
    shutil.rmtree(os.path.join(work, "ckpt"), ignore_errors=True)
    cfg4 = compose(
        path,
        data,
        work,
        "varpo_dr_grpo",
        "actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo",
        "trainer.total_training_steps=1",
        "trainer.resume_mode=disable",
        "trainer.save_freq=-1",
    )
    from verl.utils.config import omega_conf_to_dataclass

    loss = partial(
        worker_loss, config=omega_conf_to_dataclass(cfg4.actor_rollout_ref.actor), gvpo_beta=0.1, group_size=N
    )
    _, _, seen4, metrics4, moved4 = run_fit(cfg4, tokenizer, path, loss_fn=loss)
    result["gvpo"] = {
        "param_max_change": moved4,
        "losses": [m.get("actor/pg_loss") for m in metrics4],
        "gvpo_metrics": sorted({k for m in metrics4 for k in m if k.startswith("actor/varpo_gvpo/")}),
        "nonzero_advantages": int((seen4[0]["advantages"] != 0).any(-1).sum()),
    }
    result["seconds"] = time.time() - t0
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
