"""The learnable K-objective testbed task (`constraints`): rules, graders, demonstrations, data, errors."""

from __future__ import annotations

import json

import pytest

import varpo.tasks
from tests.timing import median_seconds
from varpo.tasks.constraints import MAX_CHARS, WORDS


def task(**options):
    return varpo.tasks.get_task("constraints", **options)


def test_default_setting_and_names():
    t = task()
    assert t.reward_names == ["alpha", "bravo", "charlie", "length"]
    assert t.rates == [0.6, 0.35, 0.1]
    assert t.length_budget == 3  # -1 means: the number of required words
    assert t.rules_text() == "use alpha, bravo, charlie; at most 3 words"


def test_gold_completion_meets_every_rule_for_many_settings():
    settings = [
        {},
        {"k": 16},
        {"k": 32, "length_budget": None},
        {"k": 4, "kinds": ["partial", "binary", "partial", "binary"], "repeat": 4},
        {"k": 2, "scales": [3.0, 0.5, 2.0]},
    ]
    for options in settings:
        t = task(**options)
        for split in ("train", "test"):
            for row in t.generate(20, seed=3, split=split):
                scores = t.score(row["completion"], **row)
                assert scores == {f.__name__: f.high for f in t.reward_funcs}, options
                assert all(t.satisfied(row["completion"], **row).values())


def test_hand_values_binary_partial_length_and_scales():
    t = task(k=2, kinds=["binary", "partial"], repeat=3, length_budget=4, scales=[2.0, 1.0, 0.5])
    score = lambda text: t.score(text)  # noqa: E731
    assert score("alpha bravo bravo bravo") == {"alpha": 2.0, "bravo": 1.0, "length": 0.5}
    assert score("Alpha, bravo!") == {"alpha": 2.0, "bravo": pytest.approx(1 / 3), "length": 0.5}
    # too many copies: one 1/repeat step down per extra copy, never below 0
    assert score("bravo " * 4)["bravo"] == pytest.approx(2 / 3)
    assert score("bravo " * 9)["bravo"] == 0.0
    assert score("the alpha and a bravo")["length"] == 0.0  # 5 words > 4
    assert score("")["length"] == 0.5 and score("")["alpha"] == 0.0
    assert t.satisfied("alpha bravo bravo")["bravo"] is False
    assert t.satisfied("alpha bravo bravo bravo") == {"alpha": True, "bravo": True, "length": True}


def test_trl_signature_and_chat_completions():
    t = task()
    fn = t.reward_funcs[0]
    out = fn(prompts=["p"] * 3, completions=["alpha", [{"role": "assistant", "content": "x alpha"}], "bravo"])
    assert out == [1.0, 1.0, 0.0]


def test_demonstrations_hit_their_rates_and_correlation():
    t = task(k=3, rates=[0.8, 0.4, 0.05], length_budget=None)
    ds = t.demonstrations(3000, seed=1)
    sat = [t.satisfied(c) for c in ds["completion"]]
    for j, rate in enumerate(t.rates):
        observed = sum(s[WORDS[j]] for s in sat) / len(sat)
        assert abs(observed - rate) < 0.03, (WORDS[j], observed, rate)
    # positive copula correlation raises the joint rate above the product of the marginals
    corr = task(k=2, rates=[0.5, 0.5], length_budget=None, correlation=0.8)
    joint = sum(all(corr.satisfied(c).values()) for c in corr.demonstrations(3000, seed=1)["completion"]) / 3000
    assert joint > 0.25 + 0.1
    # demonstrations vary in length (fillers): the aggregation question needs short and long replies
    lengths = {len(c.split()) for c in ds["completion"]}
    assert max(lengths) - min(lengths) >= 5


def test_generation_is_deterministic_and_splits_are_disjoint():
    t = task()
    a, b = t.generate(50, seed=2), t.generate(50, seed=2)
    assert a.to_list() == b.to_list()
    train = set(t.generate(300, seed=0)["prompt"]) | set(t.generate(300, seed=1)["prompt"])
    test = set(t.generate(100, seed=0, split="test")["prompt"])
    assert not train & test
    assert t.demonstrations(20, seed=4).to_list() == t.demonstrations(20, seed=4).to_list()


@pytest.mark.parametrize(
    "options, field",
    [
        ({"k": 0}, "k"),
        ({"k": 33}, "k"),
        ({"rates": [0.5]}, "rates"),
        ({"rates": [0.5, 2.0, 0.1]}, "rates"),
        ({"kinds": ["binary", "bogus", "binary"]}, "kinds"),
        ({"scales": [1.0, 1.0]}, "scales"),
        ({"scales": [1.0, 1.0, float("nan"), 1.0]}, "scales"),
        ({"scales": [1.0, None, 1.0, 1.0]}, r"scales must be 4 positive numbers .*got \[1.0, None"),
        ({"scales": [1.0, "2", 1.0, 1.0]}, "scales must be"),
        ({"length_budget": 0}, "length_budget"),
        ({"correlation": 1.0}, "correlation"),
        ({"repeat": 1}, "repeat"),
        ({"filler_max": -1}, "filler_max"),
    ],
)
def test_bad_options_raise_one_line_naming_the_option(options, field):
    with pytest.raises(ValueError, match=field) as err:
        task(**options)
    assert "\n" not in str(err.value)


def test_hostile_completions_are_bounded_in_time_and_score_zero():
    t = task(k=32)
    hostile = [
        "alpha " * (MAX_CHARS // 6 + 10),  # over the size limit: every objective 0
        "a" * 10**6,
        "\n\t " * 10**5,
        "".join(chr(c) for c in range(0x2000, 0x2400)) * 50,
        "alpha" + "!" * 10**5,
    ]
    for text in hostile:
        # median of 5 runs: the bound is about the work (linear, no backtracking blow-up), not one scheduler stall
        seconds, scores = median_seconds(lambda text=text: t.score(text), runs=5)
        assert seconds < 0.5, (text[:20], seconds)
        if len(text) > MAX_CHARS:
            assert set(scores.values()) == {0.0}


def test_load_round_trip_verl_layout_and_bad_rows(tmp_path):
    t = task()
    ds = t.generate(5, seed=0)
    path = tmp_path / "prompts.jsonl"
    ds.to_json(str(path))
    loaded = t.load(str(path))
    assert loaded["prompt"] == ds["prompt"] and loaded["completion"] == ds["completion"]
    verl = tmp_path / "train.parquet"
    t.to_verl(ds).to_parquet(str(verl))
    back = t.load(str(verl))
    assert [p[0]["content"] for p in back["prompt"]] == [p.rstrip("\n") for p in ds["prompt"]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok\n"}) + "\n" + json.dumps({"completion": "alpha"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: row 2: missing or empty 'prompt'"):
        t.load(str(bad))
