"""Lab claims over several synthetic worlds and under either optimizer: world-major seeds, intervals over world
means (cluster-robust), a world is an env seed, Adam really changes the step, and the CLI passes the options."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from varpo.lab import claims
from varpo.lab.policy import TabularPolicy
from varpo.lab.scenarios import scenario
from varpo.lab.train import train


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_world_means_and_cluster_interval():
    # 3 worlds x 2 seeds, world-major: world means 1, 3, 5 -> mean 3, sd 2, t(0.975, 2) = 4.303
    v = np.array([0.0, 2.0, 3.0, 3.0, 4.0, 6.0])
    np.testing.assert_allclose(claims.world_means(v, 3), [1.0, 3.0, 5.0])
    row = claims._row("a − b", "m", ">0", v, worlds=3)
    r = row.result
    assert r.n == 3 and r.estimate == pytest.approx(3.0)
    # between-world s.e. 2/√3 exceeds the pooled within-world s.e. √(1² + 0² + 1²)/3, so it is the s.e.
    assert r.se == pytest.approx(2.0 / math.sqrt(3))
    half = 4.302652729749464 * 2.0 / math.sqrt(3)
    assert r.low == pytest.approx(3.0 - half, rel=1e-6) and r.high == pytest.approx(3.0 + half, rel=1e-6)
    assert r.p == pytest.approx(0.25)  # exact sign-flip over 3 worlds, all positive: 2/2³
    # worlds that agree by chance cannot claim more precision than their seeds give: the within s.e. then counts
    same = claims._row("a − b", "m", ">0", np.array([0.0, 2.0, 0.0, 2.0, 0.0, 2.0]), worlds=3).result
    assert same.se == pytest.approx(math.sqrt(3.0) / 3)
    # one world: the unit is the seed, as before
    assert claims._row("a − b", "m", ">0", v).result.n == 6
    with pytest.raises(ValueError, match="cannot be split into 4 worlds"):
        claims.world_means(v, 4)


def test_a_world_is_an_env_seed():
    default, _ = scenario("length_conflict")
    zero, _ = scenario("length_conflict", world=0)
    one, _ = scenario("length_conflict", world=1)
    assert torch.equal(default.rewards, zero.rewards)  # world 0 is the original single world
    assert not torch.equal(zero.rewards, one.rewards)
    assert zero.rewards.shape == one.rewards.shape


def test_optimizer_option_sets_adam_and_its_step():
    assert claims._optimizer_kw(None) == {} and claims._optimizer_kw("sgd") == {}
    assert claims._optimizer_kw("adam") == dict(optimizer="adam", lr=claims.ADAM_LR)
    with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'adam'"):
        claims._optimizer_kw("rmsprop")
    # Adam's first step moves every touched logit by ≈ lr whatever the advantage scale; SGD's by lr·|gradient|
    spec, base = scenario("length_conflict", steps=1, **claims._optimizer_kw("adam"))
    h = train(spec, base, seeds=1)
    step = (h.policy.theta - TabularPolicy(spec, 1).theta).detach().abs().max().item()
    assert step == pytest.approx(claims.ADAM_LR, rel=1e-3)


def test_methods_stack_worlds_world_major_and_pair_seeds():
    methods = {"grpo": dict(method="grpo"), "dvao": dict(method="dvao")}
    runs, _ = claims._methods("length_conflict", methods, seeds=2, steps=2, worlds=2, first_world=3)
    assert runs["grpo"].satisfied.shape[1] == 4  # 2 worlds x 2 seeds
    for k, w in enumerate((3, 4)):  # block k of the stacked seeds is world w, trained with generator seed w
        spec, base = scenario("length_conflict", world=w, steps=2)
        alone = train(spec, replace(base, method="dvao"), seeds=2, seed=w)
        np.testing.assert_allclose(runs["dvao"].satisfied[-1, 2 * k : 2 * k + 2], alone.satisfied[-1])


def test_claim_over_worlds_writes_per_world_values(tmp_path):
    from varpo.cli import app

    out = tmp_path / "l7a"
    res = CliRunner().invoke(
        app,
        [
            "lab",
            "claim",
            "dvao_easy_hard",
            "--seeds",
            "2",
            "--steps",
            "2",
            "--worlds",
            "3",
            "--optimizer",
            "adam",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "result.json").read_text())
    assert data["config"]["worlds"] == [0, 1, 2] and data["config"]["optimizer"] == "adam"
    per_world = np.asarray(data["values"]["dvao − grpo: accuracy"])
    assert per_world.shape == (3, 2)
    row = next(r for r in data["rows"] if r["comparison"] == "dvao − grpo" and r["metric"] == "accuracy satisfaction")
    assert row["n"] == 3
    assert row["estimate"] == pytest.approx(per_world.mean())
    assert "lr=0.05" in data["config"]["configs"]["dvao"] and "optimizer='adam'" in data["config"]["configs"]["dvao"]


def test_claim_without_world_options_refuses_them():
    from varpo.cli import app

    res = CliRunner().invoke(app, ["lab", "claim", "gvpo_thm31", "--worlds", "2", "-o", "x"])
    assert res.exit_code == 2
    assert "has no option(s) ['--worlds']" in " ".join(res.stderr.split())
