"""The resumable results file: one JSON line per finished query, appended and synced.

A query's line is written (and ``fsync``-ed) as soon as both of its arms are graded, so a
run killed with ``kill -9`` loses at most the queries that were in flight. On reopening, a
torn last line (the kill hit mid-write) is cut off, and the queries already on file are
skipped by the runner. When a run ends its lines are put in query order (:meth:`ResultsFile.sort`,
an atomic rewrite), so two runs of the same configuration leave the same file.

Lines are exactly what :func:`json.dumps` writes with ``ensure_ascii=True``: pure ASCII, so no
character of an answer (U+2028, U+2029, U+0085, ...) can end a line, and the file is split on
``\\n`` only when read back. A line that is not UTF-8 or not JSON (a hand-edited or damaged file)
is skipped with a warning: its query runs again, nothing crashes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ResultsFile"]

logger = logging.getLogger(__name__)


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=True, default=str) + "\n").encode("ascii")


class ResultsFile:
    """``results.jsonl`` of an evaluation run.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.jsonl"
    >>> rf = ResultsFile(path); rf.append({"id": "q1", "correct": True, "output": "a\\u2028b"})
    >>> sorted(ResultsFile(path).done), ResultsFile(path).records["q1"]["output"] == "a\\u2028b"
    (['q1'], True)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        self.skipped = 0
        """Lines that could not be read (not UTF-8, not JSON, no id); their queries run again."""
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
        line = _line(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.records[str(record["id"])] = dict(record)

    def sort(self, order: Sequence[str]) -> None:
        """Rewrite the file with its queries in ``order`` (ids not in it after, by id); atomic."""
        rank = {qid: i for i, qid in enumerate(order)}
        ids = sorted(self.records, key=lambda qid: (rank.get(qid, len(rank)), qid))
        self.records = {qid: self.records[qid] for qid in ids}
        temp = self.path.with_name(self.path.name + ".tmp")
        with open(temp, "wb") as handle:
            for qid in ids:
                handle.write(_line(self.records[qid]))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            # A torn last line from a killed run: drop it, its query runs again.
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
            data = data[:end]
        # Split on the newline byte alone: str.splitlines() would also split inside an answer
        # that holds U+2028, U+2029 or U+0085 (files written before lines were pure ASCII).
        for number, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self._skip(number, "not UTF-8 text")
                continue
            except json.JSONDecodeError:
                self._skip(number, "not JSON")
                continue
            if isinstance(record, dict) and "id" in record:
                self.records[str(record["id"])] = record
            else:
                self._skip(number, "not a result (a JSON object with an id)")

    def _skip(self, number: int, why: str) -> None:
        self.skipped += 1
        logger.warning("%s:%d: %s; skipped (its query runs again)", self.path, number, why)
