"""Every bad ``varpo`` invocation ends in ONE line on stderr, naming what is wrong, with exit status 2 — never a
traceback — and ``--dry-run`` rejects every value a real run would reject, before any model is built.

Each case is a separate process. Most run through ``cli_forkserver.py`` (the real entry point, forked after one
shared torch/TRL import, so ~40 processes cost seconds, not the ~10 s import each); a few run cold as
``python -m varpo`` / ``python -m varpo.experiments`` to cover the interpreter entry points themselves. All cases
run once per test session (a file lock shares the results between xdist workers); each case is its own test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
BASE = "{d}/base.yaml"  # a valid config of a 2-reward task (toolcall): every case below breaks one thing
DRY = ["train", BASE, "--dry-run"]
SWEEP = ["sweep", BASE, "--dry-run", "--methods", "grpo,dvao", "--weights", "0.5", "--seeds", "1"]

# (id, argv with {d} = a folder of bad inputs, text the one error line must contain)
CASES: list[tuple[str, list[str], str]] = [
    # tracebacks before (issue 12, item 3)
    ("num_generations_0", [*DRY, "num_generations=0"], "num_generations=0"),
    ("task_options_bogus", [*DRY, "task_options={bogus: 1}"], "task_options="),
    ("task_options_did_you_mean", [*DRY, "task=math", "task_options={max_token: 5}"], "max_token -> max_tokens?"),
    ("train_file_missing", ["train", BASE, "train_file={d}/missing.jsonl"], "train_file="),
    ("train_file_missing_hub_offline", ["train", BASE, "train_file=nohub"], "train_file="),
    ("train_file_dir", ["train", BASE, "train_file={d}/adir"], "train_file="),
    ("train_file_dir_dry", [*DRY, "train_file={d}/adir"], "train_file="),
    ("train_file_wrong_type_dry", [*DRY, "train_file={d}/notamodel.txt"], "train_file="),
    ("yaml_syntax", ["train", "{d}/syntax.yaml", "--dry-run"], "syntax.yaml': YAML syntax error at line"),
    ("yaml_null_key", ["train", "{d}/nullkey.yaml", "--dry-run"], "config key None is not a string"),
    ("yaml_int_key", ["train", "{d}/intkey.yaml", "--dry-run"], "config key 1 is not a string"),
    ("yaml_not_mapping", ["train", "{d}/list.yaml"], "expected a mapping"),
    ("yaml_not_utf8", ["train", "{d}/binary.yaml", "--dry-run"], "binary.yaml' cannot be read"),
    ("demo_config_missing", ["demo", "--config", "{d}/missing.yaml"], "'--config'"),
    ("demo_config_dir", ["demo", "--config", "{d}/adir"], "'--config'"),
    ("eval_not_a_model_file", ["eval", "{d}/notamodel.txt"], "notamodel.txt' is neither a run directory"),
    ("eval_not_a_model_dir", ["eval", "{d}/adir"], "adir' is neither a run directory"),
    ("eval_bad_run_file", ["eval", "{d}/badrun"], "run.json is unreadable"),
    # --dry-run accepted these before; a real run rejects them
    ("reward_weights_zero", [*DRY, "reward_weights=[0,0]"], "reward_weights="),
    ("reward_weights_length", [*DRY, "reward_weights=[1,1,1]"], "reward_weights="),
    ("saw_offsets_length", [*DRY, "advantage_method=saw", "saw_offsets=[0,0,0]"], "saw_offsets="),
    ("temperature_negative", [*DRY, "temperature=-1"], "temperature=-1"),
    ("learning_rate_negative", [*DRY, "learning_rate=-1"], "learning_rate=-1"),
    ("max_completion_length_0", [*DRY, "max_completion_length=0"], "max_completion_length=0"),
    ("eval_k_0", [*DRY, "eval_k=0"], "eval_k=0"),
    ("sft_corrupt_fraction", [*DRY, "sft_corrupt_fraction=1.5"], "sft_corrupt_fraction=1.5"),
    ("num_threads_negative", [*DRY, "num_threads=-1"], "num_threads=-1"),
    ("warm_start_bogus", [*DRY, "warm_start=bogus"], "warm_start='bogus'"),
    ("warm_start_file", [*DRY, "warm_start={d}/notamodel.txt"], "warm_start="),
    ("model_file", [*DRY, "model={d}/notamodel.txt"], "model="),
    ("unknown_key", [*DRY, "advantage_methd=dvao"], "unknown config key 'advantage_methd'"),
    ("bad_override_syntax", [*DRY, "noequals"], "override 'noequals' is invalid"),
    ("sft_epochs_0", ["sft", BASE, "sft_epochs=0"], "sft_epochs=0"),
    ("demo_bad_override", ["demo", "sft_demos=0"], "sft_demos=0"),
    ("train_config_missing", ["train", "{d}/missing.yaml"], "'config'"),
    ("no_such_command", ["bogus-command"], "No such command"),
    ("eval_k_option_0", ["eval", "{d}/adir", "--k", "0"], "'--k'"),
    # varpo sweep --dry-run
    ("sweep_three_weights", [*SWEEP[:6], "0.2:0.3:0.5", *SWEEP[7:]], "reward_weights="),
    ("sweep_unknown_override", [*SWEEP, "bogus_key=1"], "unknown config key 'bogus_key'"),
    ("sweep_bad_runner_key", [*SWEEP, "eval_every=x"], "eval_every="),
    ("sweep_jobs_0", [*SWEEP, "--jobs", "0"], "'--jobs'"),
    ("sweep_timeout_negative", [*SWEEP, "--timeout", "-1"], "'--timeout'"),
    ("sweep_gvpo_vl_norm", [*SWEEP, "--losses", "gvpo", "--aggregations", "vl_norm"], "loss_aggregation='vl_norm'"),
    ("sweep_bad_method", [*SWEEP, "--methods", "dvoa"], "unknown method"),
    ("sweep_config_missing", ["sweep", "{d}/missing.yaml", "--dry-run"], "'config'"),
    ("report_not_a_sweep", ["report", "{d}/adir"], "not a sweep directory"),
]
# The base config as it is passes a dry run: each case fails because of the one thing it breaks.
CONTROL = ("control", [*DRY], "ok: nothing was trained or downloaded")
# The same errors through the interpreter entry points, cold (cheap ones: they fail before the TRL import, except
# the YAML one, which proves a config error after the full import is one line too).
COLD: list[tuple[str, list[str], str]] = [
    ("cold_demo_config_missing", ["-m", "varpo", "demo", "--config", "{d}/missing.yaml"], "'--config'"),
    ("cold_experiments_jobs_0", ["-m", "varpo.experiments", *SWEEP[:3], "--jobs", "0"], "'--jobs'"),
    ("cold_yaml_syntax", ["-m", "varpo", "train", "{d}/syntax.yaml", "--dry-run"], "YAML syntax error"),
]


def _inputs(d: Path) -> None:
    (d / "adir").mkdir(parents=True, exist_ok=True)
    (d / "base.yaml").write_text("model: builtin:tiny\ntask: toolcall\nwarm_start: sft\nmax_steps: 2\n")
    (d / "badrun").mkdir(exist_ok=True)
    (d / "badrun" / "run.json").write_text('{"spec": {"task": "toolc')
    (d / "notamodel.txt").write_text("not a model\n")
    (d / "syntax.yaml").write_text("model: builtin:tiny\ntask: [toolcall\n")
    (d / "nullkey.yaml").write_text("null: 3\n")
    (d / "intkey.yaml").write_text("1: 2\n")
    (d / "list.yaml").write_text("- task\n- toolcall\n")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}


def _fill(argv: list[str], d: Path) -> list[str]:
    return [a.replace("{d}", str(d)) for a in argv]


def _run_all(d: Path) -> dict[str, dict]:
    _inputs(d)
    server = [sys.executable, str(Path(__file__).with_name("cli_forkserver.py"))]

    def cold(case):
        name, argv, _ = case
        proc = subprocess.run(
            [sys.executable, *_fill(argv, d)], cwd=d, env=_env(), capture_output=True, text=True, timeout=600
        )
        return name, {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}

    with ThreadPoolExecutor(len(COLD)) as pool:
        colds = [pool.submit(cold, c) for c in COLD]
        proc = subprocess.run(
            server,
            input=json.dumps([_fill(argv, d) for _, argv, _ in [*CASES, CONTROL]]),
            cwd=d,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = {name: r for (name, _, _), r in zip([*CASES, CONTROL], json.loads(proc.stdout), strict=True)}
        results.update(f.result() for f in colds)
    return results


@pytest.fixture(scope="session")
def cli_results(tmp_path_factory) -> tuple[dict[str, dict], Path]:
    """All cases, run once per session (the first xdist worker runs them, the others read the file)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    d, out = root / "cli_errors", root / "cli_errors.json"
    with FileLock(str(root / "cli_errors.lock")):
        if not out.exists():
            out.write_text(json.dumps(_run_all(d)))
    return json.loads(out.read_text()), d


@pytest.mark.parametrize(("name", "argv", "needle"), CASES + COLD, ids=[c[0] for c in CASES + COLD])
def test_bad_invocation_is_one_line_exit_2(cli_results, name, argv, needle):
    results, d = cli_results
    r = results[name]
    shown = f"varpo {' '.join(_fill(argv, d))}\nstdout:\n{r['stdout'][-2000:]}\nstderr:\n{r['stderr'][-4000:]}"
    assert "Traceback" not in r["stdout"] + r["stderr"], shown
    assert r["rc"] == 2, shown
    lines = [line for line in r["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert needle in lines[0], shown


def test_case_list_covers_every_entry_point():
    """≥ 25 bad invocations, over every command that takes user input."""
    commands = {argv[0] if argv[0] != "-m" else argv[2] for _, argv, _ in CASES + COLD}
    assert len(CASES) + len(COLD) >= 25
    assert {"train", "sft", "demo", "eval", "sweep", "report"} <= commands


def test_base_config_passes_dry_run(cli_results):
    results, d = cli_results
    r = results[CONTROL[0]]
    assert r["rc"] == 0 and CONTROL[2] in r["stdout"], r["stdout"][-2000:] + r["stderr"][-3000:]
