"""docs/engine.md documents every varpo config field and every RunSpec field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from trl import GRPOConfig

from varpo.run.spec import RunSpec
from varpo.trl import VarpoGRPOConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()


def test_every_field_documented():
    trl_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    varpo_fields = [f.name for f in dataclasses.fields(VarpoGRPOConfig) if f.name not in trl_fields]
    missing = [name for name in varpo_fields + [f.name for f in dataclasses.fields(RunSpec)] if f"`{name}`" not in DOC]
    assert not missing, f"fields missing from docs/engine.md: {missing}"
