"""Programs the evaluator builds itself: self-consistency whose answers are program behaviour.

The registered ``sc`` program clusters samples by their extracted math answer. On code, two
samples are "the same answer" when the programs behave the same, which needs the problem's
example inputs and a sandbox; :class:`KeyedSelfConsistency` takes the key of a sample from an
async function instead (behaviour signature on a live engine, the recorded signature on a
replayed trace), and returns the program text of the leading cluster as its answer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from algorithms import SelfConsistency
from algorithms.protocol import Completion, Context, GenerateRequest, Program
from algorithms.sc import chat_prompt

__all__ = ["CODE_INSTRUCTION", "KeyedSelfConsistency", "chosen_completion"]

CODE_INSTRUCTION = (
    "Write a complete, self-contained Python solution. Put the whole function in one ```python code block."
)

Keyer = Callable[[Completion], Coroutine[Any, Any, tuple[str | None, str | None]]]
"""Maps a completion to ``(answer, key)``: what it answers and the cluster it belongs to."""


@dataclass
class KeyedSelfConsistency(SelfConsistency):
    """Self-consistency with answers and cluster keys from ``keyer`` (same knobs as ``sc``).

    Samples with equal keys form one cluster; a sample whose key is None (no program, or one
    that does not load) answers nothing.
    """

    instruction: str | None = CODE_INSTRUCTION
    keyer: Keyer | None = field(default=None, repr=False)
    keys: list[str | None] = field(default_factory=list, init=False, repr=False)

    async def run(self, ctx: Context) -> None:
        if self.keyer is None:
            raise ValueError("KeyedSelfConsistency needs a keyer")
        sample = GenerateRequest(chat_prompt(ctx.query, self.instruction), self.max_tokens, self.temperature)
        assert self.max_samples is not None
        numbers: dict[str, int] = {}
        while len(self.completions) < self.max_samples:
            size = min(self.samples_per_round, self.max_samples - len(self.completions))
            batch = await ctx.gather([sample] * size)
            async with asyncio.TaskGroup() as group:
                keying = [group.create_task(self.keyer(c)) for c in batch]
            keyed = [task.result() for task in keying]
            for completion, (answer, key) in zip(batch, keyed, strict=True):
                self.completions.append(completion)
                self.answers.append(answer)
                self.keys.append(key)
                self.weights.append(1.0)
                self.labels.append(None if key is None else numbers.setdefault(key, len(numbers)))
            ctx.report(self.certainty())


def chosen_completion(program: Program) -> Completion | None:
    """The sample behind a self-consistency program's current answer (its leading cluster's first).

    None for programs that do not keep ``completions`` and cluster ``labels`` the way ``sc`` does.
    """
    completions = getattr(program, "completions", None)
    labels = getattr(program, "labels", None)
    if not isinstance(completions, list) or not isinstance(labels, list) or len(labels) != len(completions):
        return None
    leader_of = getattr(program, "_leader", None)
    if callable(leader_of):
        leader = leader_of()
    else:
        counts = Counter(label for label in labels if label is not None)
        leader = counts.most_common(1)[0][0] if counts else None
    if leader is None:
        return None
    return next(c for c, label in zip(completions, labels, strict=True) if label == leader)
