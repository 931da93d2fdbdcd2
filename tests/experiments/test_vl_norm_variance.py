"""benchmarks/vl_norm_variance.py's core on a tiny random Qwen2 (seconds): per-sample gradients recombine into the
batch gradient of varpo's own aggregation, and the estimator statistics are right on hand-checkable cases."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from varpo.aggregation import AGGREGATIONS, aggregate_loss

ROOT = Path(__file__).resolve().parents[2]


def _load():
    path = ROOT / "benchmarks" / "vl_norm_variance.py"
    spec = importlib.util.spec_from_file_location("vl_norm_variance_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vl = _load()


def _tiny_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=24,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(cfg).eval()


def test_weights_are_the_papers_table_1():
    lengths = torch.tensor([2, 4, 8, 16])
    g, m = 4, 16
    x = {mode: vl.aggregation_weights(lengths, mode, m) for mode in AGGREGATIONS}
    lf = lengths.double()
    torch.testing.assert_close(x["token_mean"], torch.full((4,), 1 / 30, dtype=torch.float64))
    torch.testing.assert_close(x["seq_mean_token_mean"], 1 / (g * lf))
    torch.testing.assert_close(x["seq_mean_token_sum_norm"], torch.full((4,), 1 / (g * m), dtype=torch.float64))
    torch.testing.assert_close(x["vl_norm"], (1 / lf) / (m * (1 / lf).sum()))
    assert float(x["vl_norm"].sum()) == pytest.approx(1 / m)  # unbiased: Σ x_i = 1/M (§3)


def test_per_sample_gradients_recombine_into_the_aggregated_batch_gradient():
    model = _tiny_model()
    prompt = torch.tensor([1, 2, 3])
    comp = torch.tensor([[4, 5, 6, 7, 0], [8, 0, 9, 9, 9], [10, 11, 12, 0, 9], [13, 14, 15, 16, 17]])
    lengths = vl.completion_lengths(comp, eos_id=0)
    assert lengths.tolist() == [5, 2, 4, 5]  # up to and including the first EOS; none -> full width
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75])
    grads = vl.per_sample_gradients(model, prompt, comp, lengths, adv)
    params = list(model.parameters())
    assert grads.shape == (4, sum(p.numel() for p in params))
    # batch path: per-token loss −A_i log π(o_it) for the whole group, reduced by varpo's aggregate_loss
    seqs = torch.cat([prompt.repeat(4, 1), comp], 1)
    mask = torch.arange(comp.shape[1])[None] < lengths[:, None]
    for mode in AGGREGATIONS:
        model.zero_grad()
        logits = model(input_ids=seqs).logits[:, len(prompt) - 1 : -1]
        logp = torch.log_softmax(logits, -1).gather(2, comp[..., None]).squeeze(-1)
        aggregate_loss(-adv[:, None] * logp, mask, mode, max_length=8).backward()
        batch = torch.cat([p.grad.reshape(-1) for p in params])
        x = vl.aggregation_weights(lengths, mode, 8).float()
        torch.testing.assert_close(-batch, (x[:, None] * grads).sum(0), atol=1e-6, rtol=1e-4)


def test_equal_lengths_make_the_length_normalized_estimators_equal():
    lengths = torch.full((6,), 5)
    x = {mode: vl.aggregation_weights(lengths, mode, 10) for mode in AGGREGATIONS}
    # all four are proportional; token_mean, GRPO and VL Norm (α = 1) are the same 1/(G·L)
    torch.testing.assert_close(x["token_mean"], x["seq_mean_token_mean"])
    torch.testing.assert_close(x["vl_norm"], x["seq_mean_token_sum_norm"])
    rng = np.random.default_rng(0)
    g = rng.normal(size=(4 * 6, 30)) + 0.3  # 4 groups of 6 samples, non-zero mean
    gram = g @ g.T
    w = {m: np.tile(x[m].numpy(), 4) for m in AGGREGATIONS}
    st = vl.prompt_statistics(gram, w, groups=4)
    cvs = [st[m]["cv"] for m in AGGREGATIONS]
    assert max(cvs) - min(cvs) < 1e-9  # CV is scale-free: equal for proportional weights
    assert st["vl_norm"]["rho"] == pytest.approx(1.0)
    assert st["token_mean"]["rho"] == pytest.approx(10 / 5)  # 1/(G L) vs 1/(G M): M / L


def test_prompt_statistics_match_direct_computation():
    rng = np.random.default_rng(1)
    groups, gsize, d = 6, 3, 7
    g = rng.normal(size=(groups * gsize, d)) + 0.5
    lengths = rng.integers(1, 9, size=groups * gsize)
    w = {
        m: np.concatenate(
            [
                vl.aggregation_weights(torch.tensor(lengths[r * gsize : (r + 1) * gsize]), m, 8).numpy()
                for r in range(groups)
            ]
        )
        for m in AGGREGATIONS
    }
    st = vl.prompt_statistics(g @ g.T, w, groups)
    for m in AGGREGATIONS:
        est = np.stack(
            [(w[m][r * gsize : (r + 1) * gsize, None] * g[r * gsize : (r + 1) * gsize]).sum(0) for r in range(groups)]
        )
        mu = est.mean(0)
        var = ((est - mu) ** 2).sum(1).sum() / (groups - 1)
        assert st[m]["var"] == pytest.approx(var)
        assert st[m]["mean_sq"] == pytest.approx(mu @ mu - var / groups)
        assert st[m]["cv"] == pytest.approx(np.sqrt(var / (mu @ mu - var / groups)))


def test_length_profile_premise_statistics():
    g = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 2.0], [2.0, -2.0]])
    prof = vl.length_profile(g @ g.T, np.array([1, 1, 2, 2]))
    # ḡ = (2, 0): deviations 1, 1, 4, 4; projections g_i·ḡ/‖ḡ‖² = 0.5, 1.5, 1, 1
    assert prof[1] == {"n": 2, "dev_sq": 1.0, "proj": 1.0}
    assert prof[2] == {"n": 2, "dev_sq": 4.0, "proj": 1.0}


def test_summarize_decides_by_the_standard():
    # 8 prompts where vl_norm's CV is 10 % below Dr. GRPO's and equal to GRPO's: V1 established (p = 2/2⁸ before
    # Holm over the five directional rows), V3 equivalent within ±0.05
    def prompt(i):
        modes = {
            "token_mean": dict(cv=2.0, var=4.0, mean_sq=1.0, cv_naive=1.9, rho=3.0),
            "seq_mean_token_mean": dict(cv=1.8, var=3.0, mean_sq=1.0, cv_naive=1.7, rho=3.5),
            "seq_mean_token_sum_norm": dict(cv=2.0, var=4.0, mean_sq=1.0, cv_naive=1.9, rho=1.0),
            "vl_norm": dict(cv=1.8 + 0.001 * (i % 2), var=3.0, mean_sq=1.0, cv_naive=1.7, rho=1.0 + 0.01 * (i % 3 - 1)),
        }
        tert = {
            m: dict(
                short=1.0,
                long=1.0 - (0.5 + 0.01 * i if m != "vl_norm" and m != "seq_mean_token_sum_norm" else 0.0),
                long_minus_short=0.0,
            )
            for m in modes
        }
        for m in modes:
            tert[m]["long_minus_short"] = tert[m]["long"] - tert[m]["short"]
        return dict(modes=modes, tertiles=tert, var_slope_per_token=0.3)

    summary = vl.summarize([prompt(i) for i in range(8)])
    c = summary["claims"]
    v1 = c["V1 CV(vl_norm)/CV(Dr. GRPO) - 1"]
    assert v1["p"] == pytest.approx(2 / 2**8) and v1["family"] == 5
    assert v1["p_holm"] == pytest.approx(5 * 2 / 2**8) and v1["verdict"] == "established"
    assert c["V3 CV(vl_norm)/CV(GRPO) - 1"]["verdict"] == "equivalent within ±0.05"
    assert c["V6a gain long-short tertile: GRPO - Dr. GRPO"]["verdict"] == "established"
    assert c["V6c gain long-short tertile: vl_norm - Dr. GRPO"]["verdict"] == "equivalent within ±0.1"
    assert [r["id"] for r in vl.rows_of(summary)] == ["V1", "V2", "V3", "V4", "V5", "V6a", "V6b", "V6c"]
