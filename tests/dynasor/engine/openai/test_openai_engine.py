"""The ``openai`` backend against a real vLLM (CPU build, SmolLM2-135M; see scripts/vllm_server.sh).

``engine_url`` serves the real weights (answer-quality checks); ``tiny_engine`` a random-weight
2-layer model with ``--max-num-seqs 2`` that the tests stop and restart (priority, abort, retry).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from algorithms.protocol import GenerateRequest
from dynasor.engine.base import EngineRequest
from dynasor.engine.openai import OpenAIBackend, RetryPolicy

if TYPE_CHECKING:
    from tests.conftest import ManagedServer

pytestmark = pytest.mark.engine

GEN_TOKENS = "vllm:generation_tokens_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"


async def metric(url: str, name: str) -> float:
    """Sum of the samples called ``name`` in the server's Prometheus ``/metrics``."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics")).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def ereq(prompt: object, *, priority: int = 0, rid: str = "r", **kw: object) -> EngineRequest:
    return EngineRequest(rid, "q", GenerateRequest(prompt, **kw), priority=priority)  # type: ignore[arg-type]


@pytest.fixture
async def real(engine_url: str, engine_model: str) -> AsyncIterator[OpenAIBackend]:
    async with OpenAIBackend(engine_url, model=engine_model, read_timeout=120) as backend:
        yield backend


@pytest.fixture
async def tiny(tiny_engine: ManagedServer) -> AsyncIterator[OpenAIBackend]:
    async with OpenAIBackend(tiny_engine.url, model=tiny_engine.model, read_timeout=120) as backend:
        yield backend


# -- the real weights ---------------------------------------------------------------------


async def test_completion_answers_and_counts_prompt(real: OpenAIBackend) -> None:
    c = await real.generate(ereq("The capital of France is", max_tokens=8, temperature=0.0))
    assert "Paris" in c.text
    tokenized = await real.post_json("/tokenize", {"model": real.model, "prompt": "The capital of France is"})
    assert c.prompt_tokens == tokenized["count"]
    assert 1 <= c.completion_tokens <= 8 and c.finish_reason in ("stop", "length")


async def test_chat_answers(real: OpenAIBackend) -> None:
    c = await real.generate(ereq([{"role": "user", "content": "What is 2+3?"}], max_tokens=24, temperature=0.0))
    assert "5" in c.text and c.finish_reason == "stop"
    assert c.prompt_tokens > 10  # the chat template wraps the question


async def test_continue_final_message(real: OpenAIBackend) -> None:
    msgs = [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "2 + 3 ="}]
    c = await real.generate(ereq(msgs, max_tokens=4, temperature=0.0, continue_final_message=True))
    assert c.text.strip().startswith("5")


async def test_streaming_deltas(real: OpenAIBackend) -> None:
    deltas: list[tuple[float, str]] = []
    t0 = time.monotonic()
    c = await real.generate(
        ereq(
            "Once upon a time",
            max_tokens=40,
            temperature=0.0,
            on_text=lambda t: deltas.append((time.monotonic() - t0, t)),
        )
    )
    assert "".join(t for _, t in deltas) == c.text
    assert len(deltas) >= 10 and deltas[-1][0] - deltas[0][0] > 0  # arrived over time, not at once
    assert c.meta["first_token_s"] < c.meta["latency_s"]


async def test_stop_strings_and_max_tokens(real: OpenAIBackend) -> None:
    stopped = await real.generate(ereq("1, 2, 3, 4,", max_tokens=40, temperature=0.0, stop=(" 7",)))
    assert stopped.finish_reason == "stop" and " 7" not in stopped.text and "6" in stopped.text
    capped = await real.generate(ereq("1, 2, 3, 4,", max_tokens=5, extra={"ignore_eos": True}))
    assert capped.finish_reason == "length" and capped.completion_tokens == 5


async def test_logprobs_present(real: OpenAIBackend) -> None:
    c = await real.generate(ereq("The capital of France is", max_tokens=6, temperature=0.0, logprobs=3))
    assert c.logprobs is not None and len(c.logprobs) == c.completion_tokens
    assert "".join(t.token for t in c.logprobs) == c.text
    assert all(t.logprob <= 0 and 1 <= len(t.top) <= 4 and t.token in t.top for t in c.logprobs)
    chat = await real.generate(ereq([{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0.0, logprobs=2))
    assert chat.logprobs is not None and len(chat.logprobs) == chat.completion_tokens
    assert all(len(t.top) == 2 for t in chat.logprobs)


async def test_stream_interval_chunks_keep_text_tokens_and_logprobs(engine_url: str, engine_model: str) -> None:
    """Several tokens per chunk (vLLM's per-request stream_interval): the same sample, whole."""
    # Greedy and cut by max_tokens before any end token (after one, with ignore_eos, vLLM 0.32's
    # chunked text keeps the special tokens its one-token stream leaves out).
    prompt = "1, 2, 3, 4,"
    seen: list[str] = []
    kw = {"max_tokens": 30, "temperature": 0.0, "logprobs": 1}
    async with OpenAIBackend(engine_url, model=engine_model, read_timeout=120, stream_interval=8) as chunked:
        c = await chunked.generate(ereq(prompt, on_text=seen.append, **kw))
    async with OpenAIBackend(engine_url, model=engine_model, read_timeout=120) as single:
        one = await single.generate(ereq(prompt, **kw))
    assert c.finish_reason == one.finish_reason == "length"
    assert c.completion_tokens == 30 and c.logprobs is not None and len(c.logprobs) == 30
    assert "".join(t.token for t in c.logprobs) == c.text == "".join(seen)
    assert c.text == one.text  # greedy: the chunking changes nothing but the chunks
    assert len(seen) <= 2 + 30 // 8 + 1  # a first token alone, then 8 at a time


async def test_n4_samples(real: OpenAIBackend, engine_url: str) -> None:
    """n = 4 through the backend is four requests; the raw server's n = 4 agrees on usage."""
    gang = [ereq("Write a word:", max_tokens=12, temperature=1.0, seed=i, rid=f"s{i}") for i in range(4)]
    done = await asyncio.gather(*(real.generate(r) for r in gang))
    assert len(done) == 4 and len({c.text for c in done}) >= 2  # different seeds, different samples
    body = {"model": real.model, "prompt": "Write a word:", "n": 4, "max_tokens": 12, "temperature": 1.0}
    raw = await real.post_json("/v1/completions", body)
    assert sorted(ch["index"] for ch in raw["choices"]) == [0, 1, 2, 3]
    assert raw["usage"]["prompt_tokens"] == done[0].prompt_tokens


async def test_usage_equals_engine_counters(real: OpenAIBackend, engine_url: str) -> None:
    gen0, prompt0 = await metric(engine_url, GEN_TOKENS), await metric(engine_url, PROMPT_TOKENS)
    outs = [
        await real.generate(ereq(p, max_tokens=m, temperature=0.8, seed=1))
        for p, m in [("Tell me a story about a cat.", 30), ("2+2=", 3), ("List three colors:", 17)]
    ]
    gen1, prompt1 = await metric(engine_url, GEN_TOKENS), await metric(engine_url, PROMPT_TOKENS)
    assert sum(c.completion_tokens for c in outs) == gen1 - gen0
    assert sum(c.prompt_tokens for c in outs) == prompt1 - prompt0


# -- the restartable tiny server ----------------------------------------------------------


async def test_priority_is_honoured(tiny: OpenAIBackend) -> None:
    """Under load, a better-priority request sent later overtakes earlier worse-priority ones.

    The server runs 2 sequences at a time; 6 long requests of priority 10 queue up, then one of
    priority 0 arrives. With the convention inverted (the control) it must come last instead.
    """

    async def run(backend: OpenAIBackend) -> tuple[float, list[float]]:
        t0 = time.monotonic()

        async def timed(r: EngineRequest) -> float:
            await backend.generate(r)
            return time.monotonic() - t0

        long = {"max_tokens": 100, "extra": {"ignore_eos": True}}
        async with asyncio.TaskGroup() as tg:
            early = [tg.create_task(timed(ereq("a b c", priority=10, rid=f"e{i}", **long))) for i in range(6)]  # type: ignore[arg-type]
            # The late request goes once the engine holds the early ones: a fixed delay raced the
            # engine, whose speed here depends on what else the machine runs.
            async with asyncio.timeout(60):
                while await metric(backend.base_url, WAITING) < 4 and not any(t.done() for t in early):
                    await asyncio.sleep(0.02)
            late = tg.create_task(timed(ereq("a b c", priority=0, rid="late", **long)))  # type: ignore[arg-type]
        return late.result(), [t.result() for t in early]

    async def finished_after_late(backend: OpenAIBackend) -> int:
        """How many early requests finished after the late one, from a run whose finishing
        times spread out (a stalled client sees every response at once and cannot tell)."""
        for _ in range(3):
            late, early = await run(backend)
            times = [*early, late]
            if max(times) - min(times) > 0.05:
                return sum(t > late for t in early)
        pytest.fail(f"every run finished all requests at once: {late}, {early}")

    assert await finished_after_late(tiny) >= 3
    async with OpenAIBackend(tiny.base_url, model=tiny.model, priority="higher-first") as inverted:
        assert await finished_after_late(inverted) <= 1


async def test_cancel_aborts_in_engine(tiny: OpenAIBackend) -> None:
    url = tiny.base_url
    max_tokens = 1800
    streamed = asyncio.Event()
    gen0 = await metric(url, GEN_TOKENS)
    task = asyncio.create_task(
        tiny.generate(ereq("go", max_tokens=max_tokens, extra={"ignore_eos": True}, on_text=lambda t: streamed.set()))
    )
    await asyncio.wait_for(streamed.wait(), 60)
    async with asyncio.timeout(60):  # the gauge can lag the stream by seconds
        while await metric(url, RUNNING) != 1 and not task.done():
            await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(10):
        while await metric(url, RUNNING) != 0:
            await asyncio.sleep(0.1)
    settled = await metric(url, GEN_TOKENS)
    await asyncio.sleep(1.0)
    assert await metric(url, GEN_TOKENS) == settled  # nothing generates any more
    assert settled - gen0 < max_tokens


@pytest.mark.slow
async def test_retry_across_server_restart(tiny_engine: ManagedServer) -> None:
    """A request sent while the server is down succeeds once it is back (before any token)."""
    await asyncio.to_thread(tiny_engine.stop)
    # Enough attempts to outlast a slow start (the server start below has its own time limit).
    retry = RetryPolicy(attempts=10_000, base_delay_s=0.2, max_delay_s=1.0)
    async with OpenAIBackend(tiny_engine.url, model=tiny_engine.model, retry=retry, connect_timeout=2) as b:
        task = asyncio.create_task(b.generate(ereq("hello", max_tokens=4)))
        await asyncio.sleep(1.0)
        assert not task.done()  # still retrying: nothing listens
        await asyncio.to_thread(tiny_engine.start)
        c = await asyncio.wait_for(task, 60)
    assert c.completion_tokens >= 1 and c.meta["attempts"] > 1
