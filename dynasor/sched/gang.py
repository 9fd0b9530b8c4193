"""A gang: the sub-requests of one program step, the unit the scheduler queues and dispatches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from algorithms.protocol import GenerateRequest
from dynasor._state import QueryStats

__all__ = ["Gang"]


@dataclass(eq=False)
class Gang:
    """The sub-requests of one program step, dispatched all together or not at all."""

    stats: QueryStats
    """The query the gang belongs to, as policies see it."""
    requests: Sequence[GenerateRequest]
    submitted: float
    request_kv: Sequence[int]
    """Estimated KV-cache tokens each request holds while running."""
    seq: int = 0
    """Submission number, the tie-breaker."""
    priority: int = 0
    """Engine priority given at dispatch (lower runs first)."""
    dispatched: float | None = None
    withdrawn: bool = False
    permit: asyncio.Future[None] | None = field(default=None, repr=False)
    on_dispatch: Callable[[Gang], None] | None = field(default=None, repr=False)
    kv_tokens: int = field(init=False)
    """Sum of ``request_kv``."""
    max_tokens_mean: float = field(init=False)
    """Mean ``max_tokens`` of the requests (a policy's prior for their length)."""

    def __post_init__(self) -> None:
        if not self.requests:
            raise ValueError("a gang needs at least one request")
        self.kv_tokens = sum(self.request_kv)
        self.max_tokens_mean = sum(r.max_tokens for r in self.requests) / len(self.requests)
