"""Every program end to end on the real vLLM CPU server (marker ``engine``), kept tiny.

``bon`` is scored by the LLM judge on the same server (the scorer that needs no extra
model); the tree searches by the seeded synthetic scorer, to keep the server's load small.
The HTTP reward-model scorer is tested against a mocked vLLM in
``tests/dynasor/test_scorers.py`` because no pooling server runs in CI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from algorithms import make_program
from algorithms.protocol import Completion
from dynasor import Query, QueryResult
from dynasor.allocator import AllocatorConfig
from dynasor.engine.base import EngineRequest
from dynasor.engine.openai import OpenAIBackend
from dynasor.runtime import Runtime
from dynasor.scorers import JudgeScorer, SyntheticScorer
from tests.algorithms.helpers import gangs
from tests.conftest import engine_metric

pytestmark = pytest.mark.engine

TINY: dict[str, tuple[dict[str, Any], list[int]]] = {
    # algorithm: (knobs, expected gang sizes)
    "sc": ({"max_samples": 2, "samples_per_round": 2, "max_tokens": 16}, [2]),
    "cot": ({"max_tokens": 32, "chunk_tokens": 16, "probe_tokens": 6}, []),
    "mcts": ({"iterations": 1, "width": 2, "rollout_tokens": 16}, [2]),
    "rebase": ({"width": 2, "max_depth": 1, "step_tokens": 12}, [2]),
    "bon": ({"max_samples": 2, "samples_per_round": 2, "max_tokens": 16}, [2]),
}


class IgnoreEosBackend(OpenAIBackend):
    """Generates every request to its ``max_tokens``, so no sample can end by itself before a
    test cancels its query (a tiny model often answers "6 times 7" in a dozen tokens)."""

    async def generate(self, request: EngineRequest) -> Completion:
        sampling = replace(request.request, extra={**request.request.extra, "ignore_eos": True})
        return await super().generate(replace(request, request=sampling))


async def run_on_engine(
    url: str, model: str, algorithm: str, params: Mapping[str, Any], *, cancel_when_running: int | None = None
) -> tuple[QueryResult, list[Mapping[str, Any]]]:
    """Run one query; with ``cancel_when_running``, cancel it once that many of its requests are
    generating in the engine (a fixed delay would race a loaded engine's prefill), its requests
    made to run to ``max_tokens``."""
    backend_class = OpenAIBackend if cancel_when_running is None else IgnoreEosBackend
    backend = backend_class(url, model, read_timeout=120.0)
    scorer = JudgeScorer(backend, max_tokens=3) if algorithm == "bon" else SyntheticScorer(seed=0)
    runtime = Runtime(backend, allocator=AllocatorConfig({}), scorer=scorer)
    events: list[Mapping[str, Any]] = []
    try:
        task = asyncio.create_task(
            runtime.run(Query("What is 6 times 7?", algorithm, params, id="q"), on_event=events.append)
        )
        if cancel_when_running is not None:
            async with asyncio.timeout(120):
                running = "vllm:num_requests_running"
                while await asyncio.to_thread(engine_metric, url, running) < cancel_when_running and not task.done():
                    await asyncio.sleep(0.05)
            runtime.cancel("q")
        return await task, events
    finally:
        await runtime.aclose()


@pytest.mark.parametrize("algorithm", sorted(TINY))
async def test_each_program_runs_on_the_real_engine(engine_url, engine_model, algorithm):
    params, expected_gangs = TINY[algorithm]
    result, events = await run_on_engine(engine_url, engine_model, algorithm, params)
    assert result.error is None
    cap = make_program(algorithm, params).max_samples
    assert cap is not None and 1 <= result.samples <= cap
    reports = [e for e in events if e["type"] == "report"]
    assert len(reports) == result.steps
    assert all(r.completion_tokens > 0 for r in result.requests)
    if expected_gangs:
        assert gangs(result.requests)[: len(expected_gangs)] == expected_gangs
    if algorithm == "cot":
        chunks = [r for r in result.requests if r.tag == "chunk"]
        probes = [r for r in result.requests if r.tag == "probe"]
        assert sum(r.completion_tokens for r in chunks) <= 32 and len(probes) == len(reports) >= 1
        assert all(r.completion_tokens <= 6 for r in probes)


async def test_stopping_on_the_real_engine_aborts_the_requests(engine_url, engine_model):
    params = {"max_samples": 2, "samples_per_round": 2, "max_tokens": 512, "temperature": 1.0}
    result, _ = await run_on_engine(engine_url, engine_model, "sc", params, cancel_when_running=2)
    assert result.exit_reason == "cancelled"
    aborted = [r for r in result.requests if r.finish_reason == "abort"]
    assert len(aborted) == 2 and all(r.completion_tokens < 512 for r in aborted)
