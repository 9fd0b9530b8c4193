"""Where the simulated engine's token content comes from.

A source decides, for each request, the text the engine "generates" and how many tokens
it takes. The engine then truncates at ``max_tokens`` and stop strings and charges the
time of the cost profile. Every draw is seeded per query, so a virtual-time run is
reproducible.
"""

from __future__ import annotations

import hashlib
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynasor.engine.base import EngineRequest, prompt_text
from dynasor.engine.traces import TraceRecord, load_traces

__all__ = [
    "Difficulty",
    "Draft",
    "FixedSource",
    "ReplaySource",
    "Source",
    "SyntheticSource",
    "query_rng",
]


@dataclass(frozen=True, slots=True)
class Draft:
    """What a source proposes for one request, before truncation."""

    text: str
    tokens: int
    """Natural completion length in tokens (the engine stops earlier at ``max_tokens``)."""
    prompt_tokens: int | None = None
    """Prompt size if the source knows it; otherwise the backend estimates it."""
    meta: Mapping[str, Any] = field(default_factory=dict)


class Source(ABC):
    """Token content for the simulated engine."""

    @abstractmethod
    def draft(self, request: EngineRequest) -> Draft:
        """The completion ``request`` would get with an unlimited ``max_tokens``."""

    def reference(self, query_id: str) -> str | None:
        """The correct answer of a query, when the source knows it (for accuracy figures)."""
        return None


def query_rng(seed: int, *parts: object) -> random.Random:
    """A generator seeded from ``seed`` and ``parts`` (stable across processes, unlike hash())."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


class FixedSource(Source):
    """Every request generates exactly ``completion_tokens`` tokens (benchmarks, fitting)."""

    def __init__(self, completion_tokens: int, prompt_tokens: int | None = None) -> None:
        self.completion_tokens = completion_tokens
        self.prompt_tokens = prompt_tokens

    def draft(self, request: EngineRequest) -> Draft:
        return Draft(" tok" * self.completion_tokens, self.completion_tokens, self.prompt_tokens)


class ReplaySource(Source):
    """Replays recorded samples: each query draws its trace's samples without replacement.

    A query is matched to a record by its id, else by its prompt text containing the
    record's question, else (any other prompt) to a record chosen by hashing the prompt.
    When a query asks for more samples than were recorded, the samples are reshuffled and
    drawn again (``meta["reused"]`` marks it). A sample's recorded answer rides along in
    ``meta["answer"]`` (see :mod:`dynasor.engine.traces`).
    """

    def __init__(self, traces: str | Path | Sequence[TraceRecord], *, seed: int = 0, in_order: bool = False) -> None:
        records = load_traces(traces) if isinstance(traces, str | Path) else list(traces)
        if not records:
            raise ValueError("a replay source needs at least one trace record")
        self.records = records
        self.seed = seed
        self.in_order = in_order
        """Draw a query's first pass over its samples in recorded order (a twin of the run that recorded them)."""
        self._by_id = {r.id: r for r in records}
        self._by_prompt = {r.prompt.strip(): r for r in records}
        self._assigned: dict[str, TraceRecord] = {}
        self._orders: dict[str, list[int]] = {}
        self._drawn: dict[str, int] = {}

    def record_for(self, request: EngineRequest) -> TraceRecord:
        query_id = request.query_id
        record = self._assigned.get(query_id)
        if record is None:
            record = self._by_id.get(query_id) or self._match_prompt(prompt_text(request.request.prompt))
            self._assigned[query_id] = record
        return record

    def _match_prompt(self, text: str) -> TraceRecord:
        stripped = text.strip()
        if stripped in self._by_prompt:
            return self._by_prompt[stripped]
        for prompt, record in self._by_prompt.items():
            if prompt and prompt in text:
                return record
        digest = hashlib.blake2b(stripped.encode(), digest_size=8).digest()
        return self.records[int.from_bytes(digest, "little") % len(self.records)]

    def draft(self, request: EngineRequest) -> Draft:
        record = self.record_for(request)
        key = request.query_id
        drawn = self._drawn.get(key, 0)
        n = len(record.samples)
        if drawn % n == 0:
            order = list(range(n))
            if not (self.in_order and drawn == 0):
                query_rng(self.seed, key, drawn // n).shuffle(order)
            self._orders[key] = order
        index = self._orders[key][drawn % n]
        self._drawn[key] = drawn + 1
        sample = record.samples[index]
        meta: dict[str, Any] = {"trace_id": record.id, "sample": index, "reused": drawn >= n}
        if sample.score is not None:
            meta["score"] = sample.score
        if sample.correct is not None:
            meta["correct"] = sample.correct
        if sample.recorded:
            meta["answer"] = sample.answer  # the trace's own answer (None: it recorded none)
        text = sample.text or f"The answer is \\boxed{{{sample.answer}}}."
        return Draft(text, sample.tokens, meta=meta)

    def reference(self, query_id: str) -> str | None:
        record = self._assigned.get(query_id) or self._by_id.get(query_id)
        return record.reference if record else None


@dataclass
class Difficulty:
    """Per-query difficulty in [0, 1] and candidate answers, shared by the synthetic sources.

    A query's difficulty is drawn from Beta(``alpha``, ``beta``) unless :meth:`fix` set it; it
    is drawn either way, so a query's answers and later draws do not depend on an override.
    ``answers[0]`` is the correct answer, the rest distractors.
    """

    seed: int = 0
    alpha: float = 1.2
    beta: float = 1.2
    distractors: int = 4
    fixed: dict[str, float] = field(default_factory=dict)

    def fix(self, query_id: str, difficulty: float) -> None:
        """Set a query's difficulty (before its first request)."""
        if not 0.0 <= difficulty <= 1.0:
            raise ValueError(f"difficulty must lie in [0, 1], got {difficulty}")
        self.fixed[query_id] = difficulty

    def draw(self, kind: str, query_id: str) -> tuple[random.Random, float, tuple[str, ...]]:
        """``(rng, difficulty, answers)`` for a query; ``rng`` goes on seeded by ``kind`` and the id."""
        rng = query_rng(self.seed, kind, query_id)
        drawn = rng.betavariate(self.alpha, self.beta)
        answers = tuple(str(v) for v in rng.sample(range(1, 1000), self.distractors + 1))
        return rng, self.fixed.get(query_id, drawn), answers


@dataclass(frozen=True, slots=True)
class _QueryTruth:
    """The hidden truth of one synthetic query (drawn once, from its difficulty)."""

    difficulty: float
    answers: tuple[str, ...]
    """answers[0] is correct; the rest are distractors."""
    weights: tuple[float, ...]
    mean_tokens: float


class SyntheticSource(Source):
    """Synthetic answers and lengths from a per-query difficulty, seeded.

    Difficulty ``d`` (drawn from Beta(``alpha``, ``beta``) per query unless the query id
    carries one via :meth:`set_difficulty`) sets the chance of the correct answer,
    ``1 - 0.85 d``, spreading the rest over ``distractors`` wrong answers with Zipf weights,
    and the mean length, ``min_tokens + (max_tokens - min_tokens) d``, around which
    lengths are log-normal. Texts end in ``\\boxed{answer}``; scores are higher for correct
    answers (noisy), as a reward model's would be.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        alpha: float = 1.2,
        beta: float = 1.2,
        distractors: int = 4,
        min_tokens: int = 200,
        max_tokens: int = 1600,
        length_sigma: float = 0.35,
        prompt_tokens: int | None = None,
    ) -> None:
        self.seed = seed
        self.difficulty = Difficulty(seed, alpha, beta, distractors)
        self.distractors = distractors
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.length_sigma = length_sigma
        self.prompt_tokens = prompt_tokens
        self._queries: dict[str, _QueryTruth] = {}
        self._draws: dict[str, int] = {}

    def set_difficulty(self, query_id: str, difficulty: float) -> None:
        """Fix a query's difficulty in [0, 1] (before its first request)."""
        self.difficulty.fix(query_id, difficulty)

    def truth(self, query_id: str) -> _QueryTruth:
        """What the source decided about a query: its difficulty, answers and their weights, its length."""
        spec = self._queries.get(query_id)
        if spec is None:
            _, d, answers = self.difficulty.draw("query", query_id)
            p_correct = 1.0 - 0.85 * d
            zipf = [1.0 / (k + 1) for k in range(self.distractors)]
            wrong = [(1.0 - p_correct) * z / sum(zipf) for z in zipf]
            spec = _QueryTruth(
                difficulty=d,
                answers=answers,
                weights=(p_correct, *wrong),
                mean_tokens=self.min_tokens + (self.max_tokens - self.min_tokens) * d,
            )
            self._queries[query_id] = spec
        return spec

    def draft(self, request: EngineRequest) -> Draft:
        spec = self.truth(request.query_id)
        n = self._draws.get(request.query_id, 0)
        self._draws[request.query_id] = n + 1
        rng = query_rng(self.seed, "draw", request.query_id, n)
        choice = rng.choices(range(len(spec.answers)), weights=spec.weights)[0]
        answer = spec.answers[choice]
        tokens = max(1, round(rng.lognormvariate(math.log(spec.mean_tokens), self.length_sigma)))
        correct = choice == 0
        score = min(1.0, max(0.0, rng.gauss(0.75 if correct else 0.45, 0.12)))
        text = f"Let us reason step by step about the problem. So the answer is \\boxed{{{answer}}}."
        meta = {"correct": correct, "score": score, "difficulty": spec.difficulty}
        return Draft(text, tokens, self.prompt_tokens, meta)

    def reference(self, query_id: str) -> str | None:
        return self.truth(query_id).answers[0]
