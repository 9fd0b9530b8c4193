r"""Monte-Carlo tree search over reasoning steps.

One iteration: *select* a node from the root by UCT (descending while the node already has
``width`` children), *expand* it with ``width`` samples as one gang, *evaluate* each with the
query's reward scorer (``ctx.score``, e.g. a process-reward model), *back up* the rewards to
the root. Then report the tree certaindex: mean normalised reward over the explored paths
times the answer agreement of the finished paths (:mod:`algorithms._tree`). Selecting a
finished leaf backs its reward up again without sampling (the search keeps confirming it).

With ``rollout`` (the default) a sample runs from the node to the end of the solution
(simulation) and is split at the delimiter into a chain of step nodes, so every sample
finishes a path; without it a sample is one step (the delimiter is its stop string) and
paths finish only as the tree deepens.

.. math:: \text{UCT}(v) = \frac{Q_v}{N_v} + c \sqrt{\frac{\ln N_{\text{parent}}}{N_v}}

Knobs and defaults
------------------
``iterations`` (6), ``width`` (4)
    Select-expand-evaluate rounds, and samples per expansion (gang size; also the most
    children a node gets). At most ``iterations * width`` samples.
``exploration`` (1.0)
    :math:`c` in UCT.
``rollout`` (True), ``rollout_tokens`` (1024)
    Samples run to the end of the solution (at most ``rollout_tokens``), or are one step.
``delimiter`` (``"\n\n"``), ``step_tokens`` (256), ``temperature`` (0.8), ``max_depth`` (12)
    Steps are split at the delimiter (a stop string for one-step samples).
``reward_scale`` (``identity``)
    Maps scorer output to [0, 1]: ``identity``, ``sigmoid`` (logits).
``vote`` (``reward``)
    Answer from the finished paths: ``reward``-weighted majority, ``majority`` or ``best``.
``min_finished`` (3)
    Finished paths needed before their agreement counts (until then the certaindex is 0).
``answer_kind`` (``math``), ``instruction``
``scorer`` (None)
    Name of the scorer for this query when the runtime routes between several
    (:class:`dynasor.scorers.ScorerRouter`); None: the runtime's default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from algorithms._common import DEFAULT_INSTRUCTION, chat_prompt
from algorithms._registry import register_algorithm
from algorithms._tree import Node, StepConfig, tree_certainty, vote_finished
from algorithms.protocol import Completion, Context, Program
from certaindex import Certainty, RewardScale, mean_reward

__all__ = ["MonteCarloTreeSearch"]

_VOTES = ("reward", "majority", "best")


@register_algorithm("mcts")
@dataclass
class MonteCarloTreeSearch(Program):
    """MCTS over reasoning steps, reward-evaluated, stopped by Certaindex (module docs)."""

    name = "mcts"
    uses_scorer = True
    iterations: int = 6
    width: int = 4
    exploration: float = 1.0
    rollout: bool = True
    rollout_tokens: int = 1024
    delimiter: str = "\n\n"
    step_tokens: int = 256
    temperature: float = 0.8
    max_depth: int = 12
    reward_scale: str = "identity"
    vote: str = "reward"
    min_finished: int = 3
    answer_kind: str = "math"
    instruction: str | None = DEFAULT_INSTRUCTION
    scorer: str | None = None
    """Which of the runtime's scorers rates this query (read by a routing scorer; None: its default)."""
    root: Node = field(default_factory=Node, init=False, repr=False)
    explored: list[Node] = field(default_factory=list, init=False, repr=False)
    """Every node created, in order."""

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.width < 1:
            raise ValueError(f"iterations and width must be >= 1, got {self.iterations}, {self.width}")
        if self.vote not in _VOTES:
            raise ValueError(f"vote must be one of {', '.join(_VOTES)}, got {self.vote!r}")
        self.max_samples = self.iterations * self.width
        self._scale = RewardScale(self.reward_scale)  # type: ignore[arg-type]
        self._steps = StepConfig(
            self.delimiter, self.step_tokens, self.rollout_tokens, self.temperature, self.max_depth, self.answer_kind
        )

    async def run(self, ctx: Context) -> None:
        messages = chat_prompt(ctx.query, self.instruction)
        for _ in range(self.iterations):
            leaf = self.select()
            if leaf.terminal:
                self.backup(leaf, leaf.reward)
            else:
                request = self._steps.request(messages, leaf, rollout=self.rollout)
                done = await ctx.gather([request] * (self.width - len(leaf.children)))
                raw = await ctx.score(request.prompt, done)
                for completion, reward in zip(done, self._scale.apply(raw).tolist(), strict=True):
                    self._attach(leaf, completion, reward)
            ctx.report(self.certainty())

    def _attach(self, leaf: Node, completion: Completion, reward: float) -> None:
        nodes = self._steps.path(leaf, completion) if self.rollout else [self._steps.child(leaf, completion)]
        parent = leaf
        for node in nodes:
            node.reward = reward
            parent.children.append(node)
            self.explored.append(node)
            parent = node
        self.backup(nodes[-1], reward)

    def select(self) -> Node:
        """Descend by UCT from the root to a node with room for children (or a finished leaf)."""
        node = self.root
        while len(node.children) >= self.width:
            parent_visits = max(node.visits, 1)
            node = max(node.children, key=lambda c: self._uct(c, parent_visits))
        return node

    def _uct(self, node: Node, parent_visits: int) -> float:
        if node.visits == 0:
            return math.inf
        return node.value / node.visits + self.exploration * math.sqrt(math.log(parent_visits) / node.visits)

    @staticmethod
    def backup(node: Node, reward: float) -> None:
        """Add ``reward`` to ``node`` and every ancestor."""
        current: Node | None = node
        while current is not None:
            current.visits += 1
            current.value += reward
            current = current.parent

    def finished(self) -> list[Node]:
        return [n for n in self.explored if n.terminal]

    def certainty(self) -> Certainty:
        """Mean reward over explored paths times the finished paths' answer agreement."""
        # A path's reward sits on each of its nodes: average over path ends, not nodes.
        ends = [n for n in self.explored if not n.children]
        return tree_certainty(mean_reward, [n.reward for n in ends], self.finished(), "mcts", self.min_finished)

    def answer(self) -> str | None:
        best = vote_finished(self.finished(), self.vote)
        return None if best is None else best.answer

    def output(self) -> str:
        """The winning path's steps."""
        best = vote_finished(self.finished(), self.vote)
        if best is None:
            return ""
        return self.delimiter.join(n.text for n in best.path())
