"""GVPO off-policy groups in the TRL engine: buffered/external responses really join the groups, their old log-probs
are recomputed under θ_old, the loss gradient on such a group equals GVPO eq. 8, the buffer survives a resume, and
the options are validated (ppo_clip refused) and usable from the CLI/YAML."""

from __future__ import annotations

import math

import pytest
import torch

import varpo
from varpo.trl import VarpoGRPOConfig, read_metrics
from varpo.trl.replay import EXTERNAL, FRESH, HISTORY, REPLAY_FILE, ResponseBuffer, prompt_key

from .conftest import length

GVPO = dict(policy_loss="gvpo", advantage_method="dr_grpo")


class CountingLength:
    """`length` reward that records every completion it scored (to prove reused rewards are not re-scored)."""

    __name__ = "length"

    def __init__(self):
        self.seen: list[list[str]] = []

    def __call__(self, completions, **kwargs):
        self.seen.append(list(completions))
        return length(completions)


def _two_prompts(train_ds):
    return train_ds.select(range(2))  # batch of 8 = 2 prompts x G=4: every step revisits both prompts


def test_groups_hold_buffered_responses_with_reused_rewards(make_trainer, train_ds):
    reward = CountingLength()
    trainer = make_trainer(
        reward_funcs=[reward], dataset=_two_prompts(train_ds), max_steps=3, gvpo_history_per_group=2, **GVPO
    )
    trainer.train()
    rollouts = trainer.trace.rollouts
    drawn: dict[str, dict[tuple, tuple]] = {}  # prompt key -> completion ids -> reward vector when drawn
    for t, r in enumerate(rollouts):
        comp = r["composition"]
        src = torch.tensor(comp.source)
        if t == 0:  # warm-up: empty buffer, fresh only
            assert (src == FRESH).all()
        else:  # every group: G - h = 2 fresh, then h = 2 historical drawn at an earlier step
            assert src.tolist() == [FRESH, FRESH, HISTORY, HISTORY] * 2
        assert len(reward.seen[t]) == int((src == FRESH).sum())  # history rewards reused, not re-scored
        for i, s in enumerate(comp.source):
            ids = tuple(comp.ids[i])
            if s == HISTORY:
                assert ids in drawn[comp.keys[i]], "a historical response that was never generated for this prompt"
                torch.testing.assert_close(r["rewards"][i].double(), torch.tensor(drawn[comp.keys[i]][ids]).double())
                assert comp.age[i] >= 1
        for i, s in enumerate(comp.source):
            if s == FRESH:
                drawn.setdefault(comp.keys[i], {})[tuple(comp.ids[i])] = tuple(r["rewards"][i].tolist())
        # advantages are dr_grpo over the whole mixed group, as the loss sees them
        expected = varpo.compute_advantages(r["rewards"], r["group_ids"], "dr_grpo").advantages
        torch.testing.assert_close(r["advantages"], expected)
    last = [m for m in read_metrics(trainer.args.output_dir) if "loss" in m][-1]
    assert last["offpolicy/share_history"] == pytest.approx(0.5)
    assert last["offpolicy/age_mean"] >= 1 and last["offpolicy/reused_tokens"] > 0
    assert {"offpolicy/reward_fresh", "offpolicy/reward_history", "offpolicy/generated_tokens_total"} <= set(last)


def test_rescore_history_scores_every_row(make_trainer, train_ds):
    reward = CountingLength()
    trainer = make_trainer(
        reward_funcs=[reward],
        dataset=_two_prompts(train_ds),
        gvpo_history_per_group=3,
        gvpo_history_selection="uniform",
        gvpo_rescore_history=True,
        **GVPO,
    )
    trainer.train()
    comp = trainer.trace.rollouts[1]["composition"]
    assert comp.source == [FRESH, HISTORY, HISTORY, HISTORY] * 2 and len(reward.seen[1]) == 8
    torch.testing.assert_close(
        trainer.trace.rollouts[1]["rewards"][:, 0], torch.tensor(length(reward.seen[1]), dtype=torch.float32)
    )


def test_old_logprobs_recomputed_and_gradient_is_eq8(make_trainer, train_ds):
    """steps_per_generation=2 makes TRL compute old_per_token_logps in one pass over the assembled batch: the
    history rows' old log-probs are those of the current θ_old. Then, with θ moved away from θ_old, the engine's
    loss gradient on the mixed groups equals -β Σ_i [(a_i - ā) - (R_θ,i - R̄_θ)] ∇s_i / (k - 1) (eq. 8)."""
    trainer = make_trainer(
        dataset=_two_prompts(train_ds),
        max_steps=2,
        gvpo_history_per_group=2,
        steps_per_generation=2,
        per_device_train_batch_size=4,
        **GVPO,
    )
    trainer.train()  # generation at step 0 fills the buffer (2 steps per generation)
    model = trainer.model
    model.train()
    trainer.state.global_step = 5
    rows = [_two_prompts(train_ds)[i] for i in range(2) for _ in range(4)]
    batch = trainer._generate_and_score_completions(rows)
    comp = trainer.trace.rollouts[-1]["composition"]
    assert comp.source.count(HISTORY) == 4
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    width = batch["completion_ids"].shape[1]
    mask = batch["completion_mask"].double()
    with torch.no_grad():
        now, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, attn, width)
    torch.testing.assert_close(batch["old_per_token_logps"] * mask, now * mask)

    with torch.no_grad():  # θ ≠ θ_old, so the implicit rewards are non-zero
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    trainer.current_gradient_accumulation_steps = trainer.args.steps_per_generation = 1
    model.zero_grad()
    trainer._compute_loss(model, batch).backward()
    got = torch.cat([p.grad.flatten() for p in model.parameters()])

    model.zero_grad()
    logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, attn, width)
    s = (logps.double() * mask).sum(-1)
    beta, k, n = trainer.args.gvpo_beta, 4, s.shape[0]
    with torch.no_grad():
        implicit = beta * (s - (batch["old_per_token_logps"].double() * mask).sum(-1))
        a = batch["advantages"].double()
        groups = batch["varpo_group_ids"]
        weight = torch.empty_like(s)
        for g in groups.unique():
            sel = groups == g
            weight[sel] = (a[sel] - a[sel].mean()) - (implicit[sel] - implicit[sel].mean())
    (-beta * (weight * s).sum() / (k - 1) / n).backward()  # token_mean over the n sequences
    want = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert weight.abs().max() > 0 and (implicit.abs().max() > 1e-4)
    torch.testing.assert_close(got.double(), want.double(), rtol=1e-3, atol=1e-7)


def test_external_responses_join_and_are_scored(make_trainer, task):
    ds = task.generate(2, seed=1)  # keeps the gold `completion` column
    reward = CountingLength()
    trainer = make_trainer(
        reward_funcs=[reward],
        dataset=ds,
        max_steps=2,
        gvpo_history_per_group=1,
        gvpo_external_column="completion",
        **GVPO,
    )
    trainer.train()
    tok = trainer.processing_class
    golds = {
        tuple((tok(text=c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])[:12]) for c in ds["completion"]
    }
    for t, r in enumerate(trainer.trace.rollouts):
        comp = r["composition"]
        want = [FRESH, FRESH, FRESH, EXTERNAL] if t == 0 else [FRESH, FRESH, HISTORY, EXTERNAL]
        assert comp.source == want * 2
        assert {tuple(comp.ids[i]) for i, s in enumerate(comp.source) if s == EXTERNAL} == golds
        # external rows are scored by the reward function (history rows are not)
        assert len(reward.seen[t]) == comp.source.count(FRESH) + comp.source.count(EXTERNAL)
    buffered = {e.ids for key in set(comp.keys) for e in trainer.replay.buffer.entries(key)}
    assert buffered and not buffered & golds  # only fresh samples enter the buffer


def test_resume_restores_the_buffer(make_trainer, train_ds, tmp_path):
    ds = _two_prompts(train_ds)
    first = make_trainer(dataset=ds, max_steps=2, gvpo_history_per_group=2, save_strategy="steps", save_steps=2, **GVPO)
    first.train()
    saved = first.replay.state_dict()
    folder = tmp_path / "run" / "checkpoint-2"
    assert (folder / REPLAY_FILE.format(rank=0)).exists()
    second = make_trainer(dataset=ds, max_steps=3, gvpo_history_per_group=2, **GVPO)
    assert len(second.replay.buffer) == 0
    second.train(resume_from_checkpoint=str(folder))
    comp = second.trace.rollouts[0]["composition"]  # step 2, right after the resume: history from before it
    assert comp.source.count(HISTORY) == 4
    old = {(k, tuple(ids)) for k, ids, *_ in saved["buffer"]["entries"]}
    assert all((comp.keys[i], tuple(comp.ids[i])) in old for i, s in enumerate(comp.source) if s == HISTORY)


# ---- buffer unit behaviour --------------------------------------------------------------------------------------
def test_buffer_caps_eviction_staleness_and_selection():
    buf = ResponseBuffer(per_prompt=3, total=5)
    for step in range(4):
        buf.add("a", [step], [float(step)], step)
    assert [e.ids for e in buf.entries("a")] == [(1,), (2,), (3,)]  # per-prompt FIFO
    buf.add("b", [7], [0.0], 4)
    buf.add("b", [8], [1.0], 4)
    buf.add("b", [9], [2.0], 5)
    assert len(buf) == 5 and [e.ids for e in buf.entries("a")] == [(2,), (3,)]  # globally oldest went
    buf.add("b", [8], [1.0], 6)  # re-drawn: the older copy is replaced
    assert [e.ids for e in buf.entries("b")] == [(7,), (9,), (8,)] and len(buf) == 5
    assert buf.select("a", 2, step=3) == buf.entries("a")[:1]  # only entries drawn before the step
    assert [e.ids for e in buf.select("b", 1, step=7)] == [(8,)]  # most_recent
    assert buf.select("a", 2, step=6, max_staleness=2) == []  # drawn at steps 2, 3: > 2 steps old, dropped
    assert buf.entries("a") == [] and buf.num_prompts == 1
    big = ResponseBuffer(per_prompt=10, total=10)
    for i in range(9):
        big.add("c", [i], [float(8 - i), 0.0], 0)
    picked = big.select("c", 3, step=1, rule="reward_stratified", weights=[1.0, 5.0])
    assert sorted(e.rewards[0] for e in picked) == [1.0, 4.0, 7.0]  # ranks 1, 4, 7 of 9
    u1 = big.select("c", 4, step=1, rule="uniform", seed=3)
    assert u1 == big.select("c", 4, step=1, rule="uniform", seed=3) and len(set(u1)) == 4
    copy = ResponseBuffer(per_prompt=10, total=10)
    copy.load_state_dict(big.state_dict())
    assert copy.entries("c") == big.entries("c") and copy.state_dict() == big.state_dict()
    assert prompt_key([1, 2]) == prompt_key((1, 2)) != prompt_key([12])


def test_buffer_file_with_duplicate_serials_or_a_changed_k_is_one_line_naming_it(tmp_path):
    import gzip
    import json

    from varpo.trl.replay import ResponseBuffer

    state = {
        "per_prompt": 4,
        "total": 8,
        "serial": 2,
        "entries": [["a", [1], [0.5, 1.0], 0, 0], ["b", [2], [1.0, 0.0], 0, 0]],
    }
    with pytest.raises(ValueError, match="duplicate serial 0"):
        ResponseBuffer(4, 8).load_state_dict(state)
    state["entries"][1][4] = 1
    buffer = ResponseBuffer(4, 8)
    buffer.load_state_dict(state)
    assert len(buffer) == 2
    with pytest.raises(ValueError, match="has 2 components, this run has K=3 reward functions"):
        ResponseBuffer(4, 8).load_state_dict(state, num_rewards=3)
    state["entries"][1][2] = [1.0]
    with pytest.raises(ValueError, match="has 1 components, others have 2"):
        ResponseBuffer(4, 8).load_state_dict(state)
    path = tmp_path / "buf.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"buffer": state}, f)
    groups = _groups()
    with pytest.raises(ValueError, match=rf"{path}: unreadable gvpo response buffer \(ValueError: a buffered"):
        groups.load(str(path), num_rewards=2)


def _groups():
    from varpo.trl.replay import OffPolicyGroups

    return OffPolicyGroups(
        group_size=4,
        history=2,
        selection="most_recent",
        max_staleness=None,
        per_prompt=4,
        total=8,
        external_column=None,
        rescore=False,
        weights=None,
        seed=0,
        encode=list,
        eos_token_id=None,
        max_completion_length=None,
    )


def test_buffer_file_round_trip_and_torn_file(tmp_path):
    a, b = _groups(), _groups()
    a.buffer.add("k", [1, 2, 3], [0.5, 1.0], 3)
    a.save(str(tmp_path / "buf.json.gz"))
    b.load(str(tmp_path / "buf.json.gz"))
    assert b.state_dict() == a.state_dict() and not list(tmp_path.glob("*.tmp"))
    (tmp_path / "torn.json.gz").write_bytes((tmp_path / "buf.json.gz").read_bytes()[:20])
    with pytest.raises(ValueError, match="torn.json.gz: unreadable gvpo response buffer") as err:
        b.load(str(tmp_path / "torn.json.gz"))
    assert "\n" not in str(err.value)


# ---- validation and CLI -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gvpo_history_per_group": 2}, "gvpo_history_per_group=2 is invalid; allowed: 0 with policy_loss='ppo_clip'"),
        ({"gvpo_external_column": "completion"}, "gvpo_external_column='completion' is invalid; allowed: None with"),
        ({**GVPO, "gvpo_history_per_group": 4}, "at most num_generations - 1 = 3"),
        ({**GVPO, "gvpo_history_per_group": 3, "gvpo_external_column": "completion"}, "= 2 (every group keeps"),
        ({**GVPO, "gvpo_max_staleness": 4}, "gvpo_max_staleness=4 is invalid; allowed: its default None"),
        ({**GVPO, "gvpo_history_per_group": 1, "gvpo_history_selection": "best"}, "most_recent | uniform"),
        ({**GVPO, "gvpo_history_per_group": 1, "gvpo_buffer_total": 0}, "gvpo_buffer_total=0 is invalid"),
    ],
)
def test_config_validation_is_one_line(options, message, tmp_path):
    with pytest.raises(ValueError, match=None) as err:
        VarpoGRPOConfig(
            output_dir=str(tmp_path), use_cpu=True, num_generations=4, per_device_train_batch_size=8, **options
        )
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_dry_run_and_two_step_run(tmp_path):
    from typer.testing import CliRunner

    from varpo.cli import app

    from .conftest import TEST_TINY
    from .test_checkpoint import _config

    config = _config(
        tmp_path,
        max_steps=2,
        save_strategy="no",
        train_prompts=2,
        policy_loss="gvpo",
        advantage_method="dr_grpo",
    )
    runner = CliRunner()
    dry = runner.invoke(app, ["train", str(config), "gvpo_history_per_group=2", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    flat = " ".join(dry.output.replace("│", " ").split())  # rich wraps the row
    assert "groups of 4: 2+ fresh + up to 2 historical (most_recent" in flat
    assert "a prompt recurs every 1 steps" in flat  # 2 prompts, 2 per generation
    rare = runner.invoke(app, ["train", str(config), "gvpo_history_per_group=2", "train_prompts=8", "--dry-run"])
    assert "recurs every 4 steps >= max_steps=2: no history will be used" in " ".join(
        rare.output.replace("│", " ").split()
    )
    missing = runner.invoke(app, ["train", str(config), "gvpo_external_column=gold", "--dry-run"])
    assert missing.exit_code == 2 and "gvpo_external_column='gold' is not a column" in " ".join(missing.output.split())
    bad = runner.invoke(app, ["train", str(config), "gvpo_history_per_group=2", "policy_loss=ppo_clip", "--dry-run"])
    assert bad.exit_code == 2 and "gvpo_history_per_group=2 is invalid" in bad.output
    assert TEST_TINY  # the config uses the tests' tiny model
    run = runner.invoke(app, ["train", str(config), "gvpo_history_per_group=2", "gvpo_external_column=completion"])
    assert run.exit_code == 0, run.output
    steps = [m for m in read_metrics(tmp_path / "run") if "loss" in m]
    assert len(steps) == 2 and all(math.isfinite(m["loss"]) for m in steps)
    assert steps[0]["offpolicy/share_external"] == pytest.approx(0.25)
    assert steps[1]["offpolicy/share_history"] == pytest.approx(0.5)
