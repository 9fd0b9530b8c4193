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
    The agreement measure reported (:data:`certaindex.AGREEMENT_MEASURES`): ``entropy``, the
    paper's :math:`(\log n - H)/\log n`; ``majority``, the leading share; ``beta`` /
    ``dirichlet``, the posterior probability that the leader stays the leader
    (Adaptive-Consistency); ``esc``, the leading share of the last round (ESC's window is the
    round). Every report also carries the samples' cluster labels (``details["labels"]``), so a
    stop rule reading any agreement measure decides on them, whatever this knob says.
``abstentions`` (``class``)
    How samples without an answer enter the reported measure (:func:`certaindex.treat_abstentions`).
``vote`` (``majority``)
    ``majority``; ``reward``: weights from ``ctx.score`` (the query's scorer), mapped to
    [0, 1] by ``reward_scale``; ``confidence``: weights :math:`\exp(\text{mean logprob})`
    (asks the engine for logprobs).
``reward_scale`` (``identity``)
    ``identity`` (scores already in [0, 1]), ``sigmoid`` (logits) for ``vote="reward"``.
``answer_kind`` (``math``)
    How answers are read from a sample: ``math`` (:func:`certaindex.extract_answer`, clusters by
    equivalence), ``choice`` (an option letter, :func:`certaindex.extract_option`), ``code``
    (the last code block). A sample that carries a recorded answer (``meta["answer"]``, as a
    replayed trace's does) is taken at its word.
``options`` (None)
    A multiple-choice question's options (a list, lettered A, B, ..., or ``{letter: text}``):
    a stated option text or value counts as its letter.
``seed`` (None)
    Per-sample seeds: sample ``i`` of the query asks the engine for seed ``seed + i``, so two
    runs of the query draw the same samples in the same order (paired comparisons).
``instruction``
    Appended to a plain-text question.
``scorer`` (None)
    Name of the scorer for this query when the runtime routes between several
    (:class:`dynasor.scorers.ScorerRouter`); None: the runtime's default.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from algorithms._common import DEFAULT_INSTRUCTION, chat_prompt, check_rounds, mean_logprob_confidence, weighted_vote
from algorithms._registry import register_algorithm
from algorithms.protocol import Completion, Context, GenerateRequest, Program
from certaindex import (
    ABSTENTIONS,
    AGREEMENT_MEASURES,
    ESC_WINDOW,
    Certainty,
    RewardScale,
    Trajectory,
    choice_key,
    cluster_answers,
    extract_answer,
    extract_option,
    normalize_options,
    value_key,
)

__all__ = ["MEASURES", "SelfConsistency", "agreement_certainty", "chat_prompt"]


def agreement_certainty(
    labels: Sequence[Hashable | None], measure: str, abstentions: str = "class", window: int = ESC_WINDOW
) -> Certainty:
    """An agreement measure over answer-cluster labels (``None``: no answer), labels included.

    The value is the one a replay of the same samples computes (:meth:`certaindex.Trajectory.from_labels`);
    ``details["labels"]`` lets a stop rule reading another agreement measure decide on the same
    samples. ``window`` is ESC's.

    >>> c = agreement_certainty([0, 0, None, 1], "majority", "ignore")
    >>> round(c.value, 3), c.details["labels"]
    (0.667, [0, 0, None, 1])
    """
    labels = list(labels)
    answered = sum(label is not None for label in labels)
    details: dict[str, Any] = {"labels": labels, "abstentions": abstentions, "answered": answered}
    if not labels:
        return Certainty(0.0, measure, details)
    values = Trajectory.from_labels(labels).values[value_key(measure, abstentions, window)]
    return Certainty(float(min(max(values[-1], 0.0), 1.0)), measure, details)


MEASURES: dict[str, Callable[[Sequence[Hashable | None]], Certainty]] = {
    m: partial(agreement_certainty, measure=m) for m in AGREEMENT_MEASURES
}
"""Multi-sample certaindex measures over answer-cluster labels, by name (abstentions as one class)."""

_VOTES = ("majority", "reward", "confidence")
_KINDS = ("math", "gsm8k", "choice", "code")


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
    abstentions: str = "class"
    vote: str = "majority"
    reward_scale: str = "identity"
    answer_kind: str = "math"
    options: Mapping[str, str] | Sequence[str] | None = None
    seed: int | None = None
    instruction: str | None = DEFAULT_INSTRUCTION
    scorer: str | None = None
    """Which of the runtime's scorers rates this query (read by a routing scorer; None: its default)."""
    completions: list[Completion] = field(default_factory=list, init=False, repr=False)
    answers: list[str | None] = field(default_factory=list, init=False, repr=False)
    labels: list[int | None] = field(default_factory=list, init=False, repr=False)
    weights: list[float] = field(default_factory=list, init=False, repr=False)

    @property
    def uses_scorer(self) -> bool:  # type: ignore[override]
        return self.vote == "reward"

    def __post_init__(self) -> None:
        check_rounds(self.max_samples, self.samples_per_round)
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {self.measure!r}")
        if self.abstentions not in ABSTENTIONS:
            raise ValueError(f"abstentions must be one of {', '.join(ABSTENTIONS)}, got {self.abstentions!r}")
        if self.answer_kind not in _KINDS:
            raise ValueError(f"answer_kind must be one of {', '.join(_KINDS)}, got {self.answer_kind!r}")
        self._options = normalize_options(self.options)
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
            done = await ctx.gather([self._seeded(sample, len(self.completions) + i) for i in range(size)])
            weights = [1.0] * len(done)
            if self.vote == "reward":
                weights = self._scale.apply(await ctx.score(prompt, done)).tolist()
            elif self.vote == "confidence":
                weights = [mean_logprob_confidence(c) or 0.0 for c in done]
            self.completions += done
            self.answers += [self._answer_of(c) for c in done]
            self.weights += weights
            # Clustering is incremental: earlier labels keep their numbers as samples arrive.
            self.labels = self._cluster(self.answers)
            ctx.report(self.certainty())

    def _seeded(self, request: GenerateRequest, index: int) -> GenerateRequest:
        return request if self.seed is None else replace(request, seed=self.seed + index)

    def _answer_of(self, completion: Completion) -> str | None:
        """The sample's answer: the recorded one when it carries one, else read from its text."""
        if "answer" in completion.meta:
            recorded = completion.meta["answer"]
            answer = None if recorded is None else str(recorded)
        elif self.answer_kind == "choice":
            answer = extract_option(completion.text, self._options or None)
        else:
            answer = extract_answer(completion.text, self.answer_kind)  # type: ignore[arg-type]
        if self.answer_kind == "choice":
            return choice_key(answer, self._options or None)
        return answer

    def _cluster(self, answers: Sequence[str | None]) -> list[int | None]:
        if self.answer_kind in ("math", "gsm8k"):
            return cluster_answers(answers)
        # Option letters and code (or behaviour signatures) agree when they are equal.
        numbers: dict[str, int] = {}
        return [None if a is None else numbers.setdefault(a, len(numbers)) for a in answers]

    def certainty(self) -> Certainty:
        """The configured measure over the answer clusters so far (the labels ride along)."""
        return agreement_certainty(self.labels, self.measure, self.abstentions, self.samples_per_round)

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
