"""What a judge is asked and how its JSON answer becomes K rewards in [0, 1].

:class:`ScoreScheme` — K named dimensions, each an integer score in ``[low, high]`` (SAW's TL;DR judge: quality and
conciseness). The judge returns ``{"<dim>": {"score": s}, ...}`` (a bare number per key is accepted too);
normalisation is linear, ``r = (s - low) / (high - low)`` in [0, 1]; a score outside ``[low, high]``, a missing key
or a non-number makes that dimension missing (None) for that sample.

:class:`RubricScheme` — per-prompt rubrics in HealthBench's layout (Arora et al. 2025): criteria
``{"criterion", "points", "tags"}`` with positive or negative points and an ``axis:<name>`` tag. The judge answers
met / not met per criterion (``{"c1": true, ...}``, all criteria of a sample in one call). Per axis ``a``:

    r_a = clip( Σ_{i ∈ a, met_i} points_i  /  Σ_{i ∈ a, points_i > 0} points_i , 0, 1 )

which is HealthBench's score (achieved / total possible positive points) restricted to the axis's criteria.
Departures, on purpose: HealthBench clips only the final mean over examples, varpo clips each sample's axis score so
every reward lies in [0, 1]; an axis with no positive-point criterion in a rubric (nothing to earn) is missing for
that prompt, as HealthBench's per-tag score is None there; an axis any of whose criteria got no valid verdict is
missing (a partial verdict would bias the ratio).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from varpo.checks import is_real
from varpo.judge.parse import read_scores, read_verdicts

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = {"score", "prompt", "completion", "completions", "prompts"}
HEALTHBENCH_AXES = ("accuracy", "completeness", "communication_quality", "context_awareness", "instruction_following")


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in RESERVED:
        raise ValueError(
            f"{what} {name!r} is invalid; use a Python identifier other than {sorted(RESERVED)} (it names a reward)"
        )
    return name


@dataclass(frozen=True)
class Dimension:
    """One judged score: the JSON key / reward name, its integer range and what the judge is told it means."""

    name: str
    low: float = 1.0
    high: float = 10.0
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "judge dimension")
        if not (is_real(self.low) and is_real(self.high) and self.high > self.low):
            raise ValueError(
                f"judge dimension {self.name!r}: range [{self.low}, {self.high}] is invalid (need low < high)"
            )


def parse_dimensions(spec: Any, default_range: Sequence[float] = (1, 10)) -> list[Dimension]:
    """``judge_dimensions`` from a config: names (``[quality, conciseness]``), ``"name:low:high"`` strings, or
    mappings ``{name, low, high, description}``."""
    if isinstance(spec, str):
        spec = [s for s in spec.split(",") if s.strip()]
    if not isinstance(spec, Sequence) or not spec:
        raise ValueError("judge_dimensions must be a non-empty list of dimension names or {name, low, high} mappings")
    low, high = (float(v) for v in default_range)
    dims = []
    for item in spec:
        if isinstance(item, Mapping):
            unknown = set(item) - {"name", "low", "high", "description"}
            if unknown:
                raise ValueError(f"judge_dimensions entry {dict(item)}: unknown key(s) {sorted(unknown)}")
            dims.append(
                Dimension(
                    item.get("name"),
                    float(item.get("low", low)),
                    float(item.get("high", high)),
                    str(item.get("description", "")),
                )
            )
        elif isinstance(item, str):
            parts = item.strip().split(":")
            if len(parts) not in (1, 3):
                raise ValueError(f"judge_dimensions entry {item!r} is invalid; use 'name' or 'name:low:high'")
            dims.append(
                Dimension(parts[0], *(float(p) for p in parts[1:]))
                if len(parts) == 3
                else Dimension(parts[0], low, high)
            )
        else:
            raise ValueError(f"judge_dimensions entry {item!r} is invalid; use a name or a mapping")
    names = [d.name for d in dims]
    if len(set(names)) != len(names):
        raise ValueError(f"judge_dimensions has duplicate names: {names}")
    return dims


def _fmt(x: float) -> str:
    return f"{x:g}"


class ScoreScheme:
    """K integer-scored dimensions, normalised linearly to [0, 1] (see the module docstring)."""

    columns: tuple[str, ...] = ()
    fields = {"dimensions", "output_format"}

    def __init__(self, dimensions: Sequence[Dimension]) -> None:
        self.dims = list(dimensions)
        self.dimensions = [d.name for d in self.dims]
        self._ranges = {d.name: (d.low, d.high) for d in self.dims}
        layout = {d.name: {"score": f"<integer {_fmt(d.low)}-{_fmt(d.high)}>"} for d in self.dims}
        self._values = {
            "dimensions": "\n".join(
                f"- {d.name} ({_fmt(d.low)}-{_fmt(d.high)})" + (f": {d.description}" if d.description else "")
                for d in self.dims
            ),
            "output_format": json.dumps(layout, indent=2),
        }
        self._schema = {
            "type": "object",
            "properties": {
                d.name: {
                    "type": "object",
                    "properties": {"score": {"type": "integer", "minimum": d.low, "maximum": d.high}},
                    "required": ["score"],
                    "additionalProperties": False,
                }
                for d in self.dims
            },
            "required": self.dimensions,
            "additionalProperties": False,
        }

    def request(self, row: Mapping[str, Any]) -> tuple[dict[str, str], dict, Any]:
        """(template values, JSON schema of the expected reply, context for :meth:`scores`)."""
        return self._values, self._schema, None

    def scores(self, obj: Mapping[str, Any], context: Any) -> dict[str, float | None]:
        raw = read_scores(obj, self._ranges)
        return {
            name: None if v is None else (v - self._ranges[name][0]) / (self._ranges[name][1] - self._ranges[name][0])
            for name, v in raw.items()
        }


@dataclass(frozen=True)
class Criterion:
    text: str
    points: float
    axis: str


def parse_rubric(rubrics: Any, axes: Sequence[str], tag_prefix: str = "axis:", where: str = "row") -> list[Criterion]:
    """A HealthBench ``rubrics`` list -> criteria; one-line ValueError naming ``where`` and the entry on bad input.

    Each entry: ``{"criterion": str, "points": number (non-zero), "tags": [..., "axis:<name>", ...]}``; the axis
    must be one of ``axes``. Tags without ``tag_prefix`` (HealthBench's ``level:...``, ``cluster:...``) are ignored.
    """
    if isinstance(rubrics, str):  # verl ground_truth / parquet rows carry the rubric as a JSON string
        try:
            rubrics = json.loads(rubrics)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: 'rubrics' is a string but not JSON") from None
    if not isinstance(rubrics, Sequence) or isinstance(rubrics, str) or not rubrics:
        raise ValueError(f"{where}: 'rubrics' must be a non-empty list of {{criterion, points, tags}}")
    out = []
    for j, item in enumerate(rubrics):
        at = f"{where}: rubrics[{j}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{at} is not a mapping")
        text, points, tags = item.get("criterion"), item.get("points"), item.get("tags")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{at}: 'criterion' must be a non-empty string")
        if not is_real(points) or points == 0:
            raise ValueError(f"{at}: 'points' must be a non-zero number, got {points!r}")
        if not isinstance(tags, Sequence) or isinstance(tags, str):
            raise ValueError(f"{at}: 'tags' must be a list of strings")
        found = [t[len(tag_prefix) :] for t in tags if isinstance(t, str) and t.startswith(tag_prefix)]
        if len(found) != 1:
            raise ValueError(f"{at}: needs exactly one '{tag_prefix}<name>' tag, got {list(tags)}")
        if found[0] not in axes:
            raise ValueError(f"{at}: axis {found[0]!r} is not in the task's axes {list(axes)}")
        out.append(Criterion(text.strip(), float(points), found[0]))
    return out


class RubricScheme:
    """Per-prompt rubric criteria, one met/not-met verdict each, scored per axis (see the module docstring)."""

    columns = ("rubrics",)
    fields = {"criteria", "output_format"}

    def __init__(self, axes: Sequence[str] = HEALTHBENCH_AXES, tag_prefix: str = "axis:") -> None:
        if not axes:
            raise ValueError("rubric axes must be a non-empty list")
        self.dimensions = [check_name(a, "rubric axis") for a in axes]
        if len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError(f"rubric axes has duplicates: {list(axes)}")
        self.tag_prefix = tag_prefix

    def request(self, row: Mapping[str, Any]) -> tuple[dict[str, str], dict, Any]:
        criteria = parse_rubric(row.get("rubrics"), self.dimensions, self.tag_prefix)
        ids = [f"c{i + 1}" for i in range(len(criteria))]
        values = {
            "criteria": "\n".join(f"[{cid}] ({c.points:+g}) {c.text}" for cid, c in zip(ids, criteria)),
            "output_format": "{" + ", ".join(f'"{cid}": true|false' for cid in ids) + "}",
        }
        schema = {
            "type": "object",
            "properties": {cid: {"type": "boolean", "description": c.text} for cid, c in zip(ids, criteria)},
            "required": ids,
            "additionalProperties": False,
        }
        return values, schema, (ids, criteria)

    def scores(self, obj: Mapping[str, Any], context: Any) -> dict[str, float | None]:
        ids, criteria = context
        verdicts = read_verdicts(obj, ids)
        earned = dict.fromkeys(self.dimensions, 0.0)
        possible = dict.fromkeys(self.dimensions, 0.0)
        unknown: set[str] = set()
        for cid, c in zip(ids, criteria):
            met = verdicts[cid]
            if met is None:
                unknown.add(c.axis)
            elif met:
                earned[c.axis] += c.points
            if c.points > 0:
                possible[c.axis] += c.points
        return {
            a: None if a in unknown or possible[a] <= 0 else min(max(earned[a] / possible[a], 0.0), 1.0)
            for a in self.dimensions
        }
