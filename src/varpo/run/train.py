"""``varpo train``: RL with any varpo method through :class:`~varpo.trl.VarpoGRPOTrainer`, and its ``--dry-run``.

A run directory holds TRL's checkpoints, ``metrics.jsonl``, ``run.json`` (the resolved configuration and the
model it started from, which ``varpo eval`` reads for its before/after table) and ``final/`` (model + tokenizer).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import torch

from varpo import models
from varpo.run import data, sft
from varpo.run.progress import quiet_library_bars, use_compact_progress
from varpo.run.spec import Resolved, RunSpec, cpu_defaults, validate

__all__ = ["build_trainer", "cpu_defaults", "dry_run", "set_threads", "start_model", "train", "write_run_file"]

RUN_FILE = "run.json"
FINAL_DIR = "final"
logger = logging.getLogger(__name__)


def set_threads(spec: RunSpec) -> None:
    """One thread by default: tiny matmuls gain nothing from a second thread and lose a lot on a busy machine."""
    if spec.num_threads > 0:
        torch.set_num_threads(spec.num_threads)


def start_model(spec: RunSpec, seed: int) -> str:
    """The model RL starts from: the cached SFT warm start, a given path, or the base model."""
    if spec.warm_start == "sft":
        return str(sft.warm_start(spec, seed=seed))
    if spec.warm_start:
        return spec.warm_start
    return sft.base_model(spec)


def build_trainer(resolved: Resolved):
    """Everything up to ``trainer.train()``: warm start, data, rewards, model, config. Returns (trainer, start)."""
    from varpo.trl import VarpoGRPOTrainer

    spec = resolved.spec
    checked = validate(resolved)  # every config/file error before the warm start or a model load
    args, task = checked.args, checked.task
    set_threads(spec)
    quiet_library_bars()
    train_dataset = data.train_data(spec, keep=(args.gvpo_external_column,))
    start = start_model(spec, args.seed)
    model, tokenizer = models.load(start)
    trainer = VarpoGRPOTrainer(
        model=model,
        reward_funcs=task.reward_funcs,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
    )
    use_compact_progress(trainer)
    return trainer, start


def write_run_file(resolved: Resolved, start: str, args) -> None:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "spec": dataclasses.asdict(resolved.spec),
        "train": {k: v for k, v in resolved.train.items()},
        "source": resolved.source,
        "start_model": start,
        "temperature": args.temperature,
        "max_completion_length": args.max_completion_length,
        "final_model": str(out / FINAL_DIR),
    }
    (out / RUN_FILE).write_text(json.dumps(record, indent=2, default=str))


def last_complete_checkpoint(out: Path) -> str | None:
    """The newest ``checkpoint-N`` in ``out`` whose ``trainer_state.json`` (written last by the Trainer) is whole;
    a run killed while saving leaves a newer, incomplete directory, which is skipped with a warning."""
    found = sorted(
        (p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for path in found:
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            logger.warning("--resume: skipping incomplete checkpoint %s (killed while saving?)", path)
            continue
        return str(path)
    return None


def _comparable(resolved_part: dict) -> dict:
    return json.loads(json.dumps(resolved_part, default=str))


def changed_keys(resolved: Resolved, record: dict) -> list[str]:
    """Config keys whose value differs between ``resolved`` and a run's ``run.json`` record (both sides' keys)."""
    old = {**record.get("spec", {}), **record.get("train", {})}
    new = {**_comparable(dataclasses.asdict(resolved.spec)), **_comparable(resolved.train)}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _output_dir(resolved: Resolved) -> Path:
    """The run's ``output_dir`` (TRL's default when the config leaves it unset), ``~`` expanded as TRL does."""
    return Path(resolved.train.get("output_dir") or "trainer_output").expanduser()


def check_output_dir(resolved: Resolved, resume: bool = False, overwrite: bool = False, override: bool = False) -> str:
    """Run safety, before anything is built: :func:`output_dir_action`, then with ``--overwrite`` the old run
    directory is deleted. Returns ``"new"``, ``"overwrite"`` or ``"resume"``. Callers validate the new
    configuration first (:func:`train` does), so a config error never costs the old run."""
    action = output_dir_action(resolved, resume=resume, overwrite=overwrite, override=override)
    if action == "overwrite":
        shutil.rmtree(_output_dir(resolved))
    return action


# What a varpo run writes at the top of its output_dir (TRL adds checkpoints, completions, its model card and the
# tensorboard ``runs/``); anything else is the user's, and --overwrite refuses to delete it.
RUN_ENTRIES = frozenset({RUN_FILE, "metrics.jsonl", FINAL_DIR, "reward_log", "completions", "runs", "README.md"})


def _foreign_entries(out: Path) -> list[str]:
    """Top-level names in ``out`` that no varpo run writes (sorted)."""
    return sorted(p.name for p in out.iterdir() if p.name not in RUN_ENTRIES and not p.name.startswith("checkpoint-"))


def _protected(out: Path) -> str | None:
    """Why ``out`` may never be deleted whatever it holds (the current directory, the home directory, the file
    system root or an ancestor of one of them), else None."""
    path = out.expanduser().resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if path == Path(path.anchor):
        return "the file system root"
    if path == cwd or cwd.is_relative_to(path):
        return "the current directory" if path == cwd else "an ancestor of the current directory"
    if path == home or home.is_relative_to(path):
        return "the home directory" if path == home else "an ancestor of the home directory"
    return None


def _file_in_the_way(out: Path) -> Path | None:
    """``out`` itself or its closest existing ancestor when that is not a directory (a run cannot be created)."""
    for path in (out, *out.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def read_run_record(record_path: Path) -> dict:
    """A run's ``run.json`` as a mapping whose ``spec`` and ``train`` are mappings; anything else is a one-line
    ValueError naming the file (a hand-edited or truncated file must not crash ``--resume``)."""
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{record_path} is not a readable JSON file ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{record_path} holds a JSON {type(record).__name__}, not a run record (a JSON object)")
    for part in ("spec", "train"):
        if not isinstance(record.get(part, {}), dict):
            raise ValueError(f"{record_path}: {part!r} is {record[part]!r}, not a mapping of config keys")
    return record


def output_dir_action(resolved: Resolved, resume: bool = False, overwrite: bool = False, override: bool = False) -> str:
    """What a run with these flags does with ``output_dir`` — ``"new"``, ``"overwrite"`` or ``"resume"`` — or the
    ``ValueError`` that refuses it. Reads only; deletes nothing (``--dry-run`` calls this).

    * an ``output_dir`` that is a file, or lies below one, is refused (no run can be written there);
    * a non-empty ``output_dir`` is refused unless ``--resume`` (continue it) or ``--overwrite`` (replace it);
    * ``--overwrite`` deletes only a varpo run directory: one with ``run.json`` and nothing a run does not write
      (:data:`RUN_ENTRIES`, ``checkpoint-*``). A directory with other files, and the current directory, the home
      directory, the root or an ancestor of them, are refused whatever they hold;
    * ``--resume`` needs the run's own ``run.json``, and a configuration that differs from it is an error naming
      the changed keys unless ``--override`` (then the new values are used and recorded).
    """
    out = _output_dir(resolved)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other (continue the run, or replace it)")
    blocking = _file_in_the_way(out)
    if blocking is not None:
        where = "is a file" if blocking == out else f"lies below {blocking}, which is a file"
        raise ValueError(f"output_dir {out} {where}; set output_dir=<a directory>")
    nonempty = out.is_dir() and any(out.iterdir())
    if resume:
        record_path = out / RUN_FILE
        if not record_path.is_file():
            raise ValueError(f"--resume: {record_path} not found; {out} holds no varpo run to resume")
        record = read_run_record(record_path)
        changed = changed_keys(resolved, record)
        if changed and not override:
            raise ValueError(
                f"--resume: the configuration differs from {record_path} in {', '.join(changed)}; "
                "pass --override to resume with the new values"
            )
        return "resume"
    if not nonempty:
        return "new"
    if not overwrite:
        raise ValueError(
            f"output_dir {out} is not empty; pass --resume to continue that run, --overwrite to replace it, or set "
            "output_dir=<another directory>"
        )
    protected = _protected(out)
    if protected:
        raise ValueError(f"--overwrite: output_dir {out} is {protected}; not deleting it (set output_dir=<a run dir>)")
    if not (out / RUN_FILE).is_file():
        raise ValueError(f"--overwrite: {out} does not look like a varpo run directory (no run.json); not deleting it")
    foreign = _foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ValueError(
            f"--overwrite: {out} holds files a varpo run does not write ({shown}); not deleting it "
            "(move them away or set output_dir=<another directory>)"
        )
    return "overwrite"


def train(resolved: Resolved, resume: bool = False, overwrite: bool = False, override: bool = False) -> Path:
    """Train and save ``<output_dir>/final``; ``resume`` continues from the last complete checkpoint in ``output_dir``.
    See :func:`check_output_dir` for what ``resume``/``overwrite``/``override`` allow. The whole configuration is
    validated before ``output_dir`` is touched: an invalid new config never deletes the old run."""
    validate(resolved)
    check_output_dir(resolved, resume=resume, overwrite=overwrite, override=override)
    trainer, start = build_trainer(resolved)
    args = trainer.args
    checkpoint = None
    if resume:
        out = Path(args.output_dir)
        checkpoint = last_complete_checkpoint(out) if out.is_dir() else None
        if checkpoint is None:
            logger.warning("--resume: no checkpoint in %s yet, starting this run from step 0", out)
    write_run_file(resolved, start, args)
    trainer.train(resume_from_checkpoint=checkpoint)
    final = Path(args.output_dir) / FINAL_DIR
    trainer.save_model(str(final))
    trainer.processing_class.save_pretrained(str(final))
    return Path(args.output_dir)


def dry_run(
    resolved: Resolved, resume: bool = False, overwrite: bool = False, override: bool = False
) -> list[tuple[str, str]]:
    """Validate a configuration without training, loading weights or downloading; returns (item, result) rows.

    ``resume``/``overwrite``/``override`` are the real run's flags: ``output_dir`` gets the run-safety check a
    real run would do first (:func:`output_dir_action`; never deletes anything), and a refusal raises the same
    one-line ``ValueError``.

    Runs :func:`varpo.run.spec.validate` (every check of a real run: trainer config, one weight per reward, the
    files and models named), then loads the task's data and scores its rewards on gold completions, and builds
    the tokenizer + model config (``builtin:tiny``: trained/built here; a hub id: read from the local HF cache,
    skipped when offline and not cached). What cannot be checked on this machine (a data file not copied here yet,
    an uncached hub model or dataset offline) is skipped and said so. The SFT warm start is not run.
    """
    spec = resolved.spec
    checked = validate(resolved, dry_run=True)  # first the config, then output_dir: the order of a real run
    plan = output_dir_plan(resolved, resume=resume, overwrite=overwrite, override=override)
    rows: list[tuple[str, str]] = []
    args, task = checked.args, checked.task
    rows.append(
        (
            "config",
            f"{args.advantage_method} / {args.policy_loss} / {args.loss_aggregation}, "
            f"G={args.num_generations}, lr={args.learning_rate:g}, output_dir={args.output_dir}",
        )
    )
    rows.append(("task", f"{spec.task} {spec.task_options or ''}".strip() + f": rewards {task.reward_names}"))
    rows.append(("data", _check_data(spec, checked.skipped.get("train_file"))))
    if args.gvpo_history_per_group or args.gvpo_external_column:
        from varpo.trl import replay

        ds = None if rows[-1][1].startswith("skipped") else data.train_data(spec, keep=(args.gvpo_external_column,))
        described = replay.describe(args, ds and ds.column_names, ds and len(ds))
        rows.append(("off-policy gvpo", described))
    # an eval file not on this machine is skipped (said below), not loaded: gold rows come from the task instead
    gold_spec = dataclasses.replace(spec, eval_file=None) if "eval_file" in checked.skipped else spec
    gold = data.eval_data(gold_spec, n=min(8, spec.eval_prompts))
    columns = {c: gold[c] for c in gold.column_names if c not in ("prompt", "completion")}
    # Judged rewards (varpo.judge) are not called: a dry run must not need the judge server.
    judged = [f for f in task.reward_funcs if getattr(f, "judge", None) is not None]
    scores = {f.__name__: _score_gold(f, gold, columns) for f in task.reward_funcs if f not in judged}
    scored = [f"{k} on gold: {_mean(v):.3g}" for k, v in scores.items()] + [f"{f.__name__}: judged" for f in judged]
    rows.append(("rewards", ", ".join(scored)))
    if judged:
        rows.append(("judge", judged[0].judge.describe() + " (not called in dry run)" + _reachability(judged[0])))
    if spec.warm_start == "sft":
        rows.append(("warm start", f"SFT on {spec.sft_demos} demos, {spec.sft_epochs:g} epochs (skipped in dry run)"))
    elif spec.warm_start:
        skipped = checked.skipped.get("warm_start")
        rows.append(("warm start", f"skipped: {skipped}" if skipped else f"from {spec.warm_start} (not loaded)"))
    if "eval_file" in checked.skipped:
        rows.append(("eval data", f"skipped: {checked.skipped['eval_file']}"))
    texts = None
    if spec.model == models.BUILTIN_TINY:  # the tokenizer is trained on the demos + the train file (if it is here)
        texts = data.corpus(dataclasses.replace(spec, train_file=None) if "train_file" in checked.skipped else spec)
    config, note = models.inspect(spec.model, texts, sft.tiny_spec(spec))
    rows.append(("model", note))
    rows.append(("output_dir", plan))
    return rows


def output_dir_plan(resolved: Resolved, resume: bool = False, overwrite: bool = False, override: bool = False) -> str:
    """What a real run with these flags would do with ``output_dir`` (for ``--dry-run``; never deletes anything).

    Raises :func:`output_dir_action`'s ``ValueError`` where a real run would be refused (a non-empty directory without
    ``--resume``/``--overwrite``, a configuration that differs from the run's ``run.json`` without ``--override``).
    """
    out = _output_dir(resolved)
    action = output_dir_action(resolved, resume=resume, overwrite=overwrite, override=override)
    if action == "resume":
        return f"{out}: resume the run there (its run.json {'accepts the changes (--override)' if override else 'matches'})"
    if action == "overwrite":
        return f"{out}: the varpo run there will be replaced (--overwrite)"
    return f"{out}: new run"


def _check_data(spec: RunSpec, skipped: str | None) -> str:
    """Load the training data if it is here; say what was skipped if it is a hub dataset (offline) or missing."""
    if skipped:
        return f"skipped: {skipped}"
    ds = data.train_data(spec)
    return f"{len(ds)} training prompts from {spec.train_file or 'the built-in generator'}"


def _reachability(fn) -> str:
    """``; reachable: yes/no`` for an OpenAI-compatible judge (a TCP connect, no request; a note, never an error:
    a judge started after the dry run is normal)."""
    url = getattr(fn.judge.backend, "base_url", None)
    if not url:
        return ""
    from varpo.judge.backends import reachable

    return "; reachable now: " + ("yes" if reachable(url) else "no (a real run counts every judgment as failed)")


def _score_gold(fn, gold, columns: dict) -> list:
    """``fn`` on the gold rows, as TRL calls it; a reward that raises or returns the wrong number of values is a
    one-line ValueError naming it (a real run would fail at its first step)."""
    try:
        values = fn(prompts=gold["prompt"], completions=gold["completion"], **columns)
    except Exception as err:  # noqa: BLE001 - whatever the reward raises, the dry run reports it on one line
        message = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(
            f"reward {fn.__name__!r} raised {type(err).__name__} on the data's rows (columns: {sorted(columns)}): "
            f"{message}"
        ) from None
    if not isinstance(values, (list, tuple)) or len(values) != len(gold):
        raise ValueError(
            f"reward {fn.__name__!r} returned {type(values).__name__} for {len(gold)} completions; "
            "expected a list of one float (or None) per completion"
        )
    return values


def _mean(values) -> float:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else float("nan")
