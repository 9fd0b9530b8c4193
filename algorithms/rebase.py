r"""REBASE: reward-balanced search over reasoning steps.

The tree grows one depth at a time. At each depth the open (unfinished) nodes share the
width budget ``W - f`` (``f``: paths finished so far) in proportion to a softmax of their
rewards,

.. math:: n_i = \operatorname{round}\Big((W - f)\, \frac{e^{r_i / T}}{\sum_j e^{r_j / T}}\Big)

(largest remainders, so the shares add up), and *all* expansions of the depth go out as one
gang, so the engine batches them and a stop aborts them together. New steps are scored with
the query's reward scorer. After each depth the program reports the tree certaindex: the best
normalised reward times the answer agreement of the finished paths (:mod:`algorithms._tree`).
The search ends when ``W`` paths have finished or nothing is open.

Knobs and defaults
------------------
``width`` (8)
    W, the number of paths (and the largest gang).
``balance_temperature`` (0.2)
    T of the softmax: lower concentrates the budget on the best nodes.
``max_depth`` (12), ``delimiter`` (``"\n\n"``), ``step_tokens`` (256), ``temperature`` (0.8)
``reward_scale`` (``identity``), ``vote`` (``reward``), ``min_finished`` (3), ``answer_kind`` (``math``),
``instruction``
    As in :mod:`algorithms.mcts`.
``scorer`` (None)
    Name of the scorer for this query when the runtime routes between several
    (:class:`dynasor.scorers.ScorerRouter`); None: the runtime's default.

References
----------
Wu et al., "Inference Scaling Laws: An Empirical Analysis of Compute-Optimal Inference for
Problem-Solving with Language Models" (REBASE), ICLR 2025.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from algorithms._common import DEFAULT_INSTRUCTION, chat_prompt
from algorithms._registry import register_algorithm
from algorithms._tree import Node, StepConfig, tree_certainty, vote_finished
from algorithms.protocol import ChatMessage, Completion, Context, GenerateRequest, Program
from certaindex import Certainty, RewardScale, max_reward

__all__ = ["RewardBalancedSearch", "balance"]

_VOTES = ("reward", "majority", "best")


def balance(rewards: Sequence[float], budget: int, temperature: float) -> list[int]:
    """Split ``budget`` expansions over nodes by softmax(reward / temperature), largest remainders.

    >>> balance([0.9, 0.1], 4, 0.2), balance([0.5, 0.5, 0.5], 4, 1.0), balance([0.3], 0, 1.0)
    ([4, 0], [2, 1, 1], [0])
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not rewards:
        return []
    top = max(rewards)
    weights = [math.exp((r - top) / temperature) for r in rewards]
    total = sum(weights)
    exact = [budget * w / total for w in weights]
    shares = [math.floor(x) for x in exact]
    # Largest remainder first; equal remainders go to the higher reward, then the earlier node.
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), -rewards[i], i))
    for i in order[: budget - sum(shares)]:
        shares[i] += 1
    return shares


@register_algorithm("rebase")
@dataclass
class RewardBalancedSearch(Program):
    """REBASE over reasoning steps, stopped by Certaindex (module docs)."""

    name = "rebase"
    uses_scorer = True
    width: int = 8
    balance_temperature: float = 0.2
    max_depth: int = 12
    delimiter: str = "\n\n"
    step_tokens: int = 256
    temperature: float = 0.8
    reward_scale: str = "identity"
    vote: str = "reward"
    min_finished: int = 3
    answer_kind: str = "math"
    instruction: str | None = DEFAULT_INSTRUCTION
    scorer: str | None = None
    """Which of the runtime's scorers rates this query (read by a routing scorer; None: its default)."""
    root: Node = field(default_factory=Node, init=False, repr=False)
    explored: list[Node] = field(default_factory=list, init=False, repr=False)
    gang_sizes: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.width < 1 or self.max_depth < 1:
            raise ValueError(f"width and max_depth must be >= 1, got {self.width}, {self.max_depth}")
        if self.balance_temperature <= 0:
            raise ValueError(f"balance_temperature must be > 0, got {self.balance_temperature}")
        if self.vote not in _VOTES:
            raise ValueError(f"vote must be one of {', '.join(_VOTES)}, got {self.vote!r}")
        self.max_samples = self.width * self.max_depth
        self._scale = RewardScale(self.reward_scale)  # type: ignore[arg-type]
        self._steps = StepConfig(
            self.delimiter,
            self.step_tokens,
            temperature=self.temperature,
            max_depth=self.max_depth,
            answer_kind=self.answer_kind,
        )

    async def run(self, ctx: Context) -> None:
        messages = chat_prompt(ctx.query, self.instruction)
        frontier = [self.root]
        while frontier:
            budget = self.width - len(self.finished())
            if budget <= 0:
                return
            shares = balance([n.reward for n in frontier], budget, self.balance_temperature)
            parents = [node for node, share in zip(frontier, shares, strict=True) for _ in range(share)]
            requests = [self._steps.request(messages, node) for node in parents]
            done = await ctx.gather(requests)
            self.gang_sizes.append(len(requests))
            children = await self._evaluate(ctx, parents[: len(done)], requests, done)
            frontier = [c for c in children if not c.terminal]
            ctx.report(self.certainty())

    async def _evaluate(
        self,
        ctx: Context,
        parents: list[Node],
        requests: list[GenerateRequest],
        done: list[Completion],
    ) -> list[Node]:
        """Score the new steps (one scorer call per parent, concurrently) and attach them."""
        groups: dict[int, list[int]] = {}
        for i, parent in enumerate(parents):
            groups.setdefault(id(parent), []).append(i)
        rewards = [0.0] * len(done)

        async def score(indices: list[int]) -> None:
            prompt: str | Sequence[ChatMessage] = requests[indices[0]].prompt
            raw = await ctx.score(prompt, [done[i] for i in indices])
            for i, value in zip(indices, self._scale.apply(raw).tolist(), strict=True):
                rewards[i] = value

        async with asyncio.TaskGroup() as tg:
            for indices in groups.values():
                tg.create_task(score(indices))
        children = []
        for parent, completion, reward in zip(parents, done, rewards, strict=True):
            child = self._steps.child(parent, completion)
            child.reward = reward
            parent.children.append(child)
            self.explored.append(child)
            children.append(child)
        return children

    def finished(self) -> list[Node]:
        return [n for n in self.explored if n.terminal]

    def certainty(self) -> Certainty:
        """Best reward over explored paths times the finished paths' answer agreement."""
        return tree_certainty(
            max_reward, [n.reward for n in self.explored], self.finished(), "rebase", self.min_finished
        )

    def answer(self) -> str | None:
        best = vote_finished(self.finished(), self.vote)
        return None if best is None else best.answer

    def output(self) -> str:
        """The winning path's steps."""
        best = vote_finished(self.finished(), self.vote)
        if best is None:
            return ""
        return self.delimiter.join(n.text for n in best.path())
