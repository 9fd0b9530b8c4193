"""Helpers for runtime tests: a scripted backend and virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from algorithms.protocol import Completion
from dynasor.engine.base import Backend, Capacity, EngineRequest


@dataclass
class Call:
    request: EngineRequest
    started: float
    ended: float | None = None
    cancelled: bool = False


@dataclass
class FakeBackend(Backend):
    """Each request sleeps ``duration(request)`` loop seconds, then returns ``text(request)``.

    Tokens accrue one per ``token_time`` seconds so aborted requests report partial usage.
    """

    duration: Callable[[EngineRequest], float] = lambda r: 1.0
    text: Callable[[EngineRequest], str] = lambda r: "x \\boxed{1}"
    tokens: int = 10
    max_seqs: int | None = None
    calls: list[Call] = field(default_factory=list)
    running: int = 0
    peak: int = 0

    def capacity(self) -> Capacity | None:
        return None if self.max_seqs is None else Capacity(self.max_seqs)

    async def generate(self, request: EngineRequest) -> Completion:
        loop = asyncio.get_running_loop()
        call = Call(request, loop.time())
        self.calls.append(call)
        self.running += 1
        self.peak = max(self.peak, self.running)
        request.meter.prompt_tokens = 5
        duration = self.duration(request)
        try:
            await asyncio.sleep(duration)
        except asyncio.CancelledError:
            call.cancelled = True
            elapsed = loop.time() - call.started
            request.meter.completion_tokens = int(self.tokens * elapsed / duration) if duration else 0
            raise
        finally:
            call.ended = loop.time()
            self.running -= 1
        return Completion(self.text(request), 5, self.tokens, "stop")
