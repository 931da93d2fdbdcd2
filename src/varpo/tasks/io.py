"""Reading user data into plain Python records, and records into a `datasets.Dataset`.

Supported sources: `.jsonl`, `.json` (a list of objects, an object of columns, or JSON lines under a `.json` name
as BFCL ships them), `.parquet`, a directory written by `Dataset.save_to_disk`, or a Hugging Face hub dataset name
(only when online; `datasets` honours `HF_HUB_OFFLINE`). Nested fields are addressed with dotted keys
(`reward_model.ground_truth`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def read_records(source: str | os.PathLike[str], *, split: str = "train", name: str | None = None) -> list[dict]:
    """All rows of `source` as dicts of plain Python values (nested dicts/lists, no numpy arrays).

    `split` and `name` (config) are used only for hub datasets and `DatasetDict` directories.
    """
    path = Path(source)
    if path.is_dir():
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
        return ds.to_list()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        if suffix in (".jsonl", ".json"):
            return _read_json(path)
        raise ValueError(f"unsupported file type {suffix!r} for {path} (use .jsonl, .json or .parquet)")
    if str(source).endswith((".jsonl", ".json", ".parquet")):
        raise FileNotFoundError(path)
    import datasets

    return datasets.load_dataset(str(source), name, split=split).to_list()


def _read_json(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # BFCL and others ship JSON lines under a .json name
        if isinstance(data, list):
            return [dict(r) for r in data]
        if isinstance(data, Mapping) and data and all(isinstance(v, list) for v in data.values()):
            columns = list(data)
            return [dict(zip(columns, row, strict=True)) for row in zip(*data.values(), strict=True)]
        if data is not None:
            raise ValueError(f"{path}: expected a JSON list of objects or an object of columns")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def get_field(row: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """`row[key]`, where a dotted key walks nested mappings (`"reward_model.ground_truth"`)."""
    if key in row:
        return row[key]
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


def first_field(row: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` present in `row` (for layouts whose column names vary in case)."""
    return next((k for k in keys if get_field(row, k) is not None), None)


def to_dataset(records: list[dict]):
    """Records -> `datasets.Dataset` (imported lazily: graders and their worker processes do not need it)."""
    import datasets

    if not records:
        raise ValueError("no examples to build a dataset from")
    return datasets.Dataset.from_list(records)
