"""Recorded multi-sample traces (the trace format of the design doc).

JSONL, one question a line::

    {"id", "prompt", "reference", "samples": [{"text", "answer", "tokens", "correct", "score",
     "probes": [{"at_token", "answer"}]}]}

All sample fields but ``text`` or ``answer`` are optional. ``.jsonl.gz`` files are read too.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from certaindex import approx_tokens

__all__ = ["TraceRecord", "TraceSample", "bundled_traces", "load_traces"]


@dataclass(frozen=True, slots=True)
class TraceSample:
    text: str
    answer: str | None
    tokens: int
    """Completion tokens (recorded, or approximated from the text when the trace has none)."""
    correct: bool | None = None
    score: float | None = None
    probes: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TraceSample:
        text = str(raw.get("text") or "")
        answer = raw.get("answer")
        if not text and answer is None:
            raise ValueError("a trace sample needs 'text' or 'answer'")
        tokens = raw.get("tokens")
        score = raw.get("score")
        return cls(
            text=text,
            answer=None if answer is None else str(answer),
            tokens=int(tokens) if tokens is not None else max(approx_tokens(text), 1),
            correct=raw.get("correct"),
            score=None if score is None else float(score),
            probes=tuple(raw.get("probes") or ()),
        )


@dataclass(frozen=True, slots=True)
class TraceRecord:
    id: str
    prompt: str
    reference: str | None
    samples: tuple[TraceSample, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TraceRecord:
        known = {"id", "prompt", "reference", "samples"}
        samples = tuple(TraceSample.from_json(s) for s in raw.get("samples") or ())
        if not samples:
            raise ValueError(f"trace record {raw.get('id')!r} has no samples")
        reference = raw.get("reference")
        return cls(
            id=str(raw["id"]),
            prompt=str(raw["prompt"]),
            reference=None if reference is None else str(reference),
            samples=samples,
            meta={k: v for k, v in raw.items() if k not in known},
        )


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        yield from handle


def load_traces(path: str | Path) -> list[TraceRecord]:
    """Read a trace file; a bundled trace set can be named instead of a path (``math-qwen25``)."""
    resolved = Path(path)
    if not resolved.exists():
        resolved = bundled_traces(str(path))
    records = []
    for number, line in enumerate(_lines(resolved), 1):
        if line.strip():
            try:
                records.append(TraceRecord.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{resolved}:{number}: not a trace record ({exc})") from exc
    return records


def bundled_traces(name: str) -> Path:
    """Path of a trace set shipped in the package (``dynasor/data/traces/<name>.jsonl[.gz]``)."""
    folder = resources.files("dynasor.data").joinpath("traces")
    for suffix in (".jsonl", ".jsonl.gz"):
        candidate = folder.joinpath(name + suffix)
        if candidate.is_file():
            return Path(str(candidate))
    names = sorted(p.name.split(".")[0] for p in folder.iterdir() if ".jsonl" in p.name)
    raise FileNotFoundError(f"No trace file {name!r} (bundled sets: {', '.join(names)})")
