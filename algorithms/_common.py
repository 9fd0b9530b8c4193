"""Pieces every reasoning program needs: prompts, answer clusters, votes."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from algorithms.protocol import ChatMessage, Completion, QueryInfo

__all__ = [
    "DEFAULT_INSTRUCTION",
    "chat_prompt",
    "check_rounds",
    "continue_prompt",
    "mean_logprob_confidence",
    "weighted_vote",
]

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def chat_prompt(query: QueryInfo, instruction: str | None = DEFAULT_INSTRUCTION) -> list[ChatMessage]:
    """The query as chat messages, with ``instruction`` appended to a plain-text question."""
    if not isinstance(query.prompt, str):
        return list(query.prompt)
    content = query.prompt if not instruction else f"{query.prompt}\n{instruction}"
    return [{"role": "user", "content": content}]


def continue_prompt(messages: Sequence[ChatMessage], assistant: str) -> list[ChatMessage]:
    """``messages`` plus a partial assistant message for the engine to continue.

    Sent with ``continue_final_message=True``, the engine applies the model's own chat
    template and extends ``assistant`` in place, so the same request shape works for any
    model and the shared prefix stays in the engine's prefix cache.
    """
    return [*messages, {"role": "assistant", "content": assistant}]


def mean_logprob_confidence(completion: Completion) -> float | None:
    r"""A completion's confidence: the geometric-mean token probability, ``exp(mean logprob)``.

    None when the engine returned no logprobs.

    .. math:: c = \exp\Big(\frac{1}{T}\sum_{t=1}^{T} \log p(x_t)\Big)
    """
    if not completion.logprobs:
        return None
    return math.exp(sum(t.logprob for t in completion.logprobs) / len(completion.logprobs))


def weighted_vote(labels: Sequence[int | None], weights: Sequence[float] | None = None) -> int | None:
    r"""The cluster label with the largest total weight (plain majority when ``weights`` is None).

    ``None`` labels (unanswered) never win; ties go to the label seen first.

    .. math:: \hat a = \arg\max_a \sum_{i:\, a_i = a} w_i

    >>> weighted_vote([0, 1, 1]), weighted_vote([0, 1, 1], [3.0, 1.0, 1.0]), weighted_vote([None])
    (1, 0, None)
    """
    if weights is not None and len(weights) != len(labels):
        raise ValueError(f"got {len(weights)} weights for {len(labels)} labels")
    totals: dict[int, float] = defaultdict(float)
    for i, label in enumerate(labels):
        if label is not None:
            totals[label] += 1.0 if weights is None else float(weights[i])
    if not totals:
        return None
    best = max(totals.values())
    return next(label for label in labels if label is not None and totals[label] == best)


def check_rounds(max_samples: int | None, samples_per_round: int) -> None:
    """Validate the knobs of a program that samples in rounds up to a cap."""
    if max_samples is None or max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    if samples_per_round < 1:
        raise ValueError(f"samples_per_round must be >= 1, got {samples_per_round}")
