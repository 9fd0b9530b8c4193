"""Recorded multi-sample traces, as the simulated engine replays them.

The file format and its reader are certaindex's (:func:`certaindex.read_traces`, the one reader
of the trace format)::

    {"id", "prompt", "reference", "options", "samples": [{"text", "answer", "tokens", "correct", "score"}]}

Here a trace becomes a :class:`TraceRecord` the replay source draws from: token counts are the
recorded ones, else approximated from the text (``tokens_exact`` says which), and a sample's
recorded ``answer`` (``null`` included: a recorded abstention) travels with the replayed
completion, so programs score what the trace recorded rather than re-reading the text (a trace
whose samples are programs records their behaviour there). ``reextract=True`` drops the recorded
answers: the text is all a program sees. ``.jsonl.gz`` files are read too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from certaindex import Trace, approx_tokens, read_traces

__all__ = ["TraceRecord", "TraceSample", "bundled_traces", "load_traces"]


@dataclass(frozen=True, slots=True)
class TraceSample:
    text: str
    answer: str | None
    tokens: int
    """Completion tokens (recorded, or approximated from the text when the trace has none)."""
    correct: bool | None = None
    score: float | None = None
    recorded: bool = False
    """The trace recorded this sample's ``answer`` (``None`` then is a recorded abstention)."""
    tokens_exact: bool = True
    """``tokens`` was recorded (False: approximated from the text)."""


@dataclass(frozen=True, slots=True)
class TraceRecord:
    id: str
    prompt: str
    reference: str | None
    samples: tuple[TraceSample, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    """A multiple-choice question's options, by letter (empty for other questions)."""

    @property
    def tokens_exact(self) -> bool:
        return all(s.tokens_exact for s in self.samples)

    @classmethod
    def from_trace(cls, trace: Trace, *, reextract: bool = False) -> TraceRecord:
        samples = []
        for s in trace.samples:
            exact = s.tokens is not None and not trace.tokens_approx
            samples.append(
                TraceSample(
                    text=s.text,
                    answer=s.answer,
                    tokens=s.tokens if s.tokens is not None else max(approx_tokens(s.text), 1),
                    correct=s.correct,
                    score=s.score,
                    recorded=s.has_answer and not reextract,
                    tokens_exact=exact,
                )
            )
        if not samples:
            raise ValueError(f"trace record {trace.id!r} has no samples")
        return cls(trace.id, trace.prompt, trace.reference, tuple(samples), trace.meta, trace.options)


def load_traces(path: str | Path, *, reextract: bool = False) -> list[TraceRecord]:
    """Read a trace file; a bundled trace set can be named instead of a path (``math-qwen25``).

    Raises :class:`certaindex.TraceError` (a ValueError naming the file and line) for a malformed file.
    """
    resolved = Path(path)
    if not resolved.exists():
        resolved = bundled_traces(str(path))
    return [TraceRecord.from_trace(t, reextract=reextract) for t in read_traces(resolved)]


def bundled_traces(name: str) -> Path:
    """Path of a trace set shipped in the package (``dynasor/data/traces/<name>.jsonl[.gz]``)."""
    folder = resources.files("dynasor.data").joinpath("traces")
    for suffix in (".jsonl", ".jsonl.gz"):
        candidate = folder.joinpath(name + suffix)
        if candidate.is_file():
            return Path(str(candidate))
    names = sorted(p.name.split(".")[0] for p in folder.iterdir() if ".jsonl" in p.name)
    raise FileNotFoundError(f"No trace file {name!r} (bundled sets: {', '.join(names)})")
