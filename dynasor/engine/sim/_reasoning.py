r"""Simulated content for chain-of-thought and step-wise reasoning programs.

The plain sources (:mod:`dynasor.engine.sim`) draft whole, independent samples. Programs
that decode one chain in chunks and probe it (Dynasor-CoT), or that grow a tree of reasoning
steps (MCTS, REBASE), need content that depends on what the request continues:

* :class:`SyntheticChainSource` / :class:`ReplayChainSource`: each query has one hidden chain
  of thought. A request continuing the chain (its last assistant message, or a raw prompt,
  holds a prefix of it) gets the next ``max_tokens`` of it; a ``probe`` request (tag
  ``"probe"``) gets the answer the model would give at that point. In the synthetic chain the
  probe answer wanders until a hidden *settle point* (a fraction of the chain that grows with
  difficulty) and is stable after it; the replayed chain (a recorded sample) is probed with
  what it has stated so far: a hesitant guess (the last number written) until its final
  answer first appears, that answer after.
* :class:`SyntheticStepSource` / :class:`ReplayStepSource`: a request continuing a partial
  solution gets one reasoning step ending at the step delimiter (the engine cuts there when
  the request stops on it); the last step of a path states ``\boxed{answer}``. Synthetic
  paths carry a hidden "on track" state (correct final answer, higher step scores); replayed
  steps are spliced from the recorded samples of the query, each step taken from a sample
  that has one at that depth, the final step carrying that sample's answer, correctness and
  recorded reward.

Everything is seeded per query, so a virtual-time run is reproducible. All figures obtained
on these sources are simulated.
"""

from __future__ import annotations

import math
import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certaindex import approx_tokens, extract_answer
from dynasor.engine.base import EngineRequest
from dynasor.engine.sim._sources import Difficulty, Draft, ReplaySource, Source, query_rng
from dynasor.engine.traces import TraceRecord, load_traces

__all__ = [
    "ReplayChainSource",
    "ReplayStepSource",
    "SyntheticChainSource",
    "SyntheticStepSource",
    "continued_text",
]

# Every synthetic chain token is one of these words with a leading space (5 characters), so a
# cut at a proportional character offset always falls on a token boundary. None of them is a
# hesitation word.
_WORDS = (
    "sums", "term", "root", "case", "part", "step", "find", "then", "gets", "ones", "mods", "pair",
    "sets", "form", "rule", "calc", "both", "each", "half", "plus", "less", "more", "base", "side",
)  # fmt: skip
_TOKEN_CHARS = 5
_STEP_ID = re.compile(r"\(R(\d+)\)")


def continued_text(prompt: str | Sequence[Mapping[str, Any]]) -> str:
    """The text a request continues: its last assistant message, or a raw prompt whole."""
    if isinstance(prompt, str):
        return prompt
    last = prompt[-1] if prompt else {}
    return str(last.get("content") or "") if last.get("role") == "assistant" else ""


def _shared_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (binary search on slices)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


# --- chains of thought --------------------------------------------------------------------------


@dataclass(slots=True)
class _Chain:
    text: str
    """The whole chain, ending with its stated answer."""
    tokens: int
    answer: str
    correct: bool | None
    meta: dict[str, Any] = field(default_factory=dict)

    def chars_per_token(self) -> float:
        return max(len(self.text), 1) / max(self.tokens, 1)


class _ChainSource(Source):
    """Shared chunk and probe logic; subclasses build the hidden chain and answer probes."""

    probe_tokens = 6
    """Tokens a probe answer takes (an answer and its closing brace)."""

    def __init__(self) -> None:
        self._chains: dict[str, _Chain] = {}

    @abstractmethod
    def _build(self, request: EngineRequest) -> _Chain:
        """The hidden chain of ``request``'s query."""

    def chain(self, request: EngineRequest) -> _Chain:
        """The hidden chain of ``request``'s query (built on first use)."""
        chain = self._chains.get(request.query_id)
        if chain is None:
            chain = self._chains[request.query_id] = self._build(request)
        return chain

    @abstractmethod
    def _probe_text(self, request: EngineRequest, chain: _Chain, position: int) -> tuple[str, str | None]:
        """A probe's text and answer after ``position`` characters of the chain."""

    def _position(self, chain: _Chain, request: EngineRequest) -> int:
        """Characters of the chain the request's text already holds."""
        text = continued_text(request.request.prompt)
        # The chain may follow a template or a "<think>" opener: find where it starts.
        start = text.find(chain.text[: min(40, len(chain.text))])
        if start < 0:  # fewer than 40 characters of it so far: the tail of the text that starts it
            tail = range(max(0, len(text) - 40), len(text))
            start = next((i for i in tail if chain.text.startswith(text[i:])), -1)
        return _shared_prefix(text[start:], chain.text) if start >= 0 else 0

    def draft(self, request: EngineRequest) -> Draft:
        chain = self.chain(request)
        position = self._position(chain, request)
        if request.request.tag == "probe":
            text, answer = self._probe_text(request, chain, position)
            meta = {"position_chars": position, "probe_answer": answer, "answer": chain.answer}
            return Draft(text, max(1, approx_tokens(text)), meta=meta)
        rest = chain.text[position:]
        per_token = chain.chars_per_token()
        rest_tokens = max(1, round(len(rest) / per_token))
        limit = request.request.max_tokens
        meta = {**chain.meta, "answer": chain.answer}
        if chain.correct is not None:
            meta["correct"] = chain.correct
        if rest_tokens <= limit:
            return Draft(rest, rest_tokens, meta=meta)
        # One token past the limit: the engine cuts the text back to exactly ``limit`` tokens
        # and reports finish_reason "length".
        return Draft(rest[: math.ceil((limit + 1) * per_token)], limit + 1, meta=meta)


class SyntheticChainSource(_ChainSource):
    """Synthetic chains of thought whose probe answer settles part-way through.

    Per query a difficulty ``d`` (Beta(``alpha``, ``beta``), or fixed by
    :meth:`set_difficulty`) sets the chain length, log-normal around
    ``min_tokens + (max_tokens - min_tokens) d``, the chance that the final answer is right,
    ``1 - 0.85 d``, and the *settle point*, the share of the chain after which a probe gives
    the final answer: ``settle_min + (1 - settle_min) d``. Before it a probe guesses a number
    in [1, 999] at random and hesitates with probability ``hesitation``; after it a probe
    gives the final answer, except with probability ``noise`` (then a candidate answer).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        alpha: float = 1.2,
        beta: float = 1.2,
        min_tokens: int = 400,
        max_tokens: int = 4000,
        length_sigma: float = 0.25,
        settle_min: float = 0.15,
        hesitation: float = 0.3,
        noise: float = 0.03,
        distractors: int = 4,
    ) -> None:
        super().__init__()
        if not 0.0 <= settle_min <= 1.0:
            raise ValueError(f"settle_min must lie in [0, 1], got {settle_min}")
        self.seed = seed
        self.difficulty = Difficulty(seed, alpha, beta, distractors)
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.length_sigma = length_sigma
        self.settle_min = settle_min
        self.hesitation = hesitation
        self.noise = noise
        self._candidates: dict[str, tuple[str, ...]] = {}
        self._settle: dict[str, int] = {}

    def set_difficulty(self, query_id: str, difficulty: float) -> None:
        """Fix a query's difficulty in [0, 1] (before its first request)."""
        self.difficulty.fix(query_id, difficulty)

    def _build(self, request: EngineRequest) -> _Chain:
        qid = request.query_id
        rng, d, candidates = self.difficulty.draw("chain", qid)
        mean = self.min_tokens + (self.max_tokens - self.min_tokens) * d
        body = max(8, round(rng.lognormvariate(math.log(mean), self.length_sigma)))
        correct = rng.random() < 1.0 - 0.85 * d
        answer = candidates[0] if correct else rng.choice(candidates[1:])
        words = "".join(" " + rng.choice(_WORDS) for _ in range(body))
        ending = f" So the answer is \\boxed{{{answer}}}."
        ending_tokens = -(-len(ending) // _TOKEN_CHARS)
        ending = ending.ljust(ending_tokens * _TOKEN_CHARS)  # keep 5 characters a token
        self._candidates[qid] = candidates
        self._settle[qid] = round(body * (self.settle_min + (1.0 - self.settle_min) * d))
        meta = {"difficulty": d, "settle_token": self._settle[qid]}
        return _Chain(words + ending, body + ending_tokens, answer, correct, meta)

    def _probe_text(self, request: EngineRequest, chain: _Chain, position: int) -> tuple[str, str | None]:
        qid = request.query_id
        at = position // _TOKEN_CHARS
        rng = query_rng(self.seed, "probe", qid, at)
        if at >= self._settle[qid]:
            answer = chain.answer if rng.random() >= self.noise else rng.choice(self._candidates[qid])
            return f"{answer}}} \\]", answer
        # Unsettled guesses: any number, so agreement before the settle point is by chance only.
        answer = str(rng.randrange(1, 1000))
        if rng.random() < self.hesitation:
            return f"{answer}}} \\]\nWait, let me check", answer
        return f"{answer}}} \\]", answer

    def reference(self, query_id: str) -> str | None:
        # Drawn from the query's id alone, so any instance with the same seed knows it.
        return self.difficulty.draw("chain", query_id)[2][0]


class _Records:
    """Trace records matched to queries the way :class:`ReplaySource` matches them."""

    def __init__(self, traces: str | Path | Sequence[TraceRecord], seed: int) -> None:
        records = load_traces(traces) if isinstance(traces, str | Path) else list(traces)
        self.matcher = ReplaySource(records, seed=seed)

    def record(self, request: EngineRequest) -> TraceRecord:
        return self.matcher.record_for(request)

    def reference(self, query_id: str) -> str | None:
        return self.matcher.reference(query_id)


class ReplayChainSource(_ChainSource):
    """Recorded chains of thought (one sample per query) decoded in chunks and probed.

    A probe at a point of the chain answers with the recorded final answer once the chain
    has written it (its first occurrence in the text); before that it gives the last number
    written so far and hesitates (a model that has not reached its answer is unsure). Probe
    answers are thus derived from the recorded text, not recorded themselves.
    """

    def __init__(self, traces: str | Path | Sequence[TraceRecord], *, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        self._records = _Records(traces, seed)

    def _build(self, request: EngineRequest) -> _Chain:
        record = self._records.record(request)
        usable = [s for s in record.samples if s.text]
        if not usable:
            raise ValueError(f"trace {record.id} has no sample text to replay as a chain")
        sample = query_rng(self.seed, "chain", request.query_id).choice(usable)
        text = sample.text or ""
        answer = sample.answer or extract_answer(text) or ""
        meta: dict[str, Any] = {"trace_id": record.id}
        if sample.score is not None:
            meta["score"] = sample.score
        return _Chain(text, max(sample.tokens, 1), answer, sample.correct, meta)

    def _probe_text(self, request: EngineRequest, chain: _Chain, position: int) -> tuple[str, str | None]:
        seen = chain.text[:position]
        if chain.answer and chain.answer in seen:
            return f"{chain.answer}}} \\]", chain.answer
        # Not there yet: the last number written so far, given with hesitation.
        guess = extract_answer(seen) if seen else None
        return f"{guess or ''}}} \\]\nHmm, wait, not yet.", guess

    def reference(self, query_id: str) -> str | None:
        return self._records.reference(query_id)


# --- step-wise solutions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Step:
    depth: int
    on_track: bool


class SyntheticStepSource(Source):
    r"""Synthetic reasoning steps for tree search, with a hidden "on track" state per path.

    Per query a difficulty ``d`` sets the solution depth, ``D = min_steps + (max_steps -
    min_steps) d`` steps (a path may end earlier: each step from depth ``D - spread`` on is the
    last with probability 0.35), the chance that a first step is on track, ``1 - 0.7 d``, and that
    an on-track step's child stays on track, ``0.97 - 0.3 d`` (an off-track path recovers with
    probability ``recover``). The final step of an on-track path states the correct answer,
    of an off-track one a distractor (Zipf-weighted). Each step's ``meta["score"]`` is a
    noisy process reward: about 0.72 on track and 0.4 off track (Gaussian, sd ``score_sd``).

    Step texts carry an identifier ``(R<n>)`` by which the source finds the parent of a
    request: the last identifier in the text the request continues.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        alpha: float = 1.2,
        beta: float = 1.2,
        min_steps: int = 3,
        max_steps: int = 7,
        step_tokens: int = 60,
        delimiter: str = "\n\n",
        distractors: int = 4,
        recover: float = 0.05,
        score_sd: float = 0.12,
        spread: int = 2,
    ) -> None:
        self.seed = seed
        self.spread = spread
        self.difficulty = Difficulty(seed, alpha, beta, distractors)
        self.min_steps, self.max_steps = min_steps, max_steps
        self.step_tokens = step_tokens
        self.delimiter = delimiter
        self.distractors = distractors
        self.recover = recover
        self.score_sd = score_sd
        self._specs: dict[str, tuple[float, int, tuple[str, ...]]] = {}
        self._steps: dict[str, list[_Step]] = {}

    def set_difficulty(self, query_id: str, difficulty: float) -> None:
        """Fix a query's difficulty in [0, 1] (before its first request)."""
        self.difficulty.fix(query_id, difficulty)

    def _spec(self, qid: str) -> tuple[float, int, tuple[str, ...]]:
        spec = self._specs.get(qid)
        if spec is None:
            _, d, answers = self.difficulty.draw("steps", qid)
            depth = round(self.min_steps + (self.max_steps - self.min_steps) * d)
            spec = self._specs[qid] = (d, depth, answers)
        return spec

    def draft(self, request: EngineRequest) -> Draft:
        qid = request.query_id
        ids = _STEP_ID.findall(continued_text(request.request.prompt))
        steps = self._steps.setdefault(qid, [])
        parent = steps[int(ids[-1])] if ids and int(ids[-1]) < len(steps) else None
        if self.delimiter in request.request.stop:
            text, tokens, meta = self._step(qid, parent)
            if not meta.get("final"):
                # What follows the delimiter is never seen: the engine stops there.
                text += f"{self.delimiter}Step {meta['depth'] + 1}: ..."
                tokens += 8
            return Draft(text, tokens, meta=meta)
        # No stop at the delimiter: the rest of the solution (a rollout).
        texts, total = [], 0
        while True:
            text, tokens, meta = self._step(qid, parent)
            texts.append(text)
            total += tokens
            if meta.get("final"):
                return Draft(self.delimiter.join(texts), total, meta=meta)
            parent = steps[-1]

    def _step(self, qid: str, parent: _Step | None) -> tuple[str, int, dict[str, Any]]:
        d, depth, answers = self._spec(qid)
        steps = self._steps[qid]
        rng = query_rng(self.seed, "step", qid, len(steps))
        if parent is None:
            on_track = rng.random() < 1.0 - 0.7 * d
        elif parent.on_track:
            on_track = rng.random() < 0.97 - 0.3 * d
        else:
            on_track = rng.random() < self.recover
        step = _Step(1 if parent is None else parent.depth + 1, on_track)
        step_id = len(steps)
        steps.append(step)
        tokens = max(4, round(rng.lognormvariate(math.log(self.step_tokens), 0.3)))
        score = min(1.0, max(0.0, rng.gauss(0.72 if on_track else 0.4, self.score_sd)))
        meta: dict[str, Any] = {"score": score, "on_track": on_track, "depth": step.depth, "difficulty": d}
        # Paths end within the last few steps before the query's depth, so they finish unevenly.
        if step.depth >= depth or (step.depth >= depth - self.spread and rng.random() < 0.35):
            zipf = [1.0 / (k + 1) for k in range(self.distractors)]
            answer = answers[0] if on_track else rng.choices(answers[1:], weights=zipf)[0]
            meta |= {"final": True, "answer": answer, "correct": on_track}
            text = f"Step {step.depth}: putting it together (R{step_id}), the answer is \\boxed{{{answer}}}."
            return text, tokens, meta
        words = " ".join(rng.choice(_WORDS) for _ in range(6))
        return f"Step {step.depth}: {words} (R{step_id}).", tokens, meta

    def reference(self, query_id: str) -> str | None:
        return self._spec(query_id)[2][0]


class ReplayStepSource(Source):
    r"""Reasoning steps spliced from recorded samples (steps split at ``delimiter``).

    A request continuing a partial solution of ``k`` steps gets step ``k + 1`` of a recorded
    sample of the query that has one, drawn at random (seeded); a sample's last step carries
    its answer, ``correct`` flag and recorded ``score``; intermediate steps carry the score of
    the sample they come from. A path is thus a splice of recorded samples: its final answer
    is that of the sample that finished it.
    """

    def __init__(self, traces: str | Path | Sequence[TraceRecord], *, seed: int = 0, delimiter: str = "\n\n") -> None:
        self.seed = seed
        self.delimiter = delimiter
        self._records = _Records(traces, seed)
        self._draws: dict[str, int] = {}
        self._split: dict[str, list[list[str]]] = {}

    def _samples(self, record: TraceRecord) -> list[list[str]]:
        split = self._split.get(record.id)
        if split is None:
            split = []
            for sample in record.samples:
                text = sample.text or f"The answer is \\boxed{{{sample.answer}}}."
                split.append([s for s in text.split(self.delimiter) if s.strip()])
            self._split[record.id] = split
        return split

    def draft(self, request: EngineRequest) -> Draft:
        record = self._records.record(request)
        steps = self._samples(record)
        done = [s for s in continued_text(request.request.prompt).split(self.delimiter) if s.strip()]
        k = len(done)
        n = self._draws.get(request.query_id, 0)
        self._draws[request.query_id] = n + 1
        rng = query_rng(self.seed, "replay-step", request.query_id, n)
        having = [i for i, s in enumerate(steps) if len(s) > k] or list(range(len(steps)))
        index = rng.choice(having)
        sample = record.samples[index]
        path = steps[index]
        meta: dict[str, Any] = {"trace_id": record.id, "sample": index}
        if sample.score is not None:
            meta["score"] = sample.score
        rollout = self.delimiter not in request.request.stop
        if k + 1 >= len(path) or rollout:
            rest = path[k:] or [f"So the answer is \\boxed{{{sample.answer}}}."]
            text = self.delimiter.join(rest if rollout else rest[-1:])
            meta["final"] = True
            meta["answer"] = sample.answer
            if sample.correct is not None:
                meta["correct"] = sample.correct
            return Draft(text, max(1, approx_tokens(text)), meta=meta)
        text = path[k] + self.delimiter + path[k + 1]
        return Draft(text, max(1, approx_tokens(text)), meta=meta)

    def reference(self, query_id: str) -> str | None:
        return self._records.reference(query_id)
