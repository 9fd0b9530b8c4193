r"""What the tree-search programs (MCTS, REBASE) share: nodes, step requests, certaindex.

A node is one reasoning step; a path from the root is a partial solution, sent to the
engine as a partial assistant message to continue (``continue_final_message``). A *step*
request has the step delimiter as stop string, so it yields one step; a *rollout* request
runs to the end of the solution, which is then split at the delimiter into a chain of
nodes. A step that states an answer, that is empty, or that reaches ``max_depth`` ends its
path.

Certaindex of a tree
--------------------
The paper's tree certaindex is a reward over the explored paths (mean for MCTS, max for
REBASE). Rewards alone cannot tell a confident tree from a lucky leaf, so we multiply by the
agreement of the finished paths' answers:

.. math:: c = r \cdot e, \qquad e = \frac{\log m - H(\text{answers})}{\log m}

with :math:`r` the normalised reward measure and :math:`e` the normalised entropy certaindex
over the :math:`m` finished paths (0 while fewer than ``min_finished`` have finished: two
agreeing paths are too little evidence to stop a search).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from algorithms._common import continue_prompt, weighted_vote
from algorithms.protocol import ChatMessage, Completion, GenerateRequest
from certaindex import Certainty, RewardScale, cluster_answers, extract_answer, normalized_entropy

__all__ = ["Node", "StepConfig", "tree_certainty", "vote_finished"]


@dataclass(eq=False)
class Node:
    """One reasoning step in a search tree."""

    text: str = ""
    parent: Node | None = None
    depth: int = 0
    reward: float = 0.0
    """Normalised reward of the path ending here (0 for the root)."""
    terminal: bool = False
    answer: str | None = None
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    value: float = 0.0
    """Sum of rewards backed up through this node."""

    def path(self) -> list[Node]:
        """Nodes from the root's first step down to this one."""
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]


@dataclass(frozen=True, slots=True)
class StepConfig:
    """How steps are requested and read."""

    delimiter: str = "\n\n"
    step_tokens: int = 256
    rollout_tokens: int = 1024
    temperature: float = 0.8
    max_depth: int = 12
    answer_kind: str = "math"

    def path_text(self, node: Node) -> str:
        """The partial solution ending at ``node``, ready to be continued."""
        steps = [n.text for n in node.path()]
        return "".join(s + self.delimiter for s in steps)

    def request(self, messages: Sequence[ChatMessage], node: Node, *, rollout: bool = False) -> GenerateRequest:
        """A request for the next step after ``node`` (``rollout``: for the rest of the solution)."""
        text = self.path_text(node)
        prompt = continue_prompt(messages, text) if text else list(messages)
        return GenerateRequest(
            prompt,
            self.rollout_tokens if rollout else self.step_tokens,
            self.temperature,
            stop=() if rollout else (self.delimiter,),
            continue_final_message=bool(text),
            tag="rollout" if rollout else "expand",
        )

    def path(self, parent: Node, completion: Completion) -> list[Node]:
        """A rollout split into a chain of nodes below ``parent`` (not yet attached or scored).

        The chain ends at the first step that ends a path; a rollout cut by ``max_tokens``
        leaves its last node open.
        """
        steps = [s.strip() for s in completion.text.split(self.delimiter) if s.strip()] or [""]
        nodes: list[Node] = []
        node = parent
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            cut = last and completion.finish_reason == "length"
            child = self._node(node, step, ended=last and not cut)
            nodes.append(child)
            if child.terminal:
                break
            node = child
        return nodes

    def child(self, parent: Node, completion: Completion) -> Node:
        """The node for one step ``completion`` as a child of ``parent`` (not yet attached or scored)."""
        return self._node(parent, completion.text.strip(), ended=False)

    def _node(self, parent: Node, text: str, *, ended: bool) -> Node:
        answer = extract_answer(text, self.answer_kind) if "boxed" in text else None  # type: ignore[arg-type]
        depth = parent.depth + 1
        terminal = ended or answer is not None or not text or depth >= self.max_depth
        if terminal and answer is None and text:
            answer = extract_answer(self.path_text(parent) + text, self.answer_kind)  # type: ignore[arg-type]
        return Node(text=text, parent=parent, depth=depth, terminal=terminal, answer=answer)


def tree_certainty(
    reward: Callable[[Sequence[float], RewardScale | None], Certainty],
    rewards: Sequence[float],
    finished: Sequence[Node],
    measure: str,
    min_finished: int = 3,
) -> Certainty:
    """The tree certaindex ``reward(rewards) * entropy(finished answers)`` (module docs)."""
    r = reward(rewards, None)  # rewards are normalised already
    labels = cluster_answers([n.answer for n in finished])
    e = normalized_entropy(labels).value if len(finished) >= max(min_finished, 2) else 0.0
    details = {"reward": r.value, "agreement": e, "finished": len(finished), "paths": len(rewards)}
    return Certainty(min(1.0, max(0.0, r.value * e)), measure, details)


def vote_finished(finished: Sequence[Node], vote: str) -> Node | None:
    """The finished node whose answer wins: ``best`` reward, or a ``reward``-weighted or plain ``majority``."""
    answered = [n for n in finished if n.answer is not None]
    if not answered:
        return None
    if vote == "best":
        return max(answered, key=lambda n: n.reward)
    labels = cluster_answers([n.answer for n in answered])
    weights = [n.reward for n in answered] if vote == "reward" else None
    leader = weighted_vote(labels, weights)
    members = [n for n, label in zip(answered, labels, strict=True) if label == leader]
    return max(members, key=lambda n: n.reward)
