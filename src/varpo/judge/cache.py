"""On-disk cache of judge replies: one SQLite file, keyed by a hash of (judge, template, rendered request).

SQLite gives the crash safety: each batch's new replies are written in one transaction, so a kill at any point
leaves the file with whole earlier batches and none of the interrupted one; WAL mode lets several processes (DDP
ranks, verl reward workers) read and write the same file. Only replies that gave at least one usable dimension are
stored, so a failed, timed-out, malformed or empty (``{}``) judgment is asked again next time rather than frozen in
the cache.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

_SCHEMA = "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, judge TEXT, reply TEXT, created REAL)"


def request_key(judge: str, template: str, request: Any) -> str:
    """sha256 of the judge identity (model + sampling), template digest and the rendered request."""
    blob = json.dumps([judge, template, request], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """``get_many(keys) -> {key: reply}``, ``put_many([(key, reply), ...])``. Opened lazily, reopened after pickling."""

    def __init__(self, path: str | Path, judge: str) -> None:
        self.path = Path(path).expanduser()
        self.judge = judge
        if self.path.is_dir():
            raise ValueError(f"judge_cache={str(self.path)!r} is a directory; give the path of an SQLite file")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"path": self.path, "judge": self.judge}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["judge"])

    def _connect(self) -> sqlite3.Connection:
        """The connection, opened on first use; a path that is no usable SQLite file (a directory, a corrupt or
        foreign file, no permission) is a one-line ValueError naming it, not an sqlite error naming nothing."""
        if self._conn is None:
            conn = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
                conn.commit()
            except (sqlite3.Error, OSError) as err:
                if conn is not None:
                    conn.close()
                raise ValueError(
                    f"judge_cache={str(self.path)!r} is not a usable SQLite file ({type(err).__name__}: {err}); "
                    "delete or move it, or set judge_cache to another file (or null)"
                ) from None
            self._conn = conn
        return self._conn

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._connect()
            for start in range(0, len(unique), 500):  # SQLite's bound-parameter limit
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key, reply FROM judgments WHERE key IN ({marks})", chunk).fetchall()
                out.update(rows)
        return out

    def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        rows = [(k, self.judge, reply, time.time()) for k, reply in items]
        if not rows:
            return
        with self._lock:
            conn = self._connect()
            with conn:  # one transaction: all of this batch or nothing
                conn.executemany("INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            return self._connect().execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
