"""Run a grid of training runs, one subprocess each, resumable and in parallel, with a manifest of what ran.

Layout of a sweep directory::

    SWEEP_DIR/
      sweep.json            manifest: grid, every invocation (argv, commit, machine, time), status of every run
      config.yaml           the config every run started from (a resumed sweep must use the same bytes)
      runs/<point.name>/    one run: the engine's output (metrics.jsonl, ...), run.log, eval.json

**The runner contract.** A run is the command ``RUNNER… CONFIG --run-dir RUN_DIR key=value…`` (default runner:
``python -m varpo.experiments.runner``). It must train, evaluate on held-out prompts, and write ``RUN_DIR/eval.json``
last and atomically (schema in :mod:`varpo.experiments.results`). Exit status 0 + a parseable ``eval.json`` =
finished; anything else = failed (the run's ``run.log`` keeps its output). Because each run is its own process, a
crash, OOM or hang (``timeout``) costs that run only. Before the runs, ``RUNNER… CONFIG --prepare key=value…`` is
called once per seed (the first alone, then ``prepare_jobs`` at a time; log: ``SWEEP_DIR/prepare/seed<N>.log``): it
builds what every run of that seed shares (the engine's cached tiny model and SFT warm start), so parallel runs
never race to build the same thing.

**Resume.** A run whose ``eval.json`` parses is skipped. Any other existing run directory is a run that died
mid-way: it is deleted and started again from scratch (runs are short; a half-trained run cannot be told apart from
a finished one by its metrics alone).

**Parallelism.** Up to ``jobs`` runs at once (default: available CPUs // ``threads_per_run``); each subprocess gets
``OMP_NUM_THREADS = MKL_NUM_THREADS = threads_per_run`` and the engine override ``num_threads=threads_per_run`` so
runs do not oversubscribe the cores.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from varpo.experiments.evalfile import read_eval
from varpo.experiments.grid import GridPoint
from varpo.experiments.records import available_cpus, git_commit, machine, read_json, write_json, write_text

MANIFEST = "sweep.json"
CONFIG_COPY = "config.yaml"
RUNS = "runs"
EVAL_FILE = "eval.json"
LOG_FILE = "run.log"
DEFAULT_RUNNER = (sys.executable, "-m", "varpo.experiments.runner")


@dataclass
class RunOutcome:
    """What happened to one grid point in this invocation."""

    point: GridPoint
    status: str  # "done" | "failed" | "skipped" (finished in an earlier invocation) | "held" (a live run owns it)
    returncode: int | None = None
    wall_s: float | None = None
    command: list[str] = field(default_factory=list)
    error: str | None = None


def default_jobs(threads_per_run: int = 1) -> int:
    """Runs at once so that jobs × threads ≈ available CPUs (at least 1)."""
    return max(1, available_cpus() // max(1, threads_per_run))


def run_dir(sweep_dir: str | os.PathLike, point: GridPoint) -> Path:
    return Path(sweep_dir) / RUNS / point.name


def is_finished(sweep_dir: str | os.PathLike, point: GridPoint) -> bool:
    """Finished = the run's eval.json is a valid result (:func:`varpo.experiments.evalfile.read_eval`: finite
    scores; an empty, truncated, wrong-schema or NaN file is not finished and the run is redone)."""
    return read_eval(run_dir(sweep_dir, point) / EVAL_FILE)[0] is not None


def run_command(
    runner: Sequence[str], config: Path, rdir: Path, point: GridPoint, overrides: Sequence[str], threads: int
) -> list[str]:
    """The exact argv of one run (recorded in the manifest). Sweep-wide overrides come first, the point's last, so
    the grid always wins over a conflicting ``key=value`` given to the sweep."""
    return [
        *runner,
        str(config),
        "--run-dir",
        str(rdir),
        *overrides,
        f"num_threads={threads}",
        *point.overrides(),
    ]


def check_grid(
    config: str | os.PathLike, points: Sequence[GridPoint], overrides: Sequence[str] = (), threads: int = 1
) -> None:
    """Validate every run of the grid as the default runner would build it (``varpo.run.spec.validate`` on the
    config + sweep overrides + the point's overrides), before anything runs: a bad override, a weight vector of
    the wrong length for the task, an incompatible combination (``gvpo`` with ``vl_norm``) is one ValueError
    naming the run, not a sweep of failed runs. Points differing only in seed are checked once."""
    from varpo.experiments.runner import split_overrides
    from varpo.run.spec import load_config, validate

    _, engine = split_overrides(list(overrides))
    seen = set()
    for point in points:
        key = (point.variant, point.weights)
        if key in seen:
            continue
        seen.add(key)
        try:
            validate(load_config(config, [*engine, f"num_threads={threads}", *point.overrides()]), dry_run=True)
        except ValueError as err:
            raise ValueError(f"run {point.name}: {err}") from None


def run_sweep(
    config: str | os.PathLike,
    sweep_dir: str | os.PathLike,
    points: Sequence[GridPoint],
    overrides: Sequence[str] = (),
    *,
    runner: Sequence[str] | None = None,
    jobs: int | None = None,
    threads_per_run: int = 1,
    timeout: float | None = None,
    prepare: bool = True,
    prepare_jobs: int = 1,
    check: bool = True,
    argv: Sequence[str] | None = None,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """Run every unfinished point of ``points`` and return one outcome per point (grid order).

    Args:
        config: YAML config every run starts from (copied to ``SWEEP_DIR/config.yaml``).
        sweep_dir: output directory; re-running with the same directory resumes.
        points: the grid (:func:`varpo.experiments.grid.expand_grid`).
        overrides: ``key=value`` applied to every run (budget: ``max_steps=…``, ``eval_prompts=…``).
        runner: argv prefix of one run (default ``python -m varpo.experiments.runner``); tests inject a fake.
        jobs: runs at once (default :func:`default_jobs`).
        threads_per_run: torch/OpenMP threads per run.
        timeout: seconds after which a run is killed and marked failed (None: no limit).
        prepare: first call ``RUNNER CONFIG --prepare …`` once per seed (shared start model).
        prepare_jobs: prepares at once after the first (which alone builds what every seed shares, builtin:tiny).
        check: with the default runner, validate every run's config first (:func:`check_grid`).
        argv: the command line that started the sweep (recorded in the manifest).
        on_outcome: called in the main thread after each run finishes (progress display).
    """
    config = Path(config).resolve()
    sweep_dir = Path(sweep_dir).resolve()
    default_runner = runner is None or list(runner) == list(DEFAULT_RUNNER)
    runner = list(runner or DEFAULT_RUNNER)
    jobs = jobs or default_jobs(threads_per_run)
    if len({p.name for p in points}) != len(points):
        raise ValueError("the grid has duplicate points")
    if check and default_runner:
        check_grid(config, points, overrides, threads_per_run)
    config_copy = _pin_config(config, sweep_dir)
    manifest = _open_manifest(sweep_dir, config, points, overrides, runner, jobs, threads_per_run, timeout, argv)
    lock = threading.Lock()

    def record(outcome: RunOutcome) -> None:
        with lock:
            entry = manifest["runs"].setdefault(outcome.point.name, {"point": outcome.point.to_dict()})
            if outcome.status == "held":  # another live process runs it and will record it
                return
            if outcome.status == "skipped":
                entry["status"] = "done"  # finished earlier (possibly killed before the manifest was updated)
            else:
                entry.update(
                    status=outcome.status,
                    returncode=outcome.returncode,
                    wall_s=outcome.wall_s,
                    command=outcome.command,
                    error=outcome.error,
                    commit=manifest["invocations"][-1]["commit"],
                )
            write_json(sweep_dir / MANIFEST, manifest)

    outcomes: dict[str, RunOutcome] = {}
    todo = []
    for point in points:
        if is_finished(sweep_dir, point):
            outcomes[point.name] = RunOutcome(point, "skipped")
            record(outcomes[point.name])
            if on_outcome:
                on_outcome(outcomes[point.name])
        else:
            todo.append(point)

    if prepare and todo:
        manifest["invocations"][-1]["prepare"] = _prepare(
            runner, config_copy, sweep_dir, todo, overrides, threads_per_run, timeout, prepare_jobs
        )
        with lock:
            write_json(sweep_dir / MANIFEST, manifest)

    def launch(point: GridPoint) -> RunOutcome:
        rdir = run_dir(sweep_dir, point)
        held = _RunLock.acquire(rdir)
        if isinstance(held, str):  # a live runner (of this or another driver) owns the directory: leave it be
            return RunOutcome(point, "held", error=f"{rdir} is in use by {held}; not started (re-run when it ends)")
        with held:
            if rdir.exists():
                shutil.rmtree(rdir)
            rdir.mkdir(parents=True)
            cmd = run_command(runner, config_copy, rdir, point, overrides, threads_per_run)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_run), "MKL_NUM_THREADS": str(threads_per_run)}
            start = time.perf_counter()
            error = None
            with open(rdir / LOG_FILE, "w") as log:
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                rc, error = supervised(cmd, log, env=env, timeout=timeout, lock=held)
            wall = time.perf_counter() - start
        if error is None and rc != 0:
            error = f"exit status {rc}; see {rdir / LOG_FILE}"
        elif error is None and not is_finished(sweep_dir, point):
            reason = read_eval(rdir / EVAL_FILE)[1]
            error = f"exit status 0 but no valid {EVAL_FILE} ({reason}); see {rdir / LOG_FILE}"
        return RunOutcome(point, "failed" if error else "done", rc, round(wall, 3), cmd, error)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(launch, p) for p in todo]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[outcome.point.name] = outcome
            record(outcome)
            if on_outcome:
                on_outcome(outcome)
    with lock:
        manifest["invocations"][-1]["finished"] = _now()
        write_json(sweep_dir / MANIFEST, manifest)
    return [outcomes[p.name] for p in points]


def _prepare(runner, config, sweep_dir, todo, overrides, threads, timeout, jobs=1) -> dict:
    """``RUNNER CONFIG --prepare …`` once per seed: builds the start model every run of that seed shares
    (builtin:tiny, SFT warm start) before parallel runs could race to build the same cache entry. The first seed runs
    alone (it builds the base model all seeds share); the others then run ``jobs`` at a time (each builds only its
    own seed's entries). A failed prepare is recorded, not fatal: the runs then build what they need themselves (and
    fail visibly if they can't).
    """
    first_of_seed: dict[int, GridPoint] = {}
    for p in todo:
        first_of_seed.setdefault(p.seed, p)

    def one(point: GridPoint) -> tuple[str, dict]:
        cmd = [*runner, str(config), "--prepare", *overrides, f"num_threads={threads}", *point.overrides()]
        log_path = sweep_dir / "prepare" / f"seed{point.seed}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        with open(log_path, "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            rc, error = supervised(cmd, log, env=env, timeout=timeout)
            rc = rc if error is None else error
        return str(point.seed), {"returncode": rc, "wall_s": round(time.perf_counter() - start, 3)}

    points = list(first_of_seed.values())
    results = dict([one(points[0])]) if points else {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results.update(pool.map(one, points[1:]))
    return results


SUPERVISOR = Path(__file__).with_name("supervise.py")


def supervised(
    cmd: Sequence[str], log, *, env: dict | None = None, timeout: float | None = None, lock: _RunLock | None = None
) -> tuple[int | None, str | None]:
    """Run ``cmd`` (output to ``log``) under :mod:`varpo.experiments.supervise`, so that it and everything it starts
    die with this process, even on ``kill -9`` (see that module). ``lock``'s descriptor is handed down, so the run
    directory stays locked while anything of the run is alive. Returns ``(exit status, None)`` or ``(None, why)``
    after a timeout (the whole process group is killed) or when the command could not be started."""
    keep = ["--fd", str(lock.fd)] if lock is not None else []
    argv = [sys.executable, "-I", "-S", str(SUPERVISOR), str(os.getpid()), *keep, "--", *cmd]
    try:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(lock.fd,) if lock else ()
        )
    except OSError as exc:
        return None, f"could not start the runner: {exc}"
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the supervisor kills the command's process group (SIGTERM, then SIGKILL)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return None, f"killed after the {timeout:g} s timeout"
    except BaseException:  # KeyboardInterrupt in the driver: take the run down before leaving
        proc.terminate()
        raise
    if rc == 127 and "supervise: cannot start" in _tail(log):
        return None, f"could not start the runner {cmd[0]!r}"
    return rc, None


def _tail(log) -> str:
    try:
        with open(log.name, errors="replace") as f:
            return f.read()[-2000:]
    except (OSError, AttributeError, TypeError):
        return ""


class _RunLock:
    """An exclusive ``fcntl.flock`` on ``runs/<name>.lock`` (next to the run directory, so deleting the directory
    never deletes the lock). Held by the driver while it (re)creates the directory and, through the inherited
    descriptor, by the run's processes for as long as any of them lives; the kernel releases it when the last one
    exits or is killed, so a stale lock cannot outlive its run. The file records who holds it."""

    def __init__(self, file) -> None:
        self.file = file
        self.fd = file.fileno()

    @classmethod
    def acquire(cls, rdir: Path) -> _RunLock | str:
        """The lock, or a description of its live holder."""
        import fcntl

        path = rdir.with_name(rdir.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "a+")  # noqa: SIM115 - closed by __exit__
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            return holder
        file.seek(0)
        file.truncate()
        file.write(f"sweep driver pid {os.getpid()} on {platform.node()} since {_now()}")
        file.flush()
        return cls(file)

    def __enter__(self) -> _RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()  # our reference only: a run process that outlives us (it should not) keeps the lock


def load_manifest(sweep_dir: str | os.PathLike) -> dict:
    """The sweep's manifest; missing is FileNotFoundError, corrupt (see :func:`manifest_problem`) a one-line
    ValueError naming the file."""
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing or unreadable: not a sweep directory")
    manifest = read_json(path)
    problem = manifest_problem(manifest)
    if problem:
        raise ValueError(f"{path} is corrupt: {problem}")
    return manifest


def manifest_problem(manifest: object) -> str | None:
    """What makes ``manifest`` (parsed ``sweep.json``) unusable, or None: it must be a JSON object whose ``runs`` maps
    run names to entries holding their grid ``point``, and whose ``invocations`` is a list of objects."""
    if manifest is None:
        return "not valid JSON (truncated?)"
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not a manifest (a JSON object)"
    runs, invocations = manifest.get("runs"), manifest.get("invocations")
    if not isinstance(runs, dict):
        return f"'runs' is {runs!r}, not a mapping of run names"
    if not isinstance(invocations, list) or not all(isinstance(i, dict) for i in invocations):
        return "'invocations' is not a list of invocation records"
    for name, entry in runs.items():
        point = entry.get("point") if isinstance(entry, dict) else None
        try:
            GridPoint.from_dict(point)
        except (TypeError, ValueError, KeyError, AttributeError):
            return f"run {name!r} has no valid grid point ({point!r})"
    return None


def _pin_config(config: Path, sweep_dir: Path) -> Path:
    """Copy the config into the sweep; a resumed sweep whose config changed is a different experiment: refuse."""
    text = config.read_text()
    copy = sweep_dir / CONFIG_COPY
    if copy.exists() and copy.read_text() != text:
        raise ValueError(
            f"{config} differs from the config this sweep started with ({copy}); use a new sweep directory"
        )
    if not copy.exists():
        write_text(copy, text)
    return copy


def _open_manifest(sweep_dir, config, points, overrides, runner, jobs, threads, timeout, argv) -> dict:
    """Load (or start) the manifest and record this invocation. An existing ``sweep.json`` that is corrupt or
    truncated is refused, never replaced: it is the only record of the earlier invocations (argv, commit, machine)."""
    path = sweep_dir / MANIFEST
    if path.exists():
        manifest = read_json(path)
        problem = manifest_problem(manifest)
        if problem:
            raise ValueError(
                f"{path} is corrupt ({problem}); it records this sweep's earlier invocations, so it is not replaced: "
                "restore it, or move it away to start a new manifest"
            )
    else:
        manifest = {"version": 1, "config_source": str(config), "runs": {}, "invocations": []}
    manifest["config_sha256"] = hashlib.sha256((sweep_dir / CONFIG_COPY).read_bytes()).hexdigest()
    manifest["invocations"].append(
        {
            "argv": list(argv) if argv is not None else None,
            "commit": git_commit(),
            "started": _now(),
            "machine": machine(),
            "runner": runner,
            "overrides": list(overrides),
            "jobs": jobs,
            "threads_per_run": threads,
            "timeout_s": timeout,
            "points": [p.name for p in points],
        }
    )
    for p in points:
        manifest["runs"].setdefault(p.name, {"point": p.to_dict(), "status": "pending"})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep_dir / MANIFEST, manifest)
    return manifest


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
