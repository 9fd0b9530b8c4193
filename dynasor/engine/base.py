"""The backend interface: one small class per engine, like an httpx transport.

A backend runs single generation requests. Cancelling the task that awaits
:meth:`Backend.generate` must abort the request in the engine (close the stream, free
the sequence): that is how a stopped query stops costing tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from algorithms.protocol import ChatMessage, Completion, GenerateRequest, QueryInfo

__all__ = ["Backend", "Capacity", "EngineRequest", "Scorer", "UsageMeter", "prompt_text"]


def prompt_text(prompt: str | Sequence[ChatMessage]) -> str:
    """A prompt as one string (chat messages joined)."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content") or "") for m in prompt)


@dataclass(slots=True)
class UsageMeter:
    """Tokens a request has cost so far; backends keep it current while it runs.

    A cancelled request raises instead of returning a :class:`Completion`, so this is where
    the tokens it consumed before the abort are read from.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """A program's request as dispatched by the scheduler."""

    id: str
    query_id: str
    request: GenerateRequest
    priority: int = 0
    """Engine priority, vLLM convention: lower runs first. Backends map it to their engine's."""
    meter: UsageMeter = field(default_factory=UsageMeter, compare=False)
    """Updated by the backend as tokens are produced (exact figures once it completes)."""


@dataclass(frozen=True, slots=True)
class Capacity:
    """How much the scheduler may keep in flight on a backend at once."""

    max_seqs: int
    """Running sequences (vLLM ``max_num_seqs``)."""
    max_kv_tokens: int | None = None
    """Estimated KV-cache tokens (prompt + expected completion), None: not limited."""

    def __post_init__(self) -> None:
        if self.max_seqs < 1:
            raise ValueError(f"max_seqs must be >= 1, got {self.max_seqs}")


class Backend(ABC):
    """Executes generation requests on one engine (or a simulation of one)."""

    model: str = "unknown"
    """Model name requests are sent for, and what ``/v1/models`` lists."""

    @abstractmethod
    async def generate(self, request: EngineRequest) -> Completion:
        """Run ``request`` to completion and return it.

        Calls ``request.request.on_text`` with each text delta when it is set, and keeps
        ``request.meter`` current (so a cancelled request's cost is still known).
        Cancelling the awaiting task aborts the request in the engine.
        Raises :class:`~dynasor.EngineError` (or a subclass) on engine failures.
        """

    def capacity(self) -> Capacity | None:
        """The engine's batch limits if the backend knows them (the scheduler's default)."""
        return None

    async def check_health(self) -> None:  # noqa: B027  (optional hook)
        """Raise :class:`~dynasor.EngineUnavailable` when the engine cannot serve now.

        What the proxy probes to keep its replicas' health current; an engine without a
        cheaper check may leave it as is (always healthy).
        """

    async def aclose(self) -> None:  # noqa: B027  (optional hook)
        """Release connections and background tasks."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Scorer(ABC):
    """Gives a reward to each response of a query (reward model, judge, replay, ...)."""

    needs_logprobs: int | None = None
    """Top logprobs per token the scorer reads from each response (None: none); whoever runs
    the query asks the engine for them."""

    @abstractmethod
    async def score(
        self,
        query: QueryInfo,
        prompt: str | Sequence[ChatMessage],
        responses: Sequence[Completion],
    ) -> list[float]:
        """One reward per response, higher is better, in response order."""

    async def aclose(self) -> None:  # noqa: B027  (optional hook)
        """Release resources."""
