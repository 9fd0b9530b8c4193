"""Helpers for program tests: run queries on the sim engine in virtual time, scripted content."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import looptime

from dynasor import Budget, Query, QueryResult, RequestRecord
from dynasor.allocator import AllocatorConfig, StopRule
from dynasor.engine.base import EngineRequest, Scorer
from dynasor.engine.sim import Draft, SimBackend, Source
from dynasor.runtime import Runtime
from dynasor.scorers import SyntheticScorer

T = TypeVar("T")


def vrun(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on a virtual-time loop (starting at 0 s)."""
    with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=0.0)) as runner:
        return runner.run(main())


def rules(**by_algorithm: StopRule) -> AllocatorConfig:
    """An allocator config with exactly these stop rules (no early exit for the rest)."""
    return AllocatorConfig(dict(by_algorithm))


NO_RULES = AllocatorConfig({})


@dataclass
class Run:
    result: QueryResult
    events: list[Mapping[str, Any]]
    backend: SimBackend

    @property
    def reports(self) -> list[Mapping[str, Any]]:
        return [e for e in self.events if e.get("type") == "report"]

    def records(self, tag: str | None = None) -> list[RequestRecord]:
        return [r for r in self.result.requests if tag is None or r.tag == tag]


def run_query(
    source: Source,
    algorithm: str,
    params: Mapping[str, Any] | None = None,
    *,
    qid: str = "q",
    prompt: str = "What is 6 times 7?",
    allocator: AllocatorConfig = NO_RULES,
    scorer: Scorer | None = None,
    budget: Budget | None = None,
    cancel_after: float | None = None,
) -> Run:
    """Run one query on a simulated H100 with ``source`` content, in virtual time."""

    async def main() -> Run:
        backend = SimBackend("h100-llama3-8b", source)
        runtime = Runtime(backend, allocator=allocator, scorer=scorer or SyntheticScorer())
        events: list[Mapping[str, Any]] = []
        query = Query(prompt, algorithm, dict(params or {}), budget=budget or Budget(), id=qid)
        task = asyncio.create_task(runtime.run(query, on_event=events.append))
        if cancel_after is not None:
            await asyncio.sleep(cancel_after)
            runtime.cancel(qid)
        result = await task
        await asyncio.sleep(0)
        run = Run(result, events, backend)
        assert backend.engine.running == 0, "a stopped query left sequences running in the engine"
        await runtime.aclose()
        return run

    return vrun(main)


def gangs(records: Sequence[RequestRecord]) -> list[int]:
    """Sizes of the gangs, in order: requests submitted together form one gang."""
    sizes: dict[float, int] = {}
    for record in sorted(records, key=lambda r: r.submitted):
        sizes[record.submitted] = sizes.get(record.submitted, 0) + 1
    return list(sizes.values())


@dataclass
class ScriptedSource(Source):
    """Hands out ``script`` entries in order (cycling): (text, tokens, meta)."""

    script: Sequence[tuple[str, int, Mapping[str, Any]]]
    drawn: int = 0
    requests: list[EngineRequest] = field(default_factory=list)

    def draft(self, request: EngineRequest) -> Draft:
        self.requests.append(request)
        text, tokens, meta = self.script[self.drawn % len(self.script)]
        self.drawn += 1
        return Draft(text, tokens, meta=meta)
