r"""Best-of-N with a reward model, or reward-weighted majority.

Samples are drawn in rounds (one gang each) and scored by the query's reward scorer
(``ctx.score``). The answer is the highest-reward sample's (``vote="best"``) or the answer
cluster with the largest total reward (``vote="reward"``). After each round the program
reports a certaindex: ``reward_max``, the best normalised reward so far (the chance that the
best sample is right, for a calibrated reward model), or one of the agreement measures of
self-consistency (``entropy``, ``majority``, ``beta``, ``dirichlet``).

Knobs and defaults
------------------
``max_samples`` (8), ``samples_per_round`` (4), ``max_tokens`` (2048), ``temperature`` (0.7)
``vote`` (``best``)
    ``best`` or ``reward`` (weighted majority).
``measure`` (``reward_max``)
``reward_scale`` (``identity``)
    ``identity`` (scores in [0, 1]) or ``sigmoid`` (logits).
``answer_kind`` (``math``), ``instruction``
``scorer`` (None)
    Name of the scorer for this query when the runtime routes between several
    (:class:`dynasor.scorers.ScorerRouter`); None: the runtime's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from algorithms._common import DEFAULT_INSTRUCTION, chat_prompt, check_rounds, weighted_vote
from algorithms._registry import register_algorithm
from algorithms.protocol import Completion, Context, GenerateRequest, Program
from algorithms.sc import MEASURES
from certaindex import Certainty, RewardScale, cluster_answers, extract_answer, max_reward

__all__ = ["BestOfN"]

_VOTES = ("best", "reward")


@register_algorithm("bon")
@dataclass
class BestOfN(Program):
    """Best-of-N / reward-weighted majority over reward-scored samples (module docs)."""

    name = "bon"
    uses_scorer = True
    max_samples: int | None = 8
    samples_per_round: int = 4
    max_tokens: int = 2048
    temperature: float = 0.7
    vote: str = "best"
    measure: str = "reward_max"
    reward_scale: str = "identity"
    answer_kind: str = "math"
    instruction: str | None = DEFAULT_INSTRUCTION
    scorer: str | None = None
    """Which of the runtime's scorers rates this query (read by a routing scorer; None: its default)."""
    completions: list[Completion] = field(default_factory=list, init=False, repr=False)
    answers: list[str | None] = field(default_factory=list, init=False, repr=False)
    labels: list[int | None] = field(default_factory=list, init=False, repr=False)
    rewards: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        check_rounds(self.max_samples, self.samples_per_round)
        if self.vote not in _VOTES:
            raise ValueError(f"vote must be one of {', '.join(_VOTES)}, got {self.vote!r}")
        if self.measure != "reward_max" and self.measure not in MEASURES:
            raise ValueError(f"measure must be reward_max or one of {', '.join(MEASURES)}, got {self.measure!r}")
        self._scale = RewardScale(self.reward_scale)  # type: ignore[arg-type]

    async def run(self, ctx: Context) -> None:
        prompt = chat_prompt(ctx.query, self.instruction)
        sample = GenerateRequest(prompt, self.max_tokens, self.temperature)
        assert self.max_samples is not None
        while len(self.completions) < self.max_samples:
            size = min(self.samples_per_round, self.max_samples - len(self.completions))
            done = await ctx.gather([sample] * size)
            raw = await ctx.score(prompt, done)
            self.completions += done
            self.rewards += self._scale.apply(raw).tolist()
            self.answers += [extract_answer(c.text, self.answer_kind) for c in done]  # type: ignore[arg-type]
            self.labels = cluster_answers(self.answers)
            ctx.report(self.certainty())

    def certainty(self) -> Certainty:
        if self.measure == "reward_max":
            return max_reward(self.rewards)
        return MEASURES[self.measure](self.labels)

    def _winner(self) -> int | None:
        """Index of the sample whose text is returned."""
        answered = [i for i, a in enumerate(self.answers) if a is not None]
        if not answered:
            return None
        if self.vote == "best":
            return max(answered, key=lambda i: self.rewards[i])
        leader = weighted_vote(self.labels, self.rewards)
        return max((i for i in answered if self.labels[i] == leader), key=lambda i: self.rewards[i])

    def answer(self) -> str | None:
        winner = self._winner()
        return None if winner is None else self.answers[winner]

    def output(self) -> str:
        winner = self._winner()
        return self.completions[winner].text if winner is not None else ""
