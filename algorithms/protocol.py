"""The program protocol: what a reasoning program sees of the runtime.

A reasoning program is plain async Python. It asks for generations through a
:class:`Context` in *gangs* (all calls of one step together), reports a
:class:`~certaindex.Certainty` after each step, and can say at any moment what its best
answer is. It never talks to an engine: the runtime behind ``ctx`` schedules the calls,
applies the stopping policy and, when the query stops, cancels the program (the pending
``await`` raises :class:`asyncio.CancelledError`) and aborts its in-flight sub-requests.

This module imports nothing heavy so that algorithms and user code can depend on it alone.

Example
-------
>>> class Majority(Program):
...     def __init__(self) -> None:
...         self.answers: list[str | None] = []
...     async def run(self, ctx: Context) -> None:
...         for _ in range(4):
...             done = await ctx.gather([GenerateRequest(ctx.query.prompt, max_tokens=512)] * 2)
...             self.answers += [c.text for c in done]
...             ctx.report(normalized_entropy(self.answers))
...     def answer(self) -> str | None:
...         return max(set(self.answers), key=self.answers.count) if self.answers else None
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from certaindex import Certainty, normalized_entropy  # noqa: F401  (normalized_entropy: doctest)

__all__ = [
    "ChatMessage",
    "Completion",
    "Context",
    "GenerateRequest",
    "Program",
    "QueryInfo",
    "TokenLogprob",
]

ChatMessage = Mapping[str, Any]
"""One OpenAI-style chat message, e.g. ``{"role": "user", "content": "..."}``."""

FinishReason = Literal["stop", "length", "abort", "error"]


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """One generation call of a program; a gang is a list of these.

    ``prompt`` is either raw text (completion endpoint, the program applied its own
    template) or a list of chat messages (chat endpoint, the engine applies its template).
    ``continue_final_message`` asks the engine to extend the last assistant message instead
    of opening a new one (what a chain of thought decoded in chunks needs).
    """

    prompt: str | Sequence[ChatMessage]
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    """Return this many top logprobs per generated token (None: no logprobs)."""
    seed: int | None = None
    continue_final_message: bool = False
    tag: str = "sample"
    """What the call is for (``sample``, ``probe``, ``expand``, ...); engines ignore it."""
    on_text: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    """Called with each text delta as it streams in (for relaying a chain of thought)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Engine-specific sampling fields passed through unchanged (``top_k``, ``min_p``, ...)."""

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not isinstance(self.prompt, str) and not self.prompt:
            raise ValueError("a chat prompt needs at least one message")


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token with its logprob and the engine's top alternatives."""

    token: str
    logprob: float
    top: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Completion:
    """What one :class:`GenerateRequest` produced."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    logprobs: tuple[TokenLogprob, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Backend extras. Replayed traces put the recorded reward ``score`` here."""


@dataclass(frozen=True, slots=True)
class QueryInfo:
    """What a program may know of its query."""

    id: str
    prompt: str | Sequence[ChatMessage]
    """The user's question: a string, or the chat messages the client sent."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """The algorithm's knobs as the client or config gave them."""


@runtime_checkable
class Context(Protocol):
    """The runtime as a program sees it. One context per query."""

    @property
    def query(self) -> QueryInfo:
        """The query this program answers."""
        ...

    @property
    def samples(self) -> int:
        """Generation calls completed so far (probes included)."""
        ...

    @property
    def tokens(self) -> int:
        """Completion tokens generated so far."""
        ...

    @property
    def remaining_samples(self) -> int | None:
        """Calls the budget still allows (None: no cap). A gang larger than this is trimmed."""
        ...

    async def gather(self, requests: Sequence[GenerateRequest]) -> list[Completion]:
        """Submit one gang and wait for all of it; results are in request order.

        The gang is dispatched whole. When the budget allows fewer calls than asked, the
        gang is trimmed (the result is shorter); when it allows none, the query stops.
        """
        ...

    async def generate(self, request: GenerateRequest) -> Completion:
        """A gang of one."""
        ...

    async def score(self, prompt: str | Sequence[ChatMessage], responses: Sequence[Completion]) -> list[float]:
        """Reward for each response to ``prompt``, from the query's configured scorer."""
        ...

    def report(self, certainty: Certainty) -> None:
        """Tell the runtime how certain the program is after a step.

        The allocator decides at once; if the query must stop, the program is cancelled
        at its next ``await`` and :meth:`Program.answer` gives the result.
        """
        ...

    def emit(self, event: Mapping[str, Any]) -> None:
        """Publish a progress event (streamed to clients that asked for progress)."""
        ...


class Program(ABC):
    """A reasoning program: ``run`` it with a context, ask ``answer`` at any time."""

    name: str = "program"
    max_samples: int | None = None
    """Most generation calls the program will make (None: open-ended). The runtime caps the
    query at this and measures tokens saved against it."""
    token_budget: int | None = None
    """Completion tokens the same request would cost without early exit, what ``tokens_saved``
    is measured against (None: ``max_samples`` times the largest request)."""
    uses_scorer: bool = False
    """Whether :meth:`run` calls ``ctx.score``: whoever runs the query refuses it up front,
    before any sample is drawn, when no reward scorer is configured."""

    @abstractmethod
    async def run(self, ctx: Context) -> None:
        """Do the reasoning. Returning means the program finished on its own."""

    @abstractmethod
    def answer(self) -> str | None:
        """Best answer so far (None if there is none yet). Must be cheap and never raise."""

    def output(self) -> str:
        """Text returned to the client: the answer with whatever reasoning shows it.

        Defaults to the bare answer; programs with a winning path override this.
        """
        answer = self.answer()
        return "" if answer is None else answer
