"""The resumable results file: one JSON line per finished query, appended and synced.

A query's line is written (and ``fsync``-ed) as soon as both of its arms are graded, so a
run killed with ``kill -9`` loses at most the queries that were in flight. On reopening, a
torn last line (the kill hit mid-write) is cut off, and the queries already on file are
skipped by the runner.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["ResultsFile"]


class ResultsFile:
    """``results.jsonl`` of an evaluation run.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.jsonl"
    >>> rf = ResultsFile(path); rf.append({"id": "q1", "correct": True})
    >>> sorted(ResultsFile(path).done)
    ['q1']
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()

    @property
    def done(self) -> set[str]:
        """Ids of the queries already on file."""
        return set(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one query's line and sync it to disk before returning."""
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.records[str(record["id"])] = dict(record)

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            # A torn last line from a killed run: drop it, its query runs again.
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
            data = data[:end]
        for line in data.decode("utf-8").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "id" in record:
                self.records[str(record["id"])] = record
