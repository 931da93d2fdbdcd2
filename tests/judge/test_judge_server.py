"""JudgeRewards against a real OpenAI-compatible HTTP server on 127.0.0.1 (a tiny transformers model behind it):
one request per sample for K rewards, exact rubric values, cache hits, the concurrency bound, timeouts, retries,
batch deadline, malformed / partial / failing replies becoming missing values."""

from __future__ import annotations

import math
import pickle
import time

import pytest

from tests.judge.conftest import SLOW_SECONDS
from tests.timing import median_seconds
from varpo.judge import JudgeRewards, OpenAIBackend, RubricScheme, ScoreScheme, TransformersBackend, parse_dimensions
from varpo.tasks import get_task

AXES = ["accuracy", "completeness", "context_awareness"]  # criteria with quoted words: the server's keyword rule


def rubric_judge(url, cache=None, **kw):
    # generous timeouts: a loaded CI machine must not turn a healthy reply into a failure
    options = dict(concurrency=4, timeout=30.0, retries=2, backoff=0.01, batch_timeout=60.0)
    options.update(kw)
    return JudgeRewards(RubricScheme(AXES), OpenAIBackend(url, "tiny-judge"), "rubric", cache=cache, **options)


@pytest.fixture(scope="module")
def batch():
    task = get_task("rubric", axes=AXES)
    ds = task.generate(6, seed=3)
    prompts = ds["prompt"]
    # gold answers (every quoted advice word, no harm) and bad ones (the harmful suggestion only)
    bad = [f"Try {r[1]['criterion'].split(chr(39))[1]}." for r in ds["rubrics"]]
    completions = list(ds["completion"][:3]) + bad[3:]
    return prompts, completions, {"rubrics": ds["rubrics"]}


def call_all(judge, batch, **extra):
    prompts, completions, columns = batch
    return {f.__name__: f(prompts=prompts, completions=completions, **columns, **extra) for f in judge.reward_funcs}


def test_one_request_per_sample_and_exact_rubric_values(server, stats, batch):
    judge = rubric_judge(server.url())
    logged = {}
    values = call_all(judge, batch, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert stats()["requests"]["ok"] == 6  # 3 reward functions, 6 samples: 6 requests, not 18
    # keyword rule of the server: gold answers meet every positive criterion and not the harmful one -> 1.0;
    # "Try <harmful>." meets only the -4 criterion -> accuracy clip(-4/5) = 0, the others 0.
    for axis in AXES:
        assert values[axis] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], axis
    assert logged["judge/requests"] == 6 and logged["judge/failures"] == 0 and logged["judge/retries"] == 0
    assert logged["judge/latency"] > 0


def test_disk_cache_hit_on_second_call(server, stats, batch, tmp_path):
    first = call_all(rubric_judge(server.url(), cache=tmp_path / "j.sqlite"), batch)
    again = rubric_judge(server.url(), cache=tmp_path / "j.sqlite")  # new object: empty memo, same disk cache
    second = call_all(again, batch)
    assert second == first
    assert stats()["requests"]["ok"] == 6
    m = again.pop_metrics()
    assert m["judge/cache_hits"] == 6 and m["judge/requests"] == 0


def test_concurrency_bound_respected(server, stats, batch):
    judge = rubric_judge(server.url("slow"), concurrency=3, timeout=10.0)
    start = time.monotonic()
    values = call_all(judge, batch)
    elapsed = time.monotonic() - start
    s = stats()
    assert s["requests"]["slow"] == 6
    assert s["max_in_flight"] == 3  # never more than the bound, and the bound is used
    assert elapsed >= 2 * SLOW_SECONDS  # 6 requests, 3 at a time: at least two waves
    assert values["accuracy"][:3] == [1.0, 1.0, 1.0]


def test_timeout_honoured_and_retries_counted(server, batch):
    # /stall/v1 answers after 10 x SLOW_SECONDS = 6 s; two 1 s attempts must give up long before that
    # median of 3 runs (a fresh judge each: nothing cached), so one stalled scheduler slice cannot fail it
    judges = []

    def run():
        judges.append(rubric_judge(server.url("stall"), timeout=1.0, retries=1, backoff=0.0, concurrency=6))
        return call_all(judges[-1], batch)

    elapsed, values = median_seconds(run)
    judge = judges[-1]
    assert 2.0 <= elapsed < 10 * SLOW_SECONDS - 1.0
    assert all(v is None for vs in values.values() for v in vs)
    m = judge.pop_metrics()
    assert m["judge/failures"] == 6 and m["judge/retries"] == 6 and m["judge/missing"] == 18
    assert 1.0 <= m["judge/latency"] < 10 * SLOW_SECONDS - 1.0


def test_batch_deadline_bounds_an_outage(server, batch):
    judges = []

    def run():
        judges.append(rubric_judge(server.url("stall"), timeout=30.0, retries=5, batch_timeout=1.0, concurrency=2))
        return call_all(judges[-1], batch)

    elapsed, values = median_seconds(run)  # median of 3 runs, a fresh judge each
    judge = judges[-1]
    assert elapsed < 10 * SLOW_SECONDS - 2.0  # the deadline, not the 6 s stall
    assert all(v is None for vs in values.values() for v in vs)
    assert judge.pop_metrics()["judge/failures"] == 6


def test_http_500_retried_then_missing(server, stats, batch):
    judge = rubric_judge(server.url("error"), retries=2)
    values = call_all(judge, batch)
    assert all(v is None for vs in values.values() for v in vs)
    m = judge.pop_metrics()
    assert m["judge/failures"] == 6 and m["judge/retries"] == 12
    assert stats()["requests"]["error"] == 18


def test_flaky_server_recovers_through_retries(server, stats, batch, tmp_path):
    judge = rubric_judge(server.url("flaky"), cache=tmp_path / "f.sqlite")
    values = call_all(judge, batch)
    assert values["accuracy"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    m = judge.pop_metrics()
    assert m["judge/retries"] == 6 and m["judge/failures"] == 0


def test_malformed_reply_is_missing_and_not_cached(server, batch, tmp_path):
    judge = rubric_judge(server.url("malformed"), cache=tmp_path / "m.sqlite")
    values = call_all(judge, batch)
    assert all(v is None for vs in values.values() for v in vs)
    assert judge.pop_metrics()["judge/failures"] == 6
    assert len(judge.cache) == 0


def test_partial_reply_only_that_dimension_missing(server, batch):
    scheme = ScoreScheme(parse_dimensions(["quality", "conciseness", "safety", "helpfulness"]))
    judge = JudgeRewards(scheme, OpenAIBackend(server.url("partial"), "tiny-judge"), "scores", timeout=5.0)
    prompts, completions, _ = batch
    values = {f.__name__: f(prompts=prompts, completions=completions) for f in judge.reward_funcs}
    assert values["quality"] == [None] * 6  # the server drops the first key
    for name in ("conciseness", "safety", "helpfulness"):
        assert all(v is not None and 0.0 <= v <= 1.0 and math.isclose(v * 9, round(v * 9)) for v in values[name])
    m = judge.pop_metrics()
    assert m["judge/missing"] == 6 and m["judge/failures"] == 0


def test_score_judge_is_deterministic_and_pickles(server, batch):
    scheme = ScoreScheme(parse_dimensions(["quality", "conciseness"]))
    judge = JudgeRewards(scheme, OpenAIBackend(server.url(), "tiny-judge"), "tldr", timeout=5.0)
    prompts, completions, _ = batch
    refs = {"reference": ["short summary"] * 6}
    first = [f(prompts=prompts, completions=completions, **refs) for f in judge.reward_funcs]
    clone = pickle.loads(pickle.dumps(judge))  # what verl ships to reward workers
    second = [f(prompts=prompts, completions=completions, **refs) for f in clone.reward_funcs]
    assert first == second and all(v is not None for vs in first for v in vs)
    with pytest.raises(KeyError, match="reference"):
        judge.reward_funcs[0](prompts=prompts, completions=completions)


def test_unknown_endpoint_is_permanent_not_retried(server, batch):
    judge = rubric_judge(f"http://127.0.0.1:{server.port}/nowhere/v1", retries=3)
    call_all(judge, batch)
    m = judge.pop_metrics()
    assert m["judge/failures"] == 6 and m["judge/retries"] == 0


def test_transformers_backend_in_process(judge_model_dir, batch):
    judge = JudgeRewards(
        RubricScheme(AXES), TransformersBackend(str(judge_model_dir), max_tokens=8), "rubric", timeout=30.0
    )
    values = call_all(judge, batch)  # an untrained tiny model does not write JSON: every value missing, no crash
    assert all(v is None for vs in values.values() for v in vs)
    m = judge.pop_metrics()
    assert m["judge/requests"] == 6 and m["judge/failures"] == 6


def test_verl_batched_reward_function(server, stats, tmp_path):
    from varpo.verl.rewards import compute_score_batch

    options = {"axes": AXES, "judge_base_url": server.url(), "judge_model": "tiny-judge", "judge_cache": None}
    task = get_task("rubric", **options)
    ds = task.generate(4, seed=5, chat=True)
    verl = task.to_verl(ds).to_list()  # verl's parquet layout: ground_truth = the rubric, extra_info.prompt
    assert verl[0]["extra_info"]["prompt"].startswith("user: ")
    completions = list(ds["completion"][:2]) + ["I cannot help.", ""]
    out = compute_score_batch(
        data_sources=[r["data_source"] for r in verl],
        solution_strs=completions,
        ground_truths=[r["reward_model"]["ground_truth"] for r in verl],
        extra_infos=[r["extra_info"] for r in verl],
        task="rubric",
        task_options=options,
    )
    assert stats()["requests"]["ok"] == 4  # one judgment per sample for all 3 axes
    assert [o["accuracy"] for o in out] == [1.0, 1.0, 0.0, 0.0]
    for o in out:
        assert set(o) == {"score", "varpo_signal", *AXES, "length"}
        assert math.isclose(o["score"], sum(o[k] for k in (*AXES, "length")))
