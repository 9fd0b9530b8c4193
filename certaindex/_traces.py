"""The one reader of the trace format, and trajectories from traces.

Trace format (JSONL, ``.jsonl.gz`` too), one question a line::

    {"id", "prompt", "reference", "options", "samples": [{"text", "answer", "tokens", "correct",
     "score", "probes": [{"at_token", "answer"}]}]}

Every sample needs ``text`` or ``answer``; the rest is optional. ``options`` (a list, or a
mapping of letter to text) is read for multiple-choice questions.

A sample's answer is its recorded ``answer`` when the trace has one (``null`` = the sample
gave none): traces whose samples are programs record a behaviour signature there, which no
extraction from ``text`` could recover. ``reextract=True`` extracts from ``text`` instead.
When extraction finds no answer in most samples a :class:`TraceWarning` says so: the answer
kind is probably wrong.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from certaindex._answers import extract_answer
from certaindex._choice import choice_key, extract_option, normalize_options
from certaindex._equivalence import Equivalence
from certaindex._reward import RewardScale
from certaindex._rule import ANSWER_KINDS, AnswerKind
from certaindex._tokens import approx_tokens
from certaindex._trajectory import Trajectory

__all__ = [
    "Trace",
    "TraceError",
    "TraceSample",
    "TraceWarning",
    "parse_trace",
    "read_traces",
    "sample_answers",
    "trajectories_from_traces",
]

NO_ANSWER_WARN_SHARE = 0.5
"""Warn when extraction finds no answer in more than this share of the samples it read."""


class TraceError(ValueError):
    """A trace file or line that cannot be read (the message names the file and line)."""


class TraceWarning(UserWarning):
    """Something in a trace set that makes its figures doubtful (e.g. answers mostly missing)."""


@dataclass(frozen=True, slots=True)
class TraceSample:
    text: str
    answer: str | None
    has_answer: bool
    """Whether the trace recorded an ``answer`` for this sample (``null`` counts as recorded)."""
    tokens: int | None
    correct: bool | None
    score: float | None


@dataclass(frozen=True, slots=True)
class Trace:
    id: str
    prompt: str
    reference: str | None
    samples: tuple[TraceSample, ...]
    options: Mapping[str, str] = field(default_factory=dict)
    tokens_approx: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)


def _score(raw: Any) -> float | None:
    if isinstance(raw, list | tuple):  # some traces keep one score per step
        raw = raw[-1] if raw else None
    return None if raw is None else float(raw)


def parse_trace(raw: Any, *, where: str = "trace") -> Trace:
    """One trace line (a decoded JSON object), with a clear error for anything missing.

    >>> parse_trace({"id": 1, "samples": [{"answer": "4"}]}).samples[0].answer
    '4'
    >>> parse_trace({"id": 1})
    Traceback (most recent call last):
    ...
    certaindex._traces.TraceError: trace: no 'samples' list (keys: id)
    """
    if not isinstance(raw, Mapping):
        raise TraceError(f"{where}: a trace line is a JSON object, got {type(raw).__name__}")
    samples_raw = raw.get("samples")
    if not isinstance(samples_raw, list):
        raise TraceError(f"{where}: no 'samples' list (keys: {', '.join(sorted(map(str, raw))) or 'none'})")
    samples = []
    for i, s in enumerate(samples_raw):
        if not isinstance(s, Mapping):
            raise TraceError(f"{where}: sample {i} is not an object")
        text, answer = s.get("text"), s.get("answer")
        if text is None and "answer" not in s:
            raise TraceError(f"{where}: sample {i} has neither 'text' nor 'answer'")
        try:
            tokens = None if s.get("tokens") is None else int(s["tokens"])
            score = _score(s.get("score"))
        except (TypeError, ValueError) as exc:
            raise TraceError(f"{where}: sample {i}: {exc}") from None
        correct = s.get("correct")
        samples.append(
            TraceSample(
                text="" if text is None else str(text),
                answer=None if answer is None else str(answer),
                has_answer="answer" in s,
                tokens=tokens,
                correct=None if correct is None else bool(correct),
                score=score,
            )
        )
    try:
        options = normalize_options(raw.get("options"))
    except ValueError as exc:
        raise TraceError(f"{where}: options: {exc}") from None
    known = {"id", "prompt", "reference", "samples", "options", "tokens_approx"}
    reference = raw.get("reference")
    return Trace(
        id=str(raw.get("id", where)),
        prompt=str(raw.get("prompt") or ""),
        reference=None if reference is None else str(reference),
        samples=tuple(samples),
        options=options,
        tokens_approx=bool(raw.get("tokens_approx", False)),
        meta={k: v for k, v in raw.items() if k not in known},
    )


def _lines(path: Path) -> Iterator[str]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            yield from fh
    else:
        with path.open(encoding="utf-8") as fh:
            yield from fh


def read_traces(path: str | Path) -> list[Trace]:
    """Read a trace file (``.jsonl`` or ``.jsonl.gz``); errors name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"{p}: no such trace file")
    traces = []
    number = 0
    try:
        for number, line in enumerate(_lines(p), 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{p}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            traces.append(parse_trace(raw, where=f"{p}:{number}"))
    except UnicodeDecodeError as exc:
        raise TraceError(f"{p}:{number + 1}: not UTF-8 text ({exc.reason})") from None
    except (OSError, EOFError) as exc:
        raise TraceError(f"{p}: cannot read ({exc})") from None
    if not traces:
        raise TraceError(f"{p}: no trace lines")
    return traces


def _extract(text: str, kind: AnswerKind, options: Mapping[str, str]) -> str | None:
    if kind == "choice":
        return extract_option(text, options or None)
    return extract_answer(text, kind)


def sample_answers(trace: Trace, kind: AnswerKind = "math", *, reextract: bool = False) -> tuple[list[str | None], int]:
    """Each sample's answer (recorded first, else extracted), and how many were extracted.

    >>> t = parse_trace({"id": "q", "samples": [{"text": "so \\\\boxed{2}"}, {"text": "x", "answer": "PPF"}]})
    >>> sample_answers(t)
    (['2', 'PPF'], 1)
    """
    answers: list[str | None] = []
    extracted = 0
    for s in trace.samples:
        if s.has_answer and not reextract:
            answers.append(s.answer)
        else:
            extracted += 1
            answers.append(_extract(s.text, kind, trace.options))
    return answers, extracted


def _labels(
    answers: Sequence[str | None], kind: AnswerKind, options: Mapping[str, str], eq: Equivalence | None
) -> list[str | int | None]:
    if kind == "choice":
        return [choice_key(a, options or None) for a in answers]
    if kind == "code":
        return [a for a in answers]  # behaviour signatures: equal strings agree
    return list((eq or Equivalence(symbolic=False)).cluster(answers))


def _correct(trace: Trace, answers: Sequence[str | None], kind: AnswerKind, eq: Equivalence | None) -> list[bool]:
    out = []
    for s, a in zip(trace.samples, answers, strict=True):
        if s.correct is not None:
            out.append(s.correct)
        elif trace.reference is None:
            raise TraceError(f"trace {trace.id!r}: a sample without 'correct' and no 'reference' to grade it")
        elif kind == "choice":
            ref = choice_key(trace.reference, trace.options or None)
            out.append(a is not None and ref is not None and choice_key(a, trace.options or None) == ref)
        elif kind == "code":
            raise TraceError(f"trace {trace.id!r}: code samples need a recorded 'correct' (tests were not run)")
        else:
            out.append((eq or Equivalence(symbolic=False)).equal(a, trace.reference))
    return out


def trajectories_from_traces(
    traces: Sequence[Trace],
    *,
    kind: AnswerKind = "math",
    reextract: bool = False,
    equivalence: Equivalence | None = None,
    reward_scale: RewardScale | None = None,
    max_samples: int | None = None,
    dataset: str = "",
) -> list[Trajectory]:
    """One trajectory per trace (a check after every sample), in the recorded sample order.

    ``equivalence`` clusters and grades math answers (None: the cheap paths only, canonical
    keys and numbers, no math-verify). Reward measures
    (``reward_mean``, ``reward_max``) are added when every sample has a ``score``. Token
    counts are the recorded ones, else approximated from the text (``meta["tokens_exact"]``
    says which).
    """
    if kind not in ANSWER_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ANSWER_KINDS)}, got {kind!r}")
    out = []
    extracted = missing = 0
    for trace in traces:
        samples = trace.samples[:max_samples]
        if not samples:
            continue
        t = Trace(trace.id, trace.prompt, trace.reference, samples, trace.options, trace.tokens_approx, trace.meta)
        answers, n_extracted = sample_answers(t, kind, reextract=reextract)
        extracted += n_extracted
        missing += sum(a is None for a, s in zip(answers, samples, strict=True) if reextract or not s.has_answer)
        labels = _labels(answers, kind, t.options, equivalence)
        correct = _correct(t, answers, kind, equivalence)
        exact = not t.tokens_approx and all(s.tokens is not None for s in samples)
        tokens = [s.tokens if s.tokens is not None else approx_tokens(s.text) for s in samples]
        scores: dict[str, NDArray[np.float64]] = {}
        raw_scores = [s.score for s in samples]
        if all(v is not None for v in raw_scores):
            scaled = (reward_scale or RewardScale()).apply([float(v) for v in raw_scores if v is not None])
            scores["reward_mean"] = np.cumsum(scaled) / np.arange(1, len(scaled) + 1)
            scores["reward_max"] = np.maximum.accumulate(scaled)
        out.append(
            Trajectory.from_labels(
                labels,
                correct=correct,
                tokens=tokens,
                scores=scores,
                query_id=t.id,
                dataset=dataset,
                meta={**t.meta, "tokens_exact": exact},
            )
        )
    if extracted and missing > NO_ANSWER_WARN_SHARE * extracted:
        warnings.warn(
            f"{dataset or 'traces'}: extraction ({kind}) found no answer in {missing} of {extracted} samples; "
            "is the answer kind right? (recorded answers are used when the trace has them)",
            TraceWarning,
            stacklevel=2,
        )
    return out
