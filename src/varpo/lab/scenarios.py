"""Named lab scenarios and YAML configs: a scenario = a reward spec + training defaults.

A YAML config has the keys ``spec`` (arguments of :func:`varpo.lab.env.synthetic`, ``objectives`` a list of
:class:`~varpo.lab.env.Objective` fields; or ``log: <reward_log dir>``), ``train`` (:class:`LabConfig` fields),
``methods`` (list of estimator names) and ``seeds``. Unknown keys fail with one line naming them.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from varpo.lab.env import Objective, RewardSpec, from_reward_log, synthetic
from varpo.lab.train import LabConfig

SCENARIOS: dict[str, dict] = {
    "easy_hard": dict(
        doc="K=2: a hard objective (10 % initial success) next to an easy one (90 %), independent (DVAO Table 1).",
        spec=dict(objectives=[dict(name="hard", success=0.1), dict(name="easy", success=0.9)]),
    ),
    "saturating": dict(
        doc="K=2: an easy objective that saturates (60 %) and a lagging one (5 %) (SAW).",
        spec=dict(objectives=[dict(name="lagging", success=0.05), dict(name="easy", success=0.6)]),
    ),
    "length_conflict": dict(
        doc="K=2: accuracy (12 %, longer answers more accurate) against a length budget met by ~85 % "
        "(DVAO Table 1: accuracy next to length compliance).",
        spec=dict(
            objectives=[
                dict(name="accuracy", success=0.12, length_effect=0.6),
                dict(name="length", kind="length_budget", budget=12),
            ],
            lengths=[2, 16],
        ),
        train=dict(aggregation="seq_mean_token_mean"),
    ),
    "frontier": dict(
        doc="K=2 conflicting objectives (correlation -0.6; 30 % and 50 %) for the weight sweep (DVAO Fig. 3).",
        spec=dict(objectives=[dict(name="a", success=0.3), dict(name="b", success=0.5)], correlation=-0.6),
    ),
    "bottleneck8": dict(
        doc="K=8: seven objectives at 60 % (correlation 0.2) and one bottleneck at 5 % (RVPO).",
        spec=dict(
            objectives=[dict(name=f"c{i}", success=0.6) for i in range(7)] + [dict(name="bottleneck", success=0.05)],
            correlation=0.2,
        ),
    ),
    "scales": dict(
        doc="K=3 with different reward types and ranges: binary [0,1], partial [0,5], binary [-1,1].",
        spec=dict(
            objectives=[
                dict(name="binary", success=0.3),
                dict(name="partial", success=0.4, kind="partial", scale=5.0),
                dict(name="signed", success=0.5, scale=2.0, offset=-1.0),
            ]
        ),
    ),
    "lengths": dict(
        doc="K=1 correctness (30 %, longer answers slightly more accurate) with lengths 2-32 (VL Norm).",
        spec=dict(objectives=[dict(name="correct", success=0.3, length_effect=0.3)], lengths=[2, 32]),
        train=dict(method="dr_grpo"),
    ),
    "lengths_indep": dict(
        doc="As 'lengths' but length independent of correctness (VL Norm's unbiasedness premise).",
        spec=dict(objectives=[dict(name="correct", success=0.3)], lengths=[2, 32]),
        train=dict(method="dr_grpo"),
    ),
    "single": dict(
        doc="K=1 partial-credit reward (4 sub-checks, 30 %) on one-token responses (GVPO Thm 3.1).",
        spec=dict(objectives=[dict(name="score", success=0.3, kind="partial")], prompts=8, responses=16),
        train=dict(
            method="dr_grpo",
            policy_loss="gvpo",
            reference_sampling=True,
            loss_options=dict(gvpo_beta=1.0),
            lr=100.0,
            steps=400,
        ),
    ),
}

SPEC_KEYS = {"objectives", "prompts", "responses", "correlation", "lengths", "prompt_spread", "weights", "seed", "log"}
CONFIG_KEYS = {"spec", "train", "methods", "seeds", "doc"}


def build_spec(d: dict, source: str = "spec") -> RewardSpec:
    unknown = sorted(set(d) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(SPEC_KEYS)}")
    if "log" in d:
        return from_reward_log(d["log"])
    objs = d.get("objectives")
    if not isinstance(objs, list) or not objs:
        raise ValueError(f"{source}.objectives: a non-empty list of objectives is required")
    allowed = {f.name for f in fields(Objective)}
    parsed = []
    for i, o in enumerate(objs):
        if not isinstance(o, dict) or set(o) - allowed:
            raise ValueError(f"{source}.objectives[{i}]: expected a mapping with keys from {sorted(allowed)}")
        parsed.append(Objective(**o))
    kwargs = {k: v for k, v in d.items() if k != "objectives"}
    if "lengths" in kwargs:
        kwargs["lengths"] = tuple(kwargs["lengths"])
    return synthetic(parsed, **kwargs)


def build_config(d: dict, source: str = "train") -> LabConfig:
    allowed = {f.name for f in fields(LabConfig)}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    d = dict(d)
    if d.get("weights") is not None:
        d["weights"] = tuple(float(w) for w in d["weights"])
    return LabConfig(**d)


def scenario(name: str, world: int | None = None, **train_overrides) -> tuple[RewardSpec, LabConfig]:
    """The spec and default training config of a named scenario; ``world`` replaces the spec's env seed (one
    synthetic world per seed: the same statistics, a different draw of prompts, responses and rewards)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown lab scenario {name!r}; choose one of {sorted(SCENARIOS)}")
    s = SCENARIOS[name]
    spec = s["spec"] if world is None else {**s["spec"], "seed": int(world)}
    return build_spec(spec, name), build_config({**s.get("train", {}), **train_overrides}, name)


def load_yaml(path: str | Path) -> dict:
    """A lab YAML config (safe_load; one-line errors)."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{p}: cannot read lab config ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a lab config must be a mapping")
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"{p}: unknown key(s) {unknown}; allowed: {sorted(CONFIG_KEYS)}")
    if "spec" not in data:
        raise ValueError(f"{p}: missing key 'spec'")
    return data
