"""A plug-in estimator with options and an anneal of its own, found only through ``VARPO_PLUGINS`` in a fresh
``varpo train`` process: ``estimator_options`` in the config reach it, the anneal is applied and logged, and an
option it does not declare is a one-line config error."""

from __future__ import annotations

import json
import os
import textwrap

from tests.extension.test_example_package import MINI, REPO, run

PLUGIN = textwrap.dedent("""
    import varpo
    from varpo.registry import Anneal
    from varpo.schedules import linear_anneal


    def tempered(batch, options):
        return options.temperature * (batch.zscores(options.eps) @ batch.wbar), batch.wbar


    varpo.register_estimator(
        "tempered",
        tempered,
        options={"temperature": 1.0},
        anneals=[Anneal("temperature", "temperature_end", linear_anneal)],
        replace=True,
    )
""")


def _env(tmp_path) -> dict[str, str]:
    (tmp_path / "tempered_plugin.py").write_text(PLUGIN)
    path = os.pathsep.join([str(tmp_path), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    return {
        **os.environ,
        "PYTHONPATH": path,
        "VARPO_PLUGINS": "tempered_plugin",
        "HF_HUB_OFFLINE": "1",
        "VARPO_CACHE": str(tmp_path / "cache"),
        "PYTHONWARNINGS": "ignore",
    }


def test_plugin_estimator_options_through_varpo_train(tmp_path):
    env = _env(tmp_path)
    config = tmp_path / "mini.yaml"
    config.write_text(
        MINI + "advantage_method: tempered\nestimator_options: {temperature: 2.0, temperature_end: 0.5}\n"
    )
    out = tmp_path / "run"
    proc = run(env, "-m", "varpo", "train", str(config), f"output_dir={out}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["temperature"] for r in records if "temperature" in r] == [2.0, 0.5]

    proc = run(env, "-m", "varpo", "train", str(config), f"output_dir={out}2", "estimator_options={temp: 2.0}")
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "advantage_method='tempered' takes its own options ['temperature', 'temperature_end']" in proc.stderr
