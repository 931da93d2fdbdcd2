"""Reading user data into plain Python records, and records into a `datasets.Dataset`.

Supported sources: `.jsonl`, `.json` (a list of objects, an object of columns, or JSON lines under a `.json` name
as BFCL ships them), `.parquet`, a directory written by `Dataset.save_to_disk`, or a Hugging Face hub dataset name
(only when online; `datasets` honours `HF_HUB_OFFLINE`). Nested fields are addressed with dotted keys
(`reward_model.ground_truth`).

Bad files give ONE-line errors naming the file and the place: `ValueError("data.jsonl, line 7: invalid JSON
(Expecting ',' delimiter, column 31)")` with the 1-based physical line, `"…, row 3: expected a JSON object"`,
`"…: not UTF-8 text …"`, `"…: cannot read parquet: …"`, `"…: no rows"`. Row-level problems (a missing field, a
null value) are the task loaders' business: they use `Skipped` to drop such rows with one `SkippedRowsWarning`
that counts them and names the first few (file, 1-based row, field), and raise when no row is left.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def read_records(source: str | os.PathLike[str], *, split: str = "train", name: str | None = None) -> list[dict]:
    """All rows of `source` as dicts of plain Python values (nested dicts/lists, no numpy arrays).

    `split` and `name` (config) are used only for hub datasets and `DatasetDict` directories. Errors: see the
    module docstring (FileNotFoundError for a missing file, ValueError naming file and line/row otherwise).
    """
    path = Path(source)
    if path.is_dir():
        return _read_saved(path, split)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            rows = _read_parquet(path)
        elif suffix in (".jsonl", ".json"):
            rows = _read_json(path)
        else:
            raise ValueError(f"unsupported file type {suffix!r} for {path} (use .jsonl, .json or .parquet)")
        if not rows:
            raise ValueError(f"{path}: no rows")
        return rows
    if str(source).endswith((".jsonl", ".json", ".parquet")):
        raise FileNotFoundError(f"{path}: no such file")
    import datasets

    return datasets.load_dataset(str(source), name, split=split).to_list()


def _read_saved(path: Path, split: str) -> list[dict]:
    import datasets

    if not any((path / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
        raise ValueError(f"{path}: a directory, but not a dataset written by Dataset.save_to_disk")
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{path}: no split {split!r} (has {sorted(ds)})")
        ds = ds[split]
    return ds.to_list()


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: cannot read parquet: {_one_line(e)}") from None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _read_json(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if path.suffix.lower() == ".json" and not _looks_like_json_lines(text):
        data = _loads(text, path, None)
        if isinstance(data, list):
            return [_record(r, path, f"row {i}") for i, r in enumerate(data, 1)]
        if isinstance(data, Mapping) and data and all(isinstance(v, list) for v in data.values()):
            lengths = {k: len(v) for k, v in data.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"{path}: columns have different lengths {lengths}")
            columns = list(data)
            return [dict(zip(columns, row, strict=True)) for row in zip(*data.values(), strict=True)]
        raise ValueError(f"{path}: expected a JSON list of objects, an object of columns, or JSON lines")
    records = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters splitlines() breaks on,
    # and the line numbers must be the file's own.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        records.append(_record(_loads(line, path, lineno), path, f"line {lineno}"))
    return records


def _looks_like_json_lines(text: str) -> bool:
    """A `.json` file in JSON-lines form (as BFCL ships them): its first non-blank line is a whole JSON object."""
    first = next((line for line in text.split("\n") if line.strip()), "")
    if not first.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(first), dict) and bool(text.strip()[len(first.strip()) :].strip())
    except (json.JSONDecodeError, RecursionError):
        return False


def _loads(text: str, path: Path, lineno: int | None) -> Any:
    """``json.loads`` with one-line errors naming the file and line: ``lineno`` is the line of a JSON-lines record,
    ``None`` for a whole-file document (the decoder's own line number is used then)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        line = e.lineno if lineno is None else lineno
        raise ValueError(f"{path}, line {line}: invalid JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        where = "" if lineno is None else f", line {lineno}"
        raise ValueError(f"{path}{where}: invalid JSON (nested too deeply)") from None


def _record(value: Any, path: Path, where: str) -> dict:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path}, {where}: expected a JSON object, got {type(value).__name__}")
    return dict(value)


class SkippedRowsWarning(UserWarning):
    """A loader dropped rows it cannot use (the message counts them and names the first few)."""


class Skipped:
    """Collects the rows a loader drops, then warns once (or raises when nothing is left).

    `skip(i, reason)` records 0-based row `i`; `report(kept)` emits one `SkippedRowsWarning`
    `"<file>: skipped 2 of 80 rows (row 5: missing field 'answer'; row 9: …)"` (rows 1-based, in file order: for
    JSON lines the n-th non-blank line), and raises `ValueError` with the same detail when `kept` is 0.
    """

    SHOWN = 3

    def __init__(self, source: Any, total: int) -> None:
        self.source, self.total = str(source), total
        self.reasons: list[tuple[int, str]] = []

    def skip(self, index: int, reason: str) -> None:
        self.reasons.append((index + 1, reason))

    def __len__(self) -> int:
        return len(self.reasons)

    def _detail(self) -> str:
        shown = "; ".join(f"row {row}: {reason}" for row, reason in self.reasons[: self.SHOWN])
        more = f"; {len(self.reasons) - self.SHOWN} more" if len(self.reasons) > self.SHOWN else ""
        return shown + more

    def report(self, kept: int) -> None:
        if not self.reasons:
            return
        if kept == 0:
            raise ValueError(f"{self.source}: no usable rows ({self._detail()})")
        message = f"{self.source}: skipped {len(self.reasons)} of {self.total} rows ({self._detail()})"
        warnings.warn(message, SkippedRowsWarning, stacklevel=3)


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
