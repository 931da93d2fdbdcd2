"""``algorithm.varpo`` parsing, whole-config checks, the launcher and the example scripts (config-validated only:
they need GPUs and model weights to run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import varpo.verl.plugin  # noqa: F401
from tests.verl.helpers import compose
from varpo.verl.settings import ConfigError, VarpoSettings, check_config
from varpo.verl.train import main, split_args, validate

ROOT = Path(__file__).parents[2]
# Paper set-ups (smoke.sh, the GPU smoke run, is tested on its own below).
EXAMPLES = sorted(p for p in (ROOT / "examples" / "verl").glob("*.sh") if p.stem != "smoke")
BASE = [
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
    "actor_rollout_ref.rollout.n=4",
]


def cfg(*overrides):
    return compose(BASE + list(overrides))


def local_files(root: Path) -> dict[str, str]:
    """Stand-ins for a cluster's data and model: every file the example scripts name under $DATA_DIR, holding rows
    in verl's layout as ``Task.to_verl`` writes them (toolcall for train/test, math elsewhere; 1024 rows, the
    largest ``data.train_batch_size`` of the examples; the pre-flight scores the first row and counts them), and a
    model directory with a config.json."""
    data, model = root / "data", root / "model"
    for rel in (
        "train.parquet",
        "test.parquet",
        "aime-2024.parquet",
        "gsm8k/train.parquet",
        "gsm8k/test.parquet",
        "math/train.parquet",
        "math/test.parquet",
    ):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(_verl_parquet("toolcall" if rel in ("train.parquet", "test.parquet") else "math"))
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    return {"DATA_DIR": str(data), "MODEL": str(model)}


_PARQUET: dict[str, bytes] = {}


def _verl_parquet(task_name: str, rows: int = 1024) -> bytes:
    if task_name not in _PARQUET:
        import io

        import datasets

        import varpo.tasks

        task = varpo.tasks.get_task(task_name)
        one = task.to_verl(task.generate(32, seed=0))
        full = datasets.concatenate_datasets([one] * (rows // 32))
        buffer = io.BytesIO()
        full.to_parquet(buffer)
        _PARQUET[task_name] = buffer.getvalue()
    return _PARQUET[task_name]


def file_overrides(root: Path) -> list[str]:
    env = local_files(root)
    return [
        f"data.train_files={env['DATA_DIR']}/train.parquet",
        f"data.val_files={env['DATA_DIR']}/test.parquet",
        f"actor_rollout_ref.model.path={env['MODEL']}",
    ]


def test_absent_block_means_defaults_and_plain_verl_configs_pass_untouched():
    assert VarpoSettings.from_algorithm(cfg().algorithm) == VarpoSettings()
    assert check_config(cfg("algorithm.adv_estimator=grpo")) == []


def test_hydra_keys_reach_the_settings():
    c = cfg(
        "algorithm.adv_estimator=varpo_saw",
        "+algorithm.varpo.reward_keys=[correctness,format]",
        "+algorithm.varpo.reward_weights=[2,1]",
        "+algorithm.varpo.saw_offsets=[3,0]",
        "+algorithm.varpo.eps=1e-4",
        "+algorithm.varpo.ddof=0",
        "+algorithm.varpo.saw_base=gdpo",
        "trainer.v1.trainer_mode=varpo",
    )
    s = VarpoSettings.from_algorithm(c.algorithm)
    assert s.reward_keys == ("correctness", "format") and s.reward_weights == (2.0, 1.0)
    assert dict(s.advantage_options) == {"eps": 1e-4, "ddof": 0, "saw_base": "gdpo", "saw_offsets": (3.0, 0.0)}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+algorithm.varpo.rvpo_kk=2"], "unknown key"),
        (["+algorithm.varpo.rvpo_k=-1"], "rvpo_k"),
        (["+algorithm.varpo.saw_base=xyz"], "saw_base"),
        (["+algorithm.varpo.reward_keys=[a,b]", "+algorithm.varpo.reward_weights=[1]"], "weights"),
        (["+algorithm.varpo.reward_keys=[a,a]"], "duplicates"),
        (["+algorithm.varpo.reward_weights=[1]"], "needs reward_keys"),
        (["+algorithm.varpo.sigma_ema_decay=0.9"], "only applies to varpo_dvao"),
        (["+algorithm.varpo.vl_norm_alpha=-1"], "alpha"),
        (["+algorithm.varpo.gvpo_beta=abc"], "number"),
        (["+algorithm.varpo.collapse_window=0"], r"^algorithm.varpo.collapse_window=0 is invalid; allowed: [^\n]*$"),
        (["+algorithm.varpo.collapse_window=ten"], "collapse_window='ten' is invalid"),
    ],
)
def test_bad_values_are_rejected_with_the_core_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(cfg("algorithm.adv_estimator=varpo_rvpo", "trainer.v1.trainer_mode=varpo", *overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["algorithm.adv_estimator=grpo", "+algorithm.varpo.eps=1e-4"], "neither"),
        (["algorithm.adv_estimator=varpo_dvao", "+algorithm.varpo.reward_keys=[a,b]"], "trainer.v1.trainer_mode=varpo"),
        (["algorithm.adv_estimator=varpo_grpo", "+algorithm.varpo.vl_norm_alpha=0.75"], "seq-mean-token-sum-norm"),
        (["actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo"], "trainer_mode=varpo"),
        (
            [
                "actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo",
                "trainer.v1.trainer_mode=varpo",
                "actor_rollout_ref.actor.use_kl_loss=true",
            ],
            "use_kl_loss",
        ),
        (
            [
                "actor_rollout_ref.actor.policy_loss.loss_mode=varpo_gvpo",
                "trainer.v1.trainer_mode=varpo",
                "algorithm.rollout_correction.rollout_is=token",
            ],
            "rollout_is",
        ),
    ],
)
def test_incompatible_combinations_fail_before_ray(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(cfg(*overrides))


def test_collapse_window_default_null_and_legacy_warning():
    assert VarpoSettings.from_algorithm(cfg().algorithm).collapse_window == 20
    base = ("algorithm.adv_estimator=varpo_gdpo", "+algorithm.varpo.reward_keys=[a,b]")
    c = cfg(*base, "trainer.v1.trainer_mode=varpo", "+algorithm.varpo.collapse_window=null")
    assert VarpoSettings.from_algorithm(c.algorithm).collapse_window is None
    c = cfg(*base, "trainer.v1.trainer_mode=varpo", "+algorithm.varpo.collapse_window=5")
    assert VarpoSettings.from_algorithm(c.algorithm).collapse_window == 5
    assert not any("collapse_window" in m for m in check_config(c))
    legacy = cfg(*base, "trainer.use_v1=false", "+algorithm.varpo.collapse_window=5")
    assert any("collapse_window has no effect" in m for m in check_config(legacy))


def test_legacy_trainer_carries_components_so_no_mode_is_needed():
    c = cfg("algorithm.adv_estimator=varpo_gdpo", "+algorithm.varpo.reward_keys=[a,b]", "trainer.use_v1=false")
    check_config(c)


def test_warnings_for_likely_mistakes():
    w = check_config(cfg("algorithm.adv_estimator=varpo_dvao"))
    assert any("single reward" in m for m in w)
    w = check_config(
        cfg(
            "algorithm.adv_estimator=varpo_grpo",
            "+algorithm.varpo.vl_norm_alpha=1",
            "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
        )
    )
    assert any("loss_scale_factor" in m for m in w)


def test_plugin_disabled_by_environment_is_an_error(monkeypatch):
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "none")
    with pytest.raises(ConfigError, match="VERL_USE_EXTERNAL_PLUGINS"):
        check_config(cfg("algorithm.adv_estimator=varpo_grpo"))


def test_split_args():
    assert split_args(["--dry-run", "a=1", "--config-name", "x", "+b=2", "--config-path=/c"]) == (
        ["a=1", "+b=2"],
        "x",
        "/c",
        True,
    )
    with pytest.raises(SystemExit):
        split_args(["--bogus"])


def test_launcher_dry_run_and_error_exit(capsys, tmp_path):
    files = file_overrides(tmp_path)
    assert main(["--dry-run", *BASE, *files, "algorithm.adv_estimator=varpo_rvpo", "+algorithm.varpo.rvpo_k=2"]) == 0
    assert "config OK" in capsys.readouterr().out
    assert (
        main(["--dry-run", *BASE, *files, "algorithm.adv_estimator=varpo_dvao", "+algorithm.varpo.reward_keys=[a,b]"])
        == 2
    )
    assert "trainer_mode=varpo" in capsys.readouterr().err
    bad = ["algorithm.adv_estimator=varpo_rvpo", "+algorithm.varpo.collapse_window=-1"]
    assert main(["--dry-run", *BASE, *files, *bad]) == 2
    assert "algorithm.varpo.collapse_window=-1 is invalid" in capsys.readouterr().err


def example_args(script: Path, tmp_path: Path) -> list[str]:
    """The command line the script hands to ``python -m varpo.verl.train`` (captured with a PYTHON shim)."""
    out = tmp_path / f"{script.stem}.args"
    shim = tmp_path / "shim.sh"
    shim.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "$ARGS_OUT"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PYTHON": str(shim), "ARGS_OUT": str(out), **local_files(tmp_path)}
    subprocess.run(["bash", str(script)], check=True, env=env)
    args = out.read_text().split("\0")[:-1]
    assert args[:2] == ["-m", "varpo.verl.train"]
    return args[2:]


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_scripts_compose_and_validate(script, tmp_path):
    overrides, name, path, dry_run = split_args(example_args(script, tmp_path))
    assert not dry_run and name == "ppo_trainer" and path is None
    c = compose(overrides)
    assert any(
        s in (c.algorithm.adv_estimator, c.actor_rollout_ref.actor.policy_loss.loss_mode)
        for s in ("varpo_dvao", "varpo_dr_grpo", "varpo_gvpo", "varpo_grpo")
    )
    validate(c)  # our checks + verl's validate_config + registry lookups


def test_examples_cover_the_papers():
    assert {p.stem for p in EXAMPLES} >= {"dvao_math", "toolrl_dvao", "gvpo_math", "vl_norm_math"}
    text = {p.stem: p.read_text() for p in EXAMPLES}
    assert "gvpo_beta=0.1" in text["gvpo_math"] and "vl_norm_alpha=0.75" in text["vl_norm_math"]
    assert "rollout.n=16" in text["dvao_math"] and "max_tokens=4000" in text["dvao_math"]
    assert all("Source:" in t for t in text.values())


def test_cli_dry_run_of_an_example_end_to_end(tmp_path):
    """The real command line, in a fresh process: bash script -> python -m varpo.verl.train --dry-run."""
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "verl" / "gvpo_math.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore", **local_files(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "config OK (adv_estimator=varpo_dr_grpo loss_mode=varpo_gvpo trainer=v1:varpo)" in proc.stdout


def test_gpu_smoke_recipe_dry_run_validates_every_run_on_cpu(tmp_path):
    """examples/verl/smoke.sh --dry-run: builds its local model and data, then every estimator's (and varpo_gvpo's)
    config passes the launcher's checks; the GPU run itself needs vLLM."""
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "verl" / "smoke.sh"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [f"varpo_{m}" for m in varpo.METHODS] + ["varpo_gvpo"]
    for name in runs:
        assert f"{name}: config OK" in proc.stdout
    assert f"dry run: {len(runs)}/{len(runs)} configs OK" in proc.stdout
    assert (tmp_path / "train.parquet").exists() and (tmp_path / "val.parquet").exists()


def test_gpu_smoke_recipe_parses_verls_console_metrics():
    import importlib.util

    spec = importlib.util.spec_from_file_location("smoke", ROOT / "examples" / "verl" / "smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    log = (
        "noise\nstep:1 - actor/pg_loss:np.float64(0.25) - varpo/weight/accuracy:0.75 - varpo/adv_std:1.0 - "
        "timing_s/gen:3.2\nstep:2 - actor/pg_loss:-1.5e-03 - varpo/rvpo_k:0.875\n"
    )
    assert smoke.step_metrics(log) == [
        {"step": 1, "actor/pg_loss": 0.25, "varpo/weight/accuracy": 0.75, "varpo/adv_std": 1.0},
        {"step": 2, "actor/pg_loss": -1.5e-03, "varpo/rvpo_k": 0.875},
    ]
    assert smoke._merge(["a=1", "+b=2", "c=3"], ["b=5", "a=0"]) == ["c=3", "b=5", "a=0"]


def test_sigma_ema_has_the_trl_name_and_the_old_verl_name_is_deprecated():
    from varpo.verl.settings import VarpoSettings

    new = VarpoSettings.from_algorithm({"varpo": {"sigma_ema": 0.8}})
    old = VarpoSettings.from_algorithm({"varpo": {"sigma_ema_decay": 0.8}})
    assert new.sigma_ema_args() == old.sigma_ema_args() == (0.8, 0.5)
    assert VarpoSettings.from_algorithm({"varpo": {"sigma_ema": True}}).sigma_ema_args() == (0.9, 0.5)
    assert not VarpoSettings.from_algorithm({"varpo": {"sigma_ema": False}}).uses_sigma_ema
    with pytest.raises(ConfigError, match="not both"):
        VarpoSettings.from_algorithm({"varpo": {"sigma_ema": 0.8, "sigma_ema_decay": 0.8}})
    base = ["algorithm.adv_estimator=varpo_dvao", "trainer.v1.trainer_mode=varpo"]
    assert any(
        "sigma_ema_decay is deprecated" in w for w in check_config(cfg(*base, "+algorithm.varpo.sigma_ema_decay=0.8"))
    )
    assert not any("deprecated" in w for w in check_config(cfg(*base, "+algorithm.varpo.sigma_ema=0.8")))
