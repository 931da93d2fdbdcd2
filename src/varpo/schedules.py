"""Reward-weight schedules: the component weights ``w_k`` as a function of the optimizer step.

Answers huggingface/trl#3036 ("GRPO Reward Weight Scheduler", open; the PRs #5657/#5670 adding one were closed):
``reward_weights`` fixed for a whole run cannot express curricula such as "format first, correctness later".

Config (YAML / CLI / Python, the same mapping in the TRL config and the verl plug-in)::

    reward_weight_schedule: {type: linear, points: [[0, [0.9, 0.1]], [100, [0.5, 0.5]]]}

``points`` are ``[step, [w_1 .. w_K]]`` with strictly increasing integer steps >= 0 and finite, non-negative weights
that are not all zero. Between two points ``(s_i, a)`` and ``(s_{i+1}, b)``, with ``u = (s - s_i) / (s_{i+1} - s_i)``:

* ``linear``: ``w(s) = a + u (b - a)`` (piecewise-linear, per objective);
* ``cosine``: ``w(s) = a + (1 - cos(π u)) / 2 · (b - a)`` (half-cosine ease-in/ease-out, per objective).

Before the first point the first weights hold, after the last point the last weights. ``s`` is the number of
optimizer steps completed when a generation batch is scored — 0 for the first batch on every engine (TRL:
``state.global_step``; verl, whose ``global_steps`` counts from 1: ``global_steps - 1``, see :func:`step_of_verl`) —
so the same schedule gives the same weights to the same batch on both engines, and a resumed run gets the same
weights at the same step without any saved state. Every ``w(s)`` is a convex combination of two weight
vectors with positive sums, so it is itself valid. Estimators that adapt weights (dvao's w̃_gk = w_k σ_gk / Σ_l w_l
σ_gl, saw's w'_k ∝ w_k CV_k) use the scheduled ``w_k`` as their base weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from varpo.checks import is_real

SCHEDULE_TYPES = ("linear", "cosine")


@dataclass(frozen=True)
class WeightSchedule:
    """Piecewise ``linear`` or ``cosine`` interpolation between ``(step, weights [K])`` points."""

    type: str
    steps: tuple[int, ...]
    weights: tuple[tuple[float, ...], ...]  # [M, K]

    @property
    def num_components(self) -> int:
        return len(self.weights[0])

    def at(self, step: float) -> list[float]:
        """Weights ``[K]`` at optimizer step ``step``."""
        steps, weights = self.steps, self.weights
        if step <= steps[0]:
            return list(weights[0])
        if step >= steps[-1]:
            return list(weights[-1])
        i = max(j for j, s in enumerate(steps) if s <= step)
        u = (step - steps[i]) / (steps[i + 1] - steps[i])
        if self.type == "cosine":
            u = (1.0 - math.cos(math.pi * u)) / 2.0
        a, b = weights[i], weights[i + 1]
        return [x + u * (y - x) for x, y in zip(a, b, strict=True)]

    def as_dict(self) -> dict:
        return {"type": self.type, "points": [[s, list(w)] for s, w in zip(self.steps, self.weights, strict=True)]}


def step_of_verl(global_steps: int) -> int:
    """varpo's step (optimizer steps completed, 0 for the first batch) from verl's 1-based ``global_steps``."""
    return int(global_steps) - 1


def linear_anneal(start: float, end: float | None, step: float, total_steps: int) -> float:
    """A value annealed linearly from ``start`` at step 0 to ``end`` at the last step ``total_steps - 1``.

    ``value(s) = start + (end - start) · min(1, s / max(total_steps - 1, 1))``; ``end=None`` holds ``start``. Used
    for RVPO's soft-min temperature (``rvpo_k`` -> ``rvpo_k_end``; RVPO Fig. 4 anneals k = 0.5 -> 2.0 over training) on
    both engines, with ``s`` in the step convention above.
    """
    if end is None:
        return start
    progress = min(1.0, max(0.0, step) / max(total_steps - 1, 1))
    return start + (end - start) * progress


def parse_schedule(
    spec: Mapping | WeightSchedule | None, num_components: int | None = None, field: str = "reward_weight_schedule"
) -> WeightSchedule | None:
    """Validate a schedule mapping; every error is one line naming ``field``. ``None`` stays ``None``."""
    if spec is None or isinstance(spec, WeightSchedule):
        schedule = spec
    else:
        if not isinstance(spec, Mapping):
            raise ValueError(f"{field}={spec!r} is invalid; expected a mapping {{type: linear|cosine, points: [...]}}")
        unknown = sorted(set(spec) - {"type", "points"})
        if unknown:
            raise ValueError(f"{field}: unknown key(s) {unknown}; allowed: type, points")
        kind = spec.get("type", "linear")
        if kind not in SCHEDULE_TYPES:
            raise ValueError(f"{field}.type={kind!r} is invalid; allowed: {' | '.join(SCHEDULE_TYPES)}")
        points = spec.get("points")
        if not isinstance(points, (list, tuple)) or not points:
            raise ValueError(f"{field}.points={points!r} is invalid; expected a non-empty list of [step, [w_1, ...]]")
        steps, weights = [], []
        for i, point in enumerate(points):
            where = f"{field}.points[{i}]"
            if not (isinstance(point, (list, tuple)) and len(point) == 2 and isinstance(point[1], (list, tuple))):
                raise ValueError(f"{where}={point!r} is invalid; expected [step, [w_1, ..., w_K]]")
            step, w = point
            # finite first: int(inf) raised OverflowError (exit 1) and int(nan) a message naming no field
            if not is_real(step) or step < 0 or step != int(step):
                raise ValueError(f"{where} step={step!r} is invalid; expected an integer >= 0")
            if not w or not all(is_real(x) and x >= 0 for x in w) or not 0 < sum(w) < math.inf:
                raise ValueError(
                    f"{where} weights={list(w)!r} are invalid; expected finite numbers >= 0, not all 0, with a "
                    "finite sum"
                )
            if steps and int(step) <= steps[-1]:
                raise ValueError(f"{where} step={step!r} is invalid; steps must be strictly increasing")
            if weights and len(w) != len(weights[0]):
                raise ValueError(f"{where} has {len(w)} weights, the first point has {len(weights[0])}")
            steps.append(int(step))
            weights.append(tuple(float(x) for x in w))
        schedule = WeightSchedule(kind, tuple(steps), tuple(weights))
    if schedule is not None and num_components is not None and schedule.num_components != num_components:
        raise ValueError(
            f"{field} has {schedule.num_components} weights per point; expected K={num_components} (one per reward)"
        )
    return schedule
