"""The sweep grid: methods × weights × seeds × aggregations × policy losses, and the engine overrides of one point.

Command-line syntax (``varpo sweep``):

* ``--methods grpo,ac,gdpo,dvao`` — advantage estimators (``varpo.METHODS``).
* ``--weights 0.1,0.3,0.5,0.7,0.9`` — each item is either a scalar w1 for two objectives (w2 = 1 − w1, as in DVAO
  §4.4) or a colon-separated vector for any K (``0.2:0.3:0.5``).
* ``--seeds 3`` — an integer N means seeds 0..N−1; a comma list (``0,5,7``) names them.
* ``--aggregations seq_mean_token_mean,vl_norm`` and ``--losses ppo_clip,gvpo`` — optional extra axes; when omitted
  the config's own value is used and the axis does not appear in run names.

Points are ordered seed-major (all methods at seed 0 first), so a sweep stopped half-way still compares every
method on the same seeds and weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from varpo import registry


@dataclass(frozen=True)
class GridPoint:
    """One run of the sweep. ``aggregation``/``loss`` None: keep the config's value."""

    method: str
    weights: tuple[float, ...]
    seed: int
    aggregation: str | None = None
    loss: str | None = None

    @property
    def variant(self) -> str:
        """What is being compared, weights and seed aside: ``dvao``, ``dvao+vl_norm``, ``dr_grpo+gvpo``…"""
        return "+".join(p for p in (self.method, self.aggregation, self.loss) if p)

    @property
    def name(self) -> str:
        """Directory name of the run, unique within a sweep: ``dvao__w0.3-0.7__s1``."""
        return f"{self.variant}__w{'-'.join(format_weight(w) for w in self.weights)}__s{self.seed}"

    def overrides(self) -> list[str]:
        """``key=value`` overrides for the engine config (``varpo.run.spec`` field names)."""
        out = [
            f"advantage_method={self.method}",
            f"reward_weights=[{','.join(format_weight(w) for w in self.weights)}]",
            f"seed={self.seed}",
        ]
        if self.aggregation:
            out.append(f"loss_aggregation={self.aggregation}")
        if self.loss:
            out.append(f"policy_loss={self.loss}")
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = list(self.weights)
        d["variant"] = self.variant
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GridPoint:
        return cls(
            d["method"], tuple(float(w) for w in d["weights"]), int(d["seed"]), d.get("aggregation"), d.get("loss")
        )


def format_weight(w: float) -> str:
    """Shortest decimal that round-trips (0.3, 0.7, 0.333333): stable run names and overrides."""
    return format(round(float(w), 6), "g")


def split_list(text: str | Sequence[str] | None) -> list[str]:
    """``"a,b, c"`` or ``["a,b", "c"]`` -> ``["a", "b", "c"]`` (typer passes repeated options as a list)."""
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def parse_weights(text: str | Sequence[str]) -> list[tuple[float, ...]]:
    """Weight vectors from ``"0.1,0.3"`` (w2 = 1 − w1) or ``"0.2:0.3:0.5,…"``; every vector ≥ 0 with a positive sum
    and all of the same length K."""
    vectors = []
    for item in split_list(text):
        parts = [float(p) for p in item.split(":")]
        if len(parts) == 1:
            if not 0 <= parts[0] <= 1:
                raise ValueError(f"weight {item!r}: a scalar w1 must be in [0, 1] (w2 = 1 - w1)")
            parts = [parts[0], round(1.0 - parts[0], 10)]
        if not all(math.isfinite(p) and p >= 0 for p in parts) or sum(parts) <= 0:
            raise ValueError(f"weight {item!r}: weights must be finite, >= 0, with a positive sum")
        vectors.append(tuple(parts))
    if not vectors:
        raise ValueError("no weights given")
    if len({len(v) for v in vectors}) != 1:
        raise ValueError(f"weight vectors differ in length: {vectors}")
    return _unique(vectors)


def parse_seeds(text: str | int | Sequence[str]) -> list[int]:
    """``3`` -> [0, 1, 2]; ``"0,5,7"`` -> [0, 5, 7]."""
    if isinstance(text, int):
        items = [str(text)]
    else:
        items = split_list(text)
    if len(items) == 1 and not (isinstance(text, str) and "," in text):
        n = int(items[0])
        if n < 1:
            raise ValueError(f"--seeds {n}: need at least one seed")
        return list(range(n))
    return _unique([int(s) for s in items])


def _choices(kind: str, items: list[str], allowed: Sequence[str]) -> list[str]:
    bad = [i for i in items if i not in allowed]
    if bad:
        from varpo import registry

        raise ValueError(f"unknown {kind} {bad}; choose from {', '.join(allowed)}{registry.unknown_hint()}")
    return _unique(items)


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))


def expand_grid(
    methods: str | Sequence[str],
    weights: str | Sequence[str],
    seeds: str | int | Sequence[str],
    aggregations: str | Sequence[str] | None = None,
    losses: str | Sequence[str] | None = None,
) -> list[GridPoint]:
    """All grid points, seed-major, validated against the registries (built-ins + registered + plug-ins)."""
    ms = _choices("method(s)", split_list(methods), registry.estimators())
    if not ms:
        raise ValueError("no methods given")
    ws = parse_weights(weights)
    ss = parse_seeds(seeds)
    aggs = _choices("aggregation(s)", split_list(aggregations), registry.aggregations()) or [None]
    ls = _choices("policy loss(es)", split_list(losses), registry.policy_losses()) or [None]
    return [GridPoint(m, w, s, a, loss) for s in ss for w in ws for a in aggs for loss in ls for m in ms]
