"""The mechanism lab: paper propositions reproduced from the shared functions, exact seed batching, the lab really
calls the shared functions (monkeypatching changes results), reports, reward-log round trip and replay."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import varpo
from varpo import reward_log
from varpo.advantages import grpo as grpo_estimator
from varpo.lab import allocate, claims, env, metrics, report
from varpo.lab.scenarios import scenario
from varpo.lab.train import AdvantageCaller, LabConfig, _aggregate, train


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_gvpo_converges_to_theorem_3_1_optimum():
    # GVPO Thm 3.1: the minimizer of the GVPO loss with π_s = π_θ' = π_ref is π_ref·exp(R/β)/Z.
    beta = 1.0
    spec, cfg = scenario("single", steps=150, loss_options=dict(gvpo_beta=beta))
    h = train(spec, cfg, seeds=4)
    target = torch.softmax(spec.init_logits + spec.rewards[..., 0] / beta, -1)
    start = metrics.total_variation(torch.softmax(spec.init_logits, -1), target).max()
    tv = metrics.total_variation(h.policy.probs(), target).max()
    assert start > 0.05  # the optimum is far from the start
    assert tv < 1e-3


def test_dvao_propositions_hold_on_training_batches():
    spec, cfg = scenario("scales", steps=8, method="dvao")
    seen = []

    def hook(step, rewards, local, adv):
        s, n, k = rewards.shape
        for i in range(s):  # per seed, as the engine calls it
            a = {m: varpo.compute_advantages(rewards[i], local, m).advantages.double() for m in ("grpo", "ac", "dvao")}
            # Prop. 2: |A_dvao| <= |A_grpo| pointwise.
            assert bool((a["dvao"].abs() <= a["grpo"].abs() + 1e-5).all())
            # Prop. 1: per group, mean A_grpo² >= mean A_ac².
            g = cfg.group_size
            assert bool(((a["ac"] ** 2).reshape(-1, g).mean(1) <= (a["grpo"] ** 2).reshape(-1, g).mean(1) + 1e-5).all())
            seen.append(float((a["dvao"].abs() < a["grpo"].abs() - 1e-3).float().mean()))

    train(spec, cfg, seeds=3, hook=hook)
    assert len(seen) == 24 and np.mean(seen) > 0.3  # the bound is strict on most samples, not only equal


def test_monkeypatched_estimator_changes_the_lab(monkeypatch):
    spec, cfg = scenario("easy_hard", steps=10)
    base = train(spec, cfg, seeds=4).all_rate[-1]
    # An estimator registered in the shared registry is used by name, and its (reversed) sign changes learning.
    monkeypatch.setitem(
        varpo.advantages.ESTIMATORS,
        "reversed",
        lambda b, o: tuple(-x if i == 0 else x for i, x in enumerate(grpo_estimator(b, o))),
    )
    rev = train(spec, replace(cfg, method="reversed"), seeds=4).all_rate[-1]
    assert rev.mean() < base.mean() - 0.05
    # A patched varpo.compute_advantages (zero advantages) leaves the policy where it started.
    zero = lambda rewards, ids, method, **kw: varpo.AdvantageOutput(torch.zeros(rewards.shape[0]), {})  # noqa: E731
    monkeypatch.setattr(varpo, "compute_advantages", zero)
    h = train(spec, cfg, seeds=2)
    np.testing.assert_allclose(h.all_rate[-1], h.all_rate[0], atol=1e-12)


def test_seed_batching_is_exact():
    spec, _ = scenario("easy_hard")
    torch.manual_seed(0)  # a fixed draw: on a rare draw every seed has the same batch CV and saw stacks exactly
    rewards = spec.rewards[torch.randint(0, 16, (3, 16)), torch.randint(0, 32, (3, 16))]  # [S=3, N=16, K]
    local = torch.arange(4).repeat_interleave(4)
    stacked = (torch.arange(3).unsqueeze(1) * 4 + local).reshape(-1)
    for method, separable in (("grpo", True), ("dvao", True), ("gdpo", False), ("saw", False)):
        caller = AdvantageCaller(LabConfig(method=method, group_size=4), None, ["hard", "easy"])
        adv, _ = caller(rewards, local, stacked)
        assert caller.stacked is separable, method
        for i in range(3):
            torch.testing.assert_close(adv[i], varpo.compute_advantages(rewards[i], local, method).advantages.double())
    # One aggregate_loss call with a shared scale equals the per-seed sum when every seed's mask is the same.
    per_token, mask = torch.randn(3 * 8, 5), torch.ones(3 * 8, 5)
    for mode in varpo.AGGREGATIONS:
        cfg = LabConfig(aggregation=mode)
        one = _aggregate(cfg, per_token, mask, 3, True, 5)
        loop = _aggregate(cfg, per_token, mask, 3, False, 5)
        torch.testing.assert_close(one, loop)


def test_token_level_policy_sums_to_sequence_logprob():
    spec = env.synthetic([env.Objective("a", 0.3)], prompts=3, responses=5, lengths=(1, 6), seed=1)
    from varpo.lab.policy import TabularPolicy

    pol = TabularPolicy(spec, 2)
    with torch.no_grad():
        pol.theta.normal_()
    p, r = torch.randint(0, 3, (2, 7)), torch.randint(0, 5, (2, 7))
    lp, mask = pol.token_logprobs(p, r)
    seq = pol.log_probs()[torch.arange(2).unsqueeze(1), p, r]
    torch.testing.assert_close((lp * mask).sum(-1), seq)
    torch.testing.assert_close(mask.sum(-1), spec.lengths[p, r].double())


def test_synthetic_rates_scales_and_errors():
    objs = [
        env.Objective("a", 0.2),
        env.Objective("b", 0.7, kind="partial", scale=5.0),
        env.Objective("c", 0.5, offset=-1.0, scale=2.0),
    ]
    spec = env.synthetic(objs, prompts=64, responses=64, prompt_spread=0.3, seed=3)
    np.testing.assert_allclose(spec.initial_rates()[0].item(), 0.2, atol=0.04)
    assert float(spec.rewards[..., 1].max()) == 5.0 and float(spec.rewards[..., 2].min()) == -1.0
    with pytest.raises(ValueError, match="objective 'x': success"):
        env.Objective("x", 1.5)
    with pytest.raises(ValueError, match="sigma_ema"):
        LabConfig(options=dict(sigma_ema=None))


def test_claim_report_is_written(tmp_path):
    result = claims.dvao_bounds(seeds=2, steps=3)
    path = report.write(result, tmp_path / "out", command="varpo lab claim dvao_bounds", commit="abc")
    text = path.read_text()
    assert (
        "| comparison | expected | metric | estimate | se | 95% CI | n | test | p | p_holm | family | MDE | verdict |"
        in text
    )
    assert "| dvao − grpo | <0 | dvao − grpo: mean A² over training |" in text
    assert "\\|A_dvao\\|" in text  # pipes in cells are escaped
    assert "family = its 3 directional rows" in text
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    assert {r["comparison"] for r in data["rows"]} >= {"dvao − grpo", "dvao − gdpo"}
    directional = [r for r in data["rows"] if r["expected"] == "<0"]
    # 2 seeds: the smallest exact sign-flip p is 2/4 = 0.5, so nothing can be established; Holm over the 3 rows
    assert [r["family"] for r in directional] == [3, 3, 3] and all(r["p"] >= 0.5 for r in directional)
    assert all(r["verdict"].startswith("not established") for r in directional)
    assert data["config"]["checks"]["p2_viol"] == 0
    assert (tmp_path / "out" / "adv_sq.png").stat().st_size > 1000
    assert [row["method"] for row in data["table"]] == ["grpo", "gdpo", "dvao", "ac"]  # every method run


def test_rows_are_decided_by_the_one_standard():
    rows = [
        claims._row("a − b", "x", ">0", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),  # all 6 positive: p = 2/64
        claims._row("a − b", "y", "<0", [0.3, 0.1, 0.2, 0.4, 0.5, 0.6]),  # reverse sign, same p
        claims._row("a − b", "z", ">0", [0.1, -0.1, 0.2, -0.2, 0.0, np.nan]),  # sum 0: p = 1; the NaN seed dropped
        claims._row("a − b", "w", "~0:0.5", [0.1, -0.1, 0.0]),  # equivalence: not in the Holm family
    ]
    claims.decide(rows)
    x, y, z, w = (r.result for r in rows)
    assert x.p == pytest.approx(2 / 64) and x.family == 3 and x.p_holm == pytest.approx(3 * 2 / 64)
    assert x.estimate == pytest.approx(0.35) and x.se == pytest.approx(np.std([1, 2, 3, 4, 5, 6], ddof=1) / 10 / 6**0.5)
    assert rows[0].verdict.startswith("not established")  # 0.094 after Holm over 3 rows: 6 seeds are too few
    assert z.n == 5 and z.p == pytest.approx(1.0) and z.p_holm == pytest.approx(1.0)
    assert w.family == 1 and rows[3].verdict == "established (equivalent within ±0.5)"
    more = [claims._row("a − b", "x", ">0", np.arange(1, 11) / 10), claims._row("a − b", "y", ">0", -np.arange(1, 11))]
    claims.decide(more)  # 10 seeds: p = 2/1024 each, Holm 2 x 2/1024 < 0.05
    assert more[0].result.p_holm == pytest.approx(4 / 1024) and more[0].verdict == "established"
    assert more[1].verdict == "refuted (reverse)"
    assert claims.decide(more)[0].result.p_holm == pytest.approx(4 / 1024)  # idempotent
    with pytest.raises(ValueError, match="unknown expected direction '>>0'"):
        claims._row("a", "b", ">>0", [1.0])


def test_reward_log_round_trip_replay_and_spec(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "reward_log"
    batches = []
    for step in range(3):
        r = (rng.random((16, 2)) < [0.2, 0.8]).astype(np.float32)
        r[0, 1] = np.nan  # a missing component
        ids = np.repeat(np.arange(4), 4)
        reward_log.append(
            d,
            step=step,
            rewards=r,
            group_ids=ids,
            names=["hard", "easy"],
            weights=[0.5, 0.5],
            lengths=rng.integers(1, 9, 16),
        )
        batches.append(r)
    back = reward_log.read(d)
    assert [b.step for b in back] == [0, 1, 2] and back[0].names == ("hard", "easy")
    np.testing.assert_array_equal(back[1].rewards, batches[1])
    rows = allocate.replay(d, ["grpo", "dvao"])
    assert rows[0]["weight/hard"] == pytest.approx(0.5)
    expected = np.mean(
        [
            varpo.compute_advantages(
                torch.from_numpy(b.astype(np.float64)),
                torch.from_numpy(np.repeat(np.arange(4), 4)),
                "dvao",
                weights=[0.5, 0.5],
                names=["hard", "easy"],
            ).stats["weight/easy"]
            for b in batches
        ]
    )
    assert rows[1]["weight/easy"] == pytest.approx(expected)
    spec = env.from_reward_log(d)
    assert spec.shape == (12, 4, 2) and bool(spec.satisfied[..., 0].any())
    alloc = allocate.allocation(spec, ["grpo"], LabConfig(steps=2, prompts_per_step=4, group_size=4), seeds=2)
    assert alloc[0].neglected in ("hard", "easy")
    (d / "batch_0000003.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="batch_0000003.npz: unreadable"):
        reward_log.read(d)


def test_cli_allocate_run_and_errors(tmp_path):
    from varpo.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "lab",
            "allocate",
            "--success",
            "0.1,0.9",
            "--names",
            "hard,easy",
            "--seeds",
            "4",
            "--steps",
            "3",
            "--methods",
            "grpo,dvao",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "neglects" in res.output and "dvao" in res.output
    res = runner.invoke(
        app, ["lab", "run", "easy_hard", "--methods", "grpo,dvao", "--seeds", "3", "--steps", "2", "-o", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    assert "| dvao − grpo | >0 | dvao − grpo: all-objectives rate | " in (tmp_path / "report.md").read_text()
    bad = runner.invoke(app, ["lab", "allocate", "--success", "0.1,1.5"])
    assert bad.exit_code == 2 and "success must be in (0, 1)" in bad.output


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["allocate", "--success", "0.1,0.9", "--seeds", "0"], "--seeds"),
        (["allocate", "--success", "0.1,0.9", "--seeds", "-3"], "--seeds"),
        (["run", "easy_hard", "--seeds", "-3"], "--seeds"),
        (["claim", "vl_norm", "--seeds", "0", "-o", "x"], "--seeds"),
        (["allocate", "--success", "0.1,0.9,0.5", "--names", "a,b"], "--names has 2 values for 3 objectives"),
        (["allocate", "--success", "0.1,0.9", "--kind", "binary,partial,binary"], "--kind has 3 values for 2"),
        (["allocate", "--success", "0.1,0.9", "--correlation", "1.5"], "correlation must be finite and in [-1, 1]"),
        (["allocate", "--success", "0.1,0.9", "--correlation", "nan"], "correlation must be finite and in [-1, 1]"),
        (["allocate", "nope"], "nope"),
    ],
)
def test_cli_errors_are_one_line_on_stderr_with_status_2(argv, needle):
    from varpo.cli import app

    res = CliRunner().invoke(app, ["lab", *argv])
    assert res.exit_code == 2, res.output
    assert needle in " ".join(res.stderr.split()) and res.stdout == ""
    assert res.exception is None or isinstance(res.exception, SystemExit)


def _log(d, k=2, rows=8, weights=None, step=0):
    reward_log.append(
        d,
        step=step,
        rewards=np.tile(np.eye(2, k, dtype=np.float32), (rows // 2, 1))[:rows],
        group_ids=np.repeat(np.arange(max(rows // 4, 1)), 4)[:rows],
        names=[f"o{j}" for j in range(k)],
        weights=weights,
    )


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("truncated", "batch_0000000.npz: unreadable (BadZipFile"),
        ("changing_k", "batch_0000001.npz: objectives ('o0', 'o1', 'o2') differ from the first file's"),
        ("weights", "batch_0000000.npz: weights (3,) for K=2 objectives"),
        ("empty", "batch_0000000.npz: holds 0 samples"),
        ("all_missing", "objective(s) ['o1'] are missing in every logged sample"),
    ],
)
def test_reward_log_errors_name_the_file(tmp_path, damage, needle):
    d = tmp_path / "log"
    if damage == "truncated":
        _log(d)
        path = next(d.glob("*.npz"))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "changing_k":
        _log(d)
        _log(d, k=3, step=1)
    elif damage == "weights":
        _log(d, weights=[1.0, 1.0, 1.0])
    elif damage == "empty":
        _log(d, rows=0)
    else:
        reward_log.append(
            d,
            step=0,
            rewards=np.array([[1.0, np.nan]] * 4, dtype=np.float32),
            group_ids=np.zeros(4, dtype=np.int64),
            names=["o0", "o1"],
        )
    with pytest.raises(ValueError, match=re.escape(needle)) as err:
        env.from_reward_log(d)
    assert str(d) in str(err.value)
    if damage != "all_missing":
        with pytest.raises(ValueError, match=re.escape(needle)):
            allocate.replay(d, ["grpo"])


def test_claim_report_index_axes_have_integer_ticks(tmp_path, monkeypatch):
    """A 4-record curve is drawn against integer record indices (the default locator puts ticks at 0.5, 1.5, …)."""
    result = claims.ClaimResult(
        "t", "t", curves={"adv_sq": {"grpo": [0.4, 0.3, 0.35, 0.2], "dvao": [0.3, 0.2, 0.2, 0.1]}}
    )
    closed = []
    real_close = report.plt.close
    monkeypatch.setattr(report.plt, "close", lambda fig: (closed.append(fig), real_close(fig)))
    report.write(result, tmp_path)
    (fig,) = closed
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_replay_leaves_out_statistics_a_batch_does_not_have(tmp_path):
    """A logged batch without any scorable sample has no advantage statistics: the replay mean is over the batches
    that have them, not pulled toward a placeholder 0."""
    d = tmp_path / "reward_log"
    ids = np.repeat(np.arange(2), 4)
    good = np.array([[0, 1], [1, 1], [1, 0], [0, 0], [1, 1], [0, 1], [1, 0], [0, 0]], dtype=np.float32)
    for step, r in enumerate([good, np.full((8, 2), np.nan, dtype=np.float32)]):
        reward_log.append(d, step=step, rewards=r, group_ids=ids, names=["a", "b"], weights=[0.5, 0.5])
    (row,) = allocate.replay(d, ["grpo"])
    alone = varpo.compute_advantages(torch.from_numpy(good.astype(np.float64)), torch.from_numpy(ids), "grpo")
    assert row["batches"] == 2
    assert row["adv_sq_mean"] == pytest.approx(alone.stats["adv_sq_mean"]) and row["adv_sq_mean"] > 0
    assert row["adv_max_abs"] == pytest.approx(alone.stats["adv_max_abs"])


def test_cli_allocate_per_objective_flags_and_log_prompts(tmp_path):
    """``--scale 1`` applies to every objective; a wrong count is one line; ``--log`` with fewer logged prompts than
    the default 8 per step runs with ``--prompts-per-step``, and the error names that flag."""
    from varpo.cli import app

    runner = CliRunner()
    base = ["lab", "allocate", "--success", "0.1,0.9", "--seeds", "2", "--steps", "2", "--methods", "grpo"]
    assert runner.invoke(app, [*base, "--scale", "1"]).exit_code == 0
    bad = runner.invoke(app, [*base, "--scale", "1,2,3"])
    assert bad.exit_code == 2 and "--scale has 3 values for 2 objectives" in bad.output
    assert "list index" not in runner.invoke(app, [*base, "--names", "a"]).output
    d = tmp_path / "log"
    rng = np.random.default_rng(0)
    for step in range(1):  # 4 logged prompts
        rewards = (rng.random((16, 2)) < [0.2, 0.8]).astype(np.float32)
        reward_log.append(d, step=step, rewards=rewards, group_ids=np.repeat(np.arange(4), 4), names=["a", "b"])
    log = ["lab", "allocate", "--log", str(d), "--seeds", "2", "--steps", "2", "--methods", "grpo"]
    refused = runner.invoke(app, log)
    assert refused.exit_code == 2 and "--prompts-per-step" in refused.output
    res = runner.invoke(app, [*log, "--prompts-per-step", "4"])
    assert res.exit_code == 0, res.output
    help_text = runner.invoke(app, ["lab", "replay", "--help"]).output
    assert "Comma list of advantage estimators" in " ".join(help_text.split())
