"""GPU smoke run of the varpo plug-in inside verl: 5 steps per estimator on a model built locally (no downloads).

What it runs: for every varpo estimator (``varpo_grpo`` ... ``varpo_rvpo``) and for the ``varpo_gvpo`` loss,
``python -m varpo.verl.train`` with verl's V1 trainer in varpo's mode, vLLM rollouts on one GPU, FSDP2, a
2-layer Qwen2 with a BPE tokenizer trained on Countdown text (``varpo.models.build_tiny``) and Countdown's two
rewards (accuracy, format) from ``varpo.verl.rewards.compute_score``. It prints, per estimator and step, the
policy loss, the gradient norm, the advantage statistics and the effective component weights, and writes every
run's full log to ``<out>/<name>.log`` and the table to ``<out>/summary.json``.

``--dry-run`` builds the model and data, then composes and validates every run's config exactly as the launcher
would (varpo's checks, verl's ``validate_config``, registry lookups) without starting Ray or a GPU; it runs on a
CPU. The model is untrained: the point is that every estimator runs end to end in verl's real loop, not that it
learns.

    bash examples/verl/smoke.sh [--out DIR] [--steps 5] [--only varpo_dvao,...] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

TASK = "countdown"
KEYS = ("accuracy", "format")
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
#: metrics printed per step (verl's console logger prints every metric; these are the ones a smoke run reads).
SHOWN = ("actor/pg_loss", "actor/grad_norm", "varpo/adv_abs_mean", "varpo/adv_std", "critic/score/mean")


def build(out: str) -> tuple[str, str]:
    """A local model (Qwen2, 2 layers, head_dim 64) with a chat template, and train/val parquet files."""
    from transformers import AutoTokenizer

    from varpo.models import TinySpec, build_tiny
    from varpo.tasks import get_task

    task = get_task(TASK)
    train, val = task.generate(256, seed=0), task.generate(32, seed=0, split="test")
    spec = TinySpec(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    path = str(build_tiny([r["prompt"] + r["completion"] for r in train], spec, cache_dir=os.path.join(out, "cache")))
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.save_pretrained(path)
    task.to_verl(train).to_parquet(os.path.join(out, "train.parquet"))
    task.to_verl(val).to_parquet(os.path.join(out, "val.parquet"))
    return path, out


def runs(only: list[str] | None) -> dict[str, list[str]]:
    """name -> the overrides that select it (every varpo estimator, and GVPO's loss on centred rewards)."""
    import varpo

    out = {f"varpo_{m}": [f"algorithm.adv_estimator=varpo_{m}"] for m in varpo.METHODS}
    out["varpo_gvpo"] = [
        "algorithm.adv_estimator=varpo_dr_grpo",
        "actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",  # counts groups under force_group_size
    ]
    out["varpo_rvpo"].append("+algorithm.varpo.rvpo_k_end=2.0")  # RVPO's annealed k, 1.0 -> 2.0 over the run
    out["varpo_rvpo"].append("+algorithm.varpo.rvpo_k=0.5")
    if only:
        unknown = sorted(set(only) - set(out))
        if unknown:
            raise SystemExit(f"--only: unknown {unknown}; choose from {sorted(out)}")
        out = {k: v for k, v in out.items() if k in only}
    return out


def overrides(model: str, data: str, steps: int, name: str) -> list[str]:
    return [
        f"actor_rollout_ref.model.path={model}",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",  # no flash-attn needed
        "actor_rollout_ref.model.use_remove_padding=false",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.optim.lr=1e-5",
        "actor_rollout_ref.actor.ppo_mini_batch_size=8",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.actor.shuffle=false",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.n=4",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        f"data.train_files={data}/train.parquet",
        f"data.val_files={data}/val.parquet",
        "data.train_batch_size=8",
        "data.max_prompt_length=256",
        "data.max_response_length=64",
        "reward.custom_reward_function.path=pkg://varpo.verl.rewards",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.custom_reward_function.reward_kwargs.task={TASK}",
        f"+algorithm.varpo.reward_keys=[{','.join(KEYS)}]",
        "trainer.v1.trainer_mode=varpo",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        f"trainer.total_training_steps={steps}",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.logger=[console]",
        "trainer.project_name=varpo-smoke",
        f"trainer.experiment_name={name}",
    ]


def _merge(base: list[str], extra: list[str]) -> list[str]:
    """Hydra rejects a key given twice: the run's own overrides replace the base ones."""
    keys = {e.split("=", 1)[0].lstrip("+") for e in extra}
    return [o for o in base if o.split("=", 1)[0].lstrip("+") not in keys] + extra


_STEP = re.compile(r"step:(\d+) - (.*)")
_NUMPY = re.compile(r"^np\.\w+\((.*)\)$")


def step_metrics(log: str) -> list[dict]:
    """verl's console logger lines ``step:N - key:value - ...`` -> one dict per step."""
    rows = []
    for line in log.splitlines():
        match = _STEP.search(line)
        if not match:
            continue
        row = {"step": int(match.group(1))}
        for item in match.group(2).split(" - "):
            key, _, value = item.partition(":")
            value = _NUMPY.sub(r"\1", value.strip())  # verl prints np.float64(0.25) for some metrics
            if key in SHOWN or key.startswith(("varpo/weight/", "varpo/reward_weight/", "varpo/rvpo_k")):
                try:
                    row[key] = float(value)
                except ValueError:
                    continue
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/verl-smoke", help="directory for the model, data, logs and summary")
    parser.add_argument("--steps", type=int, default=5, help="training steps per estimator")
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. varpo_dvao,varpo_gvpo")
    parser.add_argument("--dry-run", action="store_true", help="build and validate every config; no Ray, no GPU")
    args = parser.parse_args()
    if args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    os.makedirs(args.out, exist_ok=True)
    model, data = build(os.path.abspath(args.out))
    selected = runs([s for s in args.only.split(",") if s] or None)
    if args.dry_run:
        import varpo.verl.plugin  # noqa: F401
        from varpo.verl.settings import ConfigError
        from varpo.verl.train import compose_config, validate

        failed = 0
        for name, extra in selected.items():
            try:
                validate(compose_config(_merge(overrides(model, data, args.steps, name), extra)))
                print(f"{name}: config OK")
            except ConfigError as exc:
                failed += 1
                print(f"{name}: error: {exc}", file=sys.stderr)
        print(f"dry run: {len(selected) - failed}/{len(selected)} configs OK; model {model}")
        return 1 if failed else 0
    summary, failed = {}, []
    for name, extra in selected.items():
        start = time.time()
        cmd = [sys.executable, "-m", "varpo.verl.train", *_merge(overrides(model, data, args.steps, name), extra)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log = proc.stdout + proc.stderr
        with open(os.path.join(args.out, f"{name}.log"), "w") as f:
            f.write(log)
        steps = step_metrics(log)
        summary[name] = {"returncode": proc.returncode, "seconds": round(time.time() - start, 1), "steps": steps}
        print(f"== {name}: exit {proc.returncode}, {len(steps)} steps, {time.time() - start:.0f} s")
        for row in steps:
            print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if proc.returncode != 0 or len(steps) < args.steps:
            failed.append(name)
            print("  last lines:\n    " + "\n    ".join(log.strip().splitlines()[-15:]))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"smoke: {len(selected) - len(failed)}/{len(selected)} runs completed {args.steps} steps; failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
