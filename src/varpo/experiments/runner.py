"""One sweep run through the TRL engine: train, evaluate on held-out prompts during and after training, write
``eval.json`` last (atomically). This is the default runner of :func:`varpo.experiments.sweep.run_sweep`::

    python -m varpo.experiments.runner CONFIG --run-dir DIR [key=value …]     # one run
    python -m varpo.experiments.runner CONFIG --prepare [key=value …]         # shared start model + its step-0 eval

``key=value`` are engine config keys (``varpo.run.spec``: RunSpec + VarpoGRPOConfig fields), plus two keys the
runner itself consumes:

* ``eval_every=N`` — evaluate every N optimizer steps (default: ``max_steps // 4``, i.e. 5 evaluations incl. step 0
  and the last step; 0 = only step 0 and the end). These points are the curve of the monotonicity score.
* ``save_model=false`` — skip saving ``RUN_DIR/final`` (model + tokenizer, kept by default for ``varpo eval``).
* ``keep_checkpoints=true`` — keep TRL's ``checkpoint-*`` directories (deleted after a successful run by default:
  a sweep never resumes a finished run, and optimizer states would multiply its disk use several times).

Evaluation = ``eval_k`` samples per prompt for ``eval_prompts`` held-out prompts (the task's test split, disjoint
from training by construction) at ``eval_temperature`` (default: the training temperature), scored with
:func:`varpo.tasks.evaluate`: per objective avg@k (fraction of samples meeting it) and the all-objectives rate. The
same prompts and sampling seed (the run's seed) are used at every evaluation, so the curve moves only with the
model. The step-0 evaluation depends only on the start model and these settings, so it is cached
(``$VARPO_CACHE/eval``) and shared by every method of a seed.

``--prepare`` builds what all runs of a seed share (``builtin:tiny`` and the SFT warm start, both cached by the
engine, and the cached step-0 evaluation) so that parallel runs never race to build the same cache entry.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from varpo.experiments.records import git_commit, read_json, write_json


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


RUNNER_KEYS = {"eval_every": int, "save_model": _flag, "keep_checkpoints": _flag}


def split_overrides(items: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Runner options (``RUNNER_KEYS``) and the remaining engine overrides."""
    own, rest = {}, []
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key.strip() in RUNNER_KEYS:
            try:
                own[key.strip()] = RUNNER_KEYS[key.strip()](value)
            except ValueError:
                raise ValueError(f"{key.strip()}={value!r} is invalid; allowed: an int") from None
        else:
            rest.append(item)
    return own, rest


class HeldOutEval:
    """Evaluates a model on the run's held-out prompts; ``__call__`` returns one curve point."""

    def __init__(self, resolved, args, tokenizer) -> None:
        from varpo.run import data

        spec = resolved.spec
        self.task = data.task_of(spec)
        if "tokenizer" in {f.name for f in dataclasses.fields(self.task)}:
            # count tokens the way training does (TRL passes completion_ids), not as regex word pieces
            self.task = data.task_of(spec, tokenizer=tokenizer)
        self.rows = data.eval_data(spec)
        self.prompts = [_prompt_string(p, tokenizer) for p in self.rows["prompt"]]
        self.tokenizer = tokenizer
        self.k = spec.eval_k
        self.temperature = spec.eval_temperature if spec.eval_temperature is not None else args.temperature
        self.max_new_tokens = args.max_completion_length
        self.batch_size = spec.eval_batch_size
        self.seed = args.seed

    def settings(self) -> dict:
        return {
            "prompts": len(self.prompts),
            "k": self.k,
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "task": self.task.name,
        }

    def __call__(self, model, step: int) -> dict:
        from varpo.run.generate import sample
        from varpo.tasks import evaluate

        was_training = model.training
        start = time.perf_counter()
        try:
            samples = sample(
                model,
                self.tokenizer,
                self.prompts,
                self.k,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                batch_size=self.batch_size,
                seed=self.seed,
                description=f"eval @ step {step}",
            )
        finally:
            model.train(was_training)
        result = evaluate(self.task, zip(self.rows, samples), k=self.k)
        return {
            "step": step,
            "objectives": dict(result.avg_at_k),
            "all": result.all_objectives,
            "mean_reward": dict(result.mean),
            "pass_at_k": dict(result.pass_at_k),
            "per_prompt": result.per_prompt,
            "wall_s": round(time.perf_counter() - start, 3),
        }


def _prompt_string(prompt, tokenizer) -> str:
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def _cached_start_eval(evaluator: HeldOutEval, start: str, model) -> dict:
    """Step-0 evaluation of ``start``, cached by (start model, eval settings) when the start is a local directory."""
    from varpo import models
    from varpo.run.spec import digest

    path = Path(start)
    if not path.is_dir():
        return evaluator(model, 0)
    key = digest({"start": str(path.resolve()), "mtime": path.stat().st_mtime_ns, **evaluator.settings()})
    cache = models.cache_root() / "eval" / f"start-{key}.json"
    cached = read_json(cache)
    if isinstance(cached, dict):
        return cached
    point = evaluator(model, 0)
    write_json(cache, point)
    return point


def run(config: str, run_dir: Path, overrides: list[str]) -> dict:
    """Train + evaluate one run; returns the eval.json payload (also written to ``run_dir/eval.json``)."""
    from transformers import TrainerCallback

    from varpo.run.spec import load_config
    from varpo.run.train import FINAL_DIR, build_trainer, write_run_file

    own, engine_overrides = split_overrides(overrides)
    resolved = load_config(config, [*engine_overrides, f"output_dir={run_dir}"])
    started = time.perf_counter()
    trainer, start = build_trainer(resolved)
    args = trainer.args
    write_run_file(resolved, start, args)
    evaluator = HeldOutEval(resolved, args, trainer.processing_class)
    curve = [_cached_start_eval(evaluator, start, trainer.model)]

    class Curve(TrainerCallback):
        every = own.get("eval_every")

        def on_train_begin(self, targs, state, control, **kwargs):
            if self.every is None:  # 4 intervals over the run, whatever sets its length (max_steps or epochs)
                self.every = max(1, state.max_steps // 4)

        def on_step_end(self, targs, state, control, **kwargs):
            step = state.global_step
            if self.every > 0 and step % self.every == 0 and step != curve[-1]["step"]:
                curve.append(evaluator(trainer.model, step))

    trainer.add_callback(Curve())
    trainer.train()
    final_step = trainer.state.global_step
    if curve[-1]["step"] != final_step:
        curve.append(evaluator(trainer.model, final_step))
    if own.get("save_model", True):
        trainer.save_model(str(run_dir / FINAL_DIR))
        trainer.processing_class.save_pretrained(str(run_dir / FINAL_DIR))
    if not own.get("keep_checkpoints", False):
        for checkpoint in run_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
    final = curve[-1]
    # per-prompt rates are kept for the final evaluation only (prompt-clustered s.e.); the curve stays small
    per_prompt = final.get("per_prompt")
    curve = [{k: v for k, v in point.items() if k != "per_prompt"} for point in curve]
    payload = {
        "per_prompt": per_prompt,
        "objectives": final["objectives"],
        "objective_order": list(final["objectives"]),  # the task's reward order (JSON objects are written sorted)
        "all": final["all"],
        "mean_reward": final["mean_reward"],
        "pass_at_k": final["pass_at_k"],
        "curve": curve,
        "eval": evaluator.settings(),
        "steps": final_step,
        "start_model": start,
        "config": resolved.as_dict(),
        "command": [sys.executable, "-m", "varpo.experiments.runner", config, "--run-dir", str(run_dir), *overrides],
        "commit": git_commit(),
        "wall_s": round(time.perf_counter() - started, 3),
    }
    write_json(run_dir / "eval.json", json.loads(json.dumps(payload, default=str)))
    return payload


def prepare(config: str, overrides: list[str]) -> str:
    """Build (or find cached) what every run of a seed shares: ``builtin:tiny``, the SFT warm start for the seed,
    and the step-0 held-out evaluation of that start model."""
    from varpo import models
    from varpo.run.spec import load_config, validate
    from varpo.run.train import set_threads, start_model

    _, engine_overrides = split_overrides(overrides)
    resolved = load_config(config, engine_overrides)
    args = validate(resolved).args
    set_threads(resolved.spec)
    start = start_model(resolved.spec, args.seed)
    model, tokenizer = models.load(start)
    _cached_start_eval(HeldOutEval(resolved, args, tokenizer), start, model)
    return start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m varpo.experiments.runner", description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument(
        "--prepare", action="store_true", help="only build the shared start model and its step-0 evaluation"
    )
    parser.add_argument("overrides", nargs="*", help="key=value")
    ns = parser.parse_intermixed_args(argv)
    if ns.prepare:
        print(prepare(ns.config, ns.overrides))
        return 0
    if ns.run_dir is None:
        parser.error("--run-dir is required (unless --prepare)")
    run(ns.config, ns.run_dir, ns.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
