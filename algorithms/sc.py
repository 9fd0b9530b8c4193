r"""Self-consistency: sample in rounds, stop when the answers agree.

Each round submits ``samples_per_round`` samples as one gang; after the round the program
reports the multi-sample certaindex over answer clusters (equivalent answers, e.g. ``1/2`` and
``0.5``, form one cluster) and the allocator decides whether another round is worth it. The
answer is the majority, optionally weighted by a reward model's score or by the sample's own
token confidence.

Knobs and defaults
------------------
``max_samples`` (8)
    Most samples in all.
``samples_per_round`` (2)
    Gang size of a round; a certaindex report follows each round.
``max_tokens`` (2048), ``temperature`` (0.7)
    Per sample.
``measure`` (``entropy``)
    ``entropy``: the paper's :math:`(\log n - H)/\log n`; ``majority``: the leading share;
    ``beta`` / ``dirichlet``: the posterior probability that the leader stays the leader
    (Adaptive-Consistency), whose error is controlled without calibration.
``vote`` (``majority``)
    ``majority``; ``reward``: weights from ``ctx.score`` (the query's scorer), mapped to
    [0, 1] by ``reward_scale``; ``confidence``: weights :math:`\exp(\text{mean logprob})`
    (asks the engine for logprobs).
``reward_scale`` (``identity``)
    ``identity`` (scores already in [0, 1]), ``sigmoid`` (logits) for ``vote="reward"``.
``answer_kind`` (``math``)
    How answers are read from a sample (:func:`certaindex.extract_answer`).
``instruction``
    Appended to a plain-text question.
``scorer`` (None)
    Name of the scorer for this query when the runtime routes between several
    (:class:`dynasor.scorers.ScorerRouter`); None: the runtime's default.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from algorithms._common import DEFAULT_INSTRUCTION, chat_prompt, check_rounds, mean_logprob_confidence, weighted_vote
from algorithms._registry import register_algorithm
from algorithms.protocol import Completion, Context, GenerateRequest, Program
from certaindex import (
    Certainty,
    RewardScale,
    beta_stop,
    cluster_answers,
    dirichlet_stop,
    extract_answer,
    majority_fraction,
    normalized_entropy,
)

__all__ = ["MEASURES", "SelfConsistency", "chat_prompt"]

MEASURES: dict[str, Callable[[Sequence[Hashable | None]], Certainty]] = {
    "entropy": normalized_entropy,
    "majority": majority_fraction,
    "beta": beta_stop,
    "dirichlet": dirichlet_stop,
}
"""Multi-sample certaindex measures over answer-cluster labels, by name."""

_VOTES = ("majority", "reward", "confidence")


@register_algorithm("sc")
@dataclass
class SelfConsistency(Program):
    """Majority vote over samples drawn in rounds, stopped by Certaindex (see module docs)."""

    name = "sc"
    max_samples: int | None = 8
    samples_per_round: int = 2
    max_tokens: int = 2048
    temperature: float = 0.7
    measure: str = "entropy"
    vote: str = "majority"
    reward_scale: str = "identity"
    answer_kind: str = "math"
    instruction: str | None = DEFAULT_INSTRUCTION
    scorer: str | None = None
    """Which of the runtime's scorers rates this query (read by a routing scorer; None: its default)."""
    completions: list[Completion] = field(default_factory=list, init=False, repr=False)
    answers: list[str | None] = field(default_factory=list, init=False, repr=False)
    labels: list[int | None] = field(default_factory=list, init=False, repr=False)
    weights: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        check_rounds(self.max_samples, self.samples_per_round)
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {self.measure!r}")
        if self.vote not in _VOTES:
            raise ValueError(f"vote must be one of {', '.join(_VOTES)}, got {self.vote!r}")
        self._scale = RewardScale(self.reward_scale)  # type: ignore[arg-type]

    async def run(self, ctx: Context) -> None:
        prompt = chat_prompt(ctx.query, self.instruction)
        logprobs = 1 if self.vote == "confidence" else None
        sample = GenerateRequest(prompt, self.max_tokens, self.temperature, logprobs=logprobs)
        assert self.max_samples is not None
        while len(self.completions) < self.max_samples:
            size = min(self.samples_per_round, self.max_samples - len(self.completions))
            done = await ctx.gather([sample] * size)
            weights = [1.0] * len(done)
            if self.vote == "reward":
                weights = self._scale.apply(await ctx.score(prompt, done)).tolist()
            elif self.vote == "confidence":
                weights = [mean_logprob_confidence(c) or 0.0 for c in done]
            self.completions += done
            self.answers += [extract_answer(c.text, self.answer_kind) for c in done]  # type: ignore[arg-type]
            self.weights += weights
            # Clustering is incremental: earlier labels keep their numbers as samples arrive.
            self.labels = cluster_answers(self.answers)
            ctx.report(self.certainty())

    def certainty(self) -> Certainty:
        """The configured measure over the answer clusters so far."""
        return MEASURES[self.measure](self.labels)

    def _leader(self) -> int | None:
        return weighted_vote(self.labels, None if self.vote == "majority" else self.weights)

    def answer(self) -> str | None:
        leader = self._leader()
        if leader is None:
            return None
        return next(a for a, label in zip(self.answers, self.labels, strict=True) if label == leader)

    def output(self) -> str:
        """The leading cluster's best-weighted sample (the winning path)."""
        leader = self._leader()
        best: tuple[float, str] | None = None
        for completion, label, weight in zip(self.completions, self.labels, self.weights, strict=True):
            if label == leader and leader is not None and (best is None or weight > best[0]):
                best = (weight, completion.text)
        if best is not None:
            return best[1]
        return self.completions[0].text if self.completions else ""
