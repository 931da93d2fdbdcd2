"""The public extension API: registered methods are accepted wherever a method name is validated, and the
property-test kit (varpo.testing) passes every built-in and catches broken estimators."""

from __future__ import annotations

import math

import pytest
import torch

import varpo
import varpo.testing as vt
from varpo import registry
from varpo.advantages import ESTIMATORS
from varpo.aggregation import AGGREGATORS
from varpo.experiments.grid import expand_grid
from varpo.losses import POLICY_LOSSES


@pytest.fixture()
def clean_registry():
    """Registrations are process-global; undo them so other tests see only the built-ins."""
    before = (dict(ESTIMATORS), dict(POLICY_LOSSES), dict(AGGREGATORS))
    yield
    for table, saved in zip((ESTIMATORS, POLICY_LOSSES, AGGREGATORS), before, strict=True):
        for name in set(table) - set(saved):
            del table[name]


def _mine(batch, options):
    return batch.zscores(options.eps) @ batch.wbar, batch.wbar


def test_registered_estimator_is_accepted_after_import(clean_registry):
    from varpo.experiments.grid import expand_grid
    from varpo.trl import VarpoGRPOConfig

    with pytest.raises(ValueError, match="advantage_method='mine' is invalid"):
        VarpoGRPOConfig(output_dir="/tmp/unused", advantage_method="mine")
    varpo.register_estimator("mine", _mine, multi_reward=False)
    assert VarpoGRPOConfig(output_dir="/tmp/unused", advantage_method="mine").advantage_method == "mine"
    assert [p.method for p in expand_grid("grpo,mine", "0.5", "1")] == ["grpo", "mine"]
    assert "mine" in registry.estimators() and "mine" not in registry.multi_reward_methods()
    r, ids = vt.random_batch(3)
    torch.testing.assert_close(vt.advantages("mine", r, ids), vt.advantages("ac", r, ids))


def test_registration_rejects_bad_names_and_silent_replacement(clean_registry):
    with pytest.raises(ValueError, match="identifier"):
        varpo.register_estimator("my-method", _mine)
    with pytest.raises(ValueError, match="already registered"):
        varpo.register_estimator("dvao", _mine)
    with pytest.raises(TypeError, match="callable"):
        varpo.register_estimator("x", 3)


def test_registered_aggregation_and_policy_loss(clean_registry):
    from varpo.trl import VarpoGRPOConfig

    def seq_sum(per_token_loss, mask, scale, max_length, alpha):
        return (per_token_loss * mask).sum() / (max(scale.num_seqs, 1.0) * max_length)

    varpo.register_aggregation("seq_sum_m", seq_sum, needs_max_length=True)
    loss, mask = torch.rand(3, 5, dtype=torch.float64), torch.ones(3, 5)
    torch.testing.assert_close(
        varpo.aggregate_loss(loss, mask, "seq_sum_m", max_length=5),
        varpo.aggregate_loss(loss, mask, "seq_mean_token_sum_norm", max_length=5),
    )
    with pytest.raises(ValueError, match="needs max_length"):
        varpo.aggregate_loss(loss, mask, "seq_sum_m")
    assert VarpoGRPOConfig(output_dir="/tmp/unused", loss_aggregation="seq_sum_m").loss_aggregation == "seq_sum_m"

    def reinforce(*, logprobs, advantages, mask, **ignored):
        return -(logprobs * advantages.unsqueeze(-1)), {}

    varpo.register_policy_loss("reinforce", reinforce)
    lp = torch.zeros(2, 3)
    out, _ = varpo.policy_loss("reinforce", logprobs=lp, old_logprobs=lp, advantages=torch.ones(2), mask=lp)
    assert out.shape == (2, 3)
    assert VarpoGRPOConfig(output_dir="/tmp/unused", policy_loss="reinforce").policy_loss == "reinforce"


_N, _K = 4, 2
_BAD_ESTIMATORS = {
    "extra_row": (lambda b, o: (torch.zeros(_N + 1, dtype=torch.float64), b.wbar), r"advantages of shape \(5,\)"),
    "column": (lambda b, o: (torch.zeros(_N, 1, dtype=torch.float64), b.wbar), r"advantages of shape \(4, 1\)"),
    "scalar": (lambda b, o: (torch.tensor(0.0), b.wbar), r"advantages of shape \(\)"),
    "integer": (lambda b, o: (torch.zeros(_N, dtype=torch.long), b.wbar), "torch.int64 advantages"),
    "list": (lambda b, o: ([0.0] * _N, b.wbar), "advantages as list"),
    "grad": (lambda b, o: (torch.zeros(_N, dtype=torch.float64, requires_grad=True), b.wbar), "require grad"),
    "weights": (lambda b, o: (torch.zeros(_N, dtype=torch.float64), b.wbar[:1]), r"effective weights of shape \(1,\)"),
    "no_weights": (lambda b, o: (torch.zeros(_N, dtype=torch.float64), None), "no effective weights"),
    "one_value": (lambda b, o: torch.zeros(_N), "must return \\(advantages \\[N\\], effective_weights"),
}


@pytest.mark.parametrize("case", sorted(_BAD_ESTIMATORS))
def test_registered_estimator_output_is_checked_at_the_boundary(clean_registry, case):
    """A malformed estimator output is one ValueError naming the method and what is wrong, never used silently."""
    fn, needle = _BAD_ESTIMATORS[case]
    varpo.register_estimator(f"bad_{case}", fn)
    rewards = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
    with pytest.raises(ValueError, match=rf"advantage method 'bad_{case}' .*{needle}"):
        varpo.compute_advantages(rewards, torch.tensor([0, 0, 1, 1]), f"bad_{case}")


def test_estimator_infinities_become_zero_as_documented(clean_registry):
    """docs/extending.md: non-finite values are set to 0 after the estimator (they used to saturate at ±3.4e38)."""
    varpo.register_estimator("infs", lambda b, o: (torch.tensor([math.inf, -math.inf, math.nan, 1.0]), b.wbar))
    out = varpo.compute_advantages(torch.rand(4, 2), torch.tensor([0, 0, 1, 1]), "infs")
    assert out.advantages.tolist() == [0.0, 0.0, 0.0, 1.0]
    assert out.stats["adv_max_abs"] == 1.0


def test_registered_aggregation_and_loss_outputs_are_checked(clean_registry):
    varpo.register_aggregation("per_seq", lambda loss, mask, scale, m, alpha: loss.sum(-1))
    varpo.register_aggregation("text", lambda loss, mask, scale, m, alpha: "0.5")
    loss, mask = torch.rand(3, 5), torch.ones(3, 5)
    with pytest.raises(ValueError, match=r"loss aggregation 'per_seq' returned shape \[3\]; expected a scalar"):
        varpo.aggregate_loss(loss, mask, "per_seq")
    with pytest.raises(ValueError, match=r"loss aggregation 'text' returned str; expected a scalar tensor"):
        varpo.aggregate_loss(loss, mask, "text")
    varpo.register_policy_loss("wide", lambda *, logprobs, **kw: (torch.zeros(2, 4), {}))
    varpo.register_policy_loss("bare", lambda *, logprobs, **kw: torch.zeros_like(logprobs))
    lp = torch.zeros(2, 3)
    kwargs = dict(logprobs=lp, old_logprobs=lp, advantages=torch.ones(2), mask=lp)
    with pytest.raises(ValueError, match=r"policy loss 'wide' returned a loss of shape \[2, 4\]; expected \[2, 3\]"):
        varpo.policy_loss("wide", **kwargs)
    with pytest.raises(ValueError, match=r"policy loss 'bare' must return \(loss \[B, T\] tensor, metrics dict\)"):
        varpo.policy_loss("bare", **kwargs)


@pytest.mark.parametrize("method", varpo.METHODS)
def test_kit_passes_every_builtin(method):
    # SAW's CV uses the batch mean, so it is not group-shift invariant (documented in docs/methods.md)
    vt.check_estimator(method, shift_invariant=method != "saw", seeds=range(8))


def test_kit_loop_oracle_agrees_with_ac():
    def one_group(rows, w, eps, ddof):
        out = [0.0] * len(rows)
        for j in range(len(w)):
            mu, sd = vt.mean_std([r[j] for r in rows], ddof)
            for i, r in enumerate(rows):
                if r[j] == r[j] and sd + eps:  # finite entries only (nan != nan)
                    out[i] += w[j] * (r[j] - mu) / (sd + eps)
        return out

    vt.assert_matches_oracle("ac", vt.loop_oracle(one_group), k=3)
    with pytest.raises(AssertionError, match="vs oracle"):
        vt.assert_matches_oracle("dvao", vt.loop_oracle(one_group), k=3)


def test_kit_catches_broken_estimators(clean_registry):
    def positional(batch, options):  # depends on row position
        return torch.arange(batch.rewards.shape[0], dtype=torch.float64), batch.wbar

    def raw_level(batch, options):  # uses the reward level, not the within-group deviation
        return torch.nan_to_num(batch.rewards.double()) @ batch.wbar, batch.wbar

    def leaks_missing(batch, options):  # scores a missing reward as 0, which moves its group's mean
        from varpo.stats import broadcast, segment_sum

        x = torch.nan_to_num(batch.rewards.double(), nan=0.0, posinf=0.0) @ batch.wbar
        ones = torch.ones_like(x)
        return x - broadcast(segment_sum(x, batch.index) / segment_sum(ones, batch.index), batch.index), batch.wbar

    for name, fn in [("positional", positional), ("raw_level", raw_level), ("leaks_missing", leaks_missing)]:
        varpo.register_estimator(name, fn)
    with pytest.raises(AssertionError, match="permuted rows"):
        vt.assert_permutation_invariant("positional")
    with pytest.raises(AssertionError, match="group shift"):
        vt.assert_group_shift_invariant("raw_level")
    with pytest.raises(AssertionError, match="unscorable row"):
        vt.assert_missing_values_safe("leaks_missing")


def test_hand_values_helper():
    # one group r = [0, 1, 2, 3], dr_grpo: r - mean = [-1.5, -0.5, 0.5, 1.5]
    vt.assert_hand_values("dr_grpo", [[0.0], [1.0], [2.0], [3.0]], [5, 5, 5, 5], [-1.5, -0.5, 0.5, 1.5])
    with pytest.raises(AssertionError, match="first row 0"):
        vt.assert_hand_values("dr_grpo", [[0.0], [1.0], [2.0], [3.0]], [5, 5, 5, 5], [-1.0, -0.5, 0.5, 1.5])


# ---- one no-signal rule for effective weights, and absent is not zero ----------------------------------------
@pytest.mark.parametrize("method", varpo.METHODS)
def test_effective_weights_follow_one_no_signal_rule(method):
    # component 0 varies in group 0; component 1 is constant everywhere; component 2 is missing from the batch
    nan = float("nan")
    r = torch.tensor([[1.0, 2.0, nan], [0.0, 2.0, nan], [0.5, 2.0, nan], [1.0, 2.0, nan]])
    out = varpo.compute_advantages(r, torch.tensor([0, 0, 1, 1]), method, names=["a", "b", "c"])
    assert (out.stats["weight/a"], out.stats["weight/b"], out.stats["weight/c"]) == (1.0, 0.0, 0.0)
    assert out.stats["reward_mean/b"] == 2.0 and "reward_mean/b" in out.present_stats
    per_c = {"reward_mean/c", "reward_std/c", "group_std_mean/c", "frac_signal/c"}
    per_c |= {"saw_cv/c"} if method == "saw" else set()
    assert out.absent == per_c
    assert (out.present_stats["frac_signal/a"], out.present_stats["frac_signal/b"]) == (1.0, 0.0)  # measured 0
    assert "reward_mean/c" not in out.present_stats and math.isfinite(out.stats["reward_mean/c"])
    flat = varpo.compute_advantages(r[:, 1:], torch.tensor([0, 0, 1, 1]), method, names=["b", "c"])
    assert (flat.stats["weight/b"], flat.stats["weight/c"]) == (0.0, 0.0)
    assert torch.equal(flat.advantages, torch.zeros(4))


def _config(**options):
    from varpo.trl import VarpoGRPOConfig

    return VarpoGRPOConfig(output_dir="/tmp/varpo-registry-test", use_cpu=True, report_to="none", **options)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _config(advantage_method="mine_not_registered"),
        lambda: _config(policy_loss="mine_not_registered"),
        lambda: registry.lookup({}, "mine_not_registered", "advantage method"),
        lambda: expand_grid("mine_not_registered", "0.5", "1"),
    ],
)
def test_unknown_method_error_says_how_plugins_are_found(make):
    with pytest.raises(ValueError, match="mine_not_registered") as err:
        make()
    assert "VARPO_PLUGINS=<module>" in str(err.value) and "'varpo.methods' entry point" in str(err.value)


def test_plugin_that_fails_to_import_is_one_line_exit_2(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from varpo.cli import app

    monkeypatch.setenv("VARPO_PLUGINS", "no_such_plugin_module_xyz")
    monkeypatch.setattr(registry, "_loaded", False)
    config = tmp_path / "c.yaml"
    config.write_text("advantage_method: mine_not_registered\n")
    result = CliRunner().invoke(app, ["train", str(config), "--dry-run", f"output_dir={tmp_path}/o"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: PluginError: VARPO_PLUGINS module 'no_such_plugin_module_xyz' failed to import:")
    assert "ModuleNotFoundError" in line


def test_extending_md_batch_table_names_real_attributes(clean_registry):
    """Every name in docs/extending.md's ``RewardBatch`` table exists on the batch an estimator receives."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "extending.md").read_text()
    table = text[text.index("| `RewardBatch` attribute |") :].split("\n\n")[0]
    names = [n for row in table.splitlines()[2:] for n in re.findall(r"`([\w.]+)(?:\(\w*\))?`", row.split("|")[1])]
    assert {"index.inverse", "index.num_groups", "signal"} <= set(names)
    seen = {}

    def capture(batch, options):
        seen["batch"] = batch
        return batch.zscores(options.eps) @ batch.wbar, batch.wbar

    registry.register_estimator("capture_batch", capture)
    varpo.compute_advantages(torch.rand(8, 2), torch.arange(4).repeat_interleave(2), "capture_batch")
    for name in names:
        obj = seen["batch"]
        for part in name.split("."):
            assert hasattr(obj, part), name
            obj = getattr(obj, part)
