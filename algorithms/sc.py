"""Self-consistency: sample in rounds, stop when the answers agree.

Each round submits ``samples_per_round`` samples as one gang; after the round the program
reports the multi-sample certaindex over answer clusters and the allocator decides whether
another round is worth it. The answer is the majority.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from algorithms._registry import register_algorithm
from algorithms.protocol import ChatMessage, Completion, Context, GenerateRequest, Program, QueryInfo
from certaindex import Certainty, canonical_key, extract_boxed, majority_fraction, normalized_entropy

__all__ = ["SelfConsistency", "chat_prompt"]

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def chat_prompt(query: QueryInfo, instruction: str | None = DEFAULT_INSTRUCTION) -> list[ChatMessage]:
    """The query as chat messages, with ``instruction`` appended to a plain-text question."""
    if not isinstance(query.prompt, str):
        return list(query.prompt)
    content = query.prompt if not instruction else f"{query.prompt}\n{instruction}"
    return [{"role": "user", "content": content}]


@register_algorithm("sc")
@dataclass
class SelfConsistency(Program):
    """Majority vote over samples drawn in rounds, stopped by Certaindex.

    Knobs: ``max_samples`` (total cap), ``samples_per_round`` (gang size), ``max_tokens`` and
    ``temperature`` per sample, ``measure`` (``entropy``: the paper's normalised entropy, or
    ``majority``), ``instruction`` appended to a plain-text question.
    """

    name = "sc"
    max_samples: int | None = 8
    samples_per_round: int = 2
    max_tokens: int = 2048
    temperature: float = 0.7
    measure: str = "entropy"
    instruction: str | None = DEFAULT_INSTRUCTION
    completions: list[Completion] = field(default_factory=list, init=False, repr=False)
    keys: list[str | None] = field(default_factory=list, init=False, repr=False)
    answers: list[str | None] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_samples is None or self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {self.max_samples}")
        if self.samples_per_round < 1:
            raise ValueError(f"samples_per_round must be >= 1, got {self.samples_per_round}")
        if self.measure not in ("entropy", "majority"):
            raise ValueError(f"measure must be 'entropy' or 'majority', got {self.measure!r}")

    async def run(self, ctx: Context) -> None:
        sample = GenerateRequest(chat_prompt(ctx.query, self.instruction), self.max_tokens, self.temperature)
        assert self.max_samples is not None
        while len(self.completions) < self.max_samples:
            size = min(self.samples_per_round, self.max_samples - len(self.completions))
            for completion in await ctx.gather([sample] * size):
                answer = extract_boxed(completion.text)
                self.completions.append(completion)
                self.answers.append(answer)
                self.keys.append(canonical_key(answer))
            ctx.report(self.certainty())

    def certainty(self) -> Certainty:
        measure = normalized_entropy if self.measure == "entropy" else majority_fraction
        return measure(self.keys)

    def _leader(self) -> str | None:
        counts = Counter(k for k in self.keys if k is not None)
        return counts.most_common(1)[0][0] if counts else None

    def answer(self) -> str | None:
        leader = self._leader()
        if leader is None:
            return None
        return next(a for a, k in zip(self.answers, self.keys, strict=True) if k == leader)

    def output(self) -> str:
        """The first sample that reached the majority answer (the winning path)."""
        leader = self._leader()
        for completion, key in zip(self.completions, self.keys, strict=True):
            if key == leader and leader is not None:
                return completion.text
        return self.completions[0].text if self.completions else ""
