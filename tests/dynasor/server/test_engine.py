"""The proxy in front of the real vLLM CPU server, driven with the official OpenAI SDK.

Marked ``engine``: needs the server of ``scripts/vllm_server.sh`` (fixtures in tests/conftest.py).
Generations are kept to a few tokens: the engine runs on two CPU cores.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dynasor.server import ServerSettings
from tests.conftest import engine_metric

pytestmark = pytest.mark.engine

PROMPT = [{"role": "user", "content": "What is 3 + 4? Put the answer in \\boxed{}."}]
SC = {"dynasor": {"algorithm": "sc", "max_samples": 2, "samples_per_round": 2}}
LONG = [{"role": "user", "content": "Count from 1 to 1000, one number per line, and nothing else."}]
"""A prompt the model answers at length: its samples are still running when the client leaves."""


@pytest.fixture(scope="module")
def engine_proxy(engine_url, make_proxy):
    with make_proxy(ServerSettings(upstreams=(engine_url,))) as served:
        yield served


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_plain_chat_sync_and_stream(engine_proxy, engine_model):
    url, _ = engine_proxy
    c = sdk(url)
    out = c.chat.completions.create(model=engine_model, messages=PROMPT, max_tokens=8, n=2, logprobs=True)
    assert out.model == engine_model and len(out.choices) == 2
    assert out.choices[0].finish_reason in ("stop", "length")
    assert out.choices[0].logprobs is not None and out.choices[0].logprobs.content
    assert out.usage is not None and 0 < out.usage.completion_tokens <= 16
    chunks = list(
        c.chat.completions.create(
            model=engine_model, messages=PROMPT, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len(chunks) > 3  # token by token, not one buffered piece
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 8


async def test_plain_completions_async_and_stream(engine_proxy, engine_model):
    url, _ = engine_proxy
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120) as c:
        out = await c.completions.create(model=engine_model, prompt="1, 2, 3,", max_tokens=6, stop=["\n"])
        assert out.object == "text_completion" and out.usage.completion_tokens <= 6
        stream = await c.completions.create(model=engine_model, prompt="1, 2, 3,", max_tokens=6, stream=True)
        chunks = [ch async for ch in stream]
    assert {ch.object for ch in chunks} == {"text_completion"}
    assert len(chunks) > 2


def test_upstream_errors_pass_through(engine_proxy):
    url, _ = engine_proxy
    with pytest.raises(openai.NotFoundError) as info:
        sdk(url).chat.completions.create(model="no-such-model", messages=PROMPT, max_tokens=4)
    assert "no-such-model" in str(info.value)


def test_models_from_upstream(engine_proxy, engine_model):
    url, _ = engine_proxy
    assert engine_model in [m.id for m in sdk(url).models.list().data]


def test_reasoning_chat_on_the_engine(engine_proxy, engine_model):
    url, _ = engine_proxy
    out = sdk(url).chat.completions.create(model=engine_model, messages=PROMPT, max_tokens=24, extra_body=SC)
    ext = out.usage.model_extra["dynasor"]
    assert ext["samples"] == 2 and ext["steps"] == 1
    assert ext["tokens_generated"] == out.usage.completion_tokens <= 48
    assert ext["tokens_cap"] == 48
    assert out.choices[0].message.content
    assert out.choices[0].finish_reason == "stop"


async def test_reasoning_stream_on_the_engine_completions(engine_proxy, engine_model):
    url, _ = engine_proxy
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120) as c:
        stream = await c.completions.create(
            model=engine_model, prompt="What is 3 + 4?", max_tokens=24, stream=True, extra_body=SC
        )
        chunks = [ch async for ch in stream]
    assert {ch.object for ch in chunks} == {"text_completion"}
    progress = [ch.model_extra["dynasor"] for ch in chunks if not ch.choices]
    assert progress[0]["type"] == "report" and progress[0]["samples"] == 2
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["dynasor"]["samples"] == 2


def stream_counter(engine_url: str) -> tuple[Starlette, dict[str, int]]:
    """A forwarder to the engine that counts the streams open through it.

    The engine is shared, so its own gauges mix in other clients' requests; counting the
    proxy's upstream streams here shows exactly which of them the proxy closed.
    """
    counts = {"open": 0, "opened": 0, "peak": 0}
    client = httpx.AsyncClient(base_url=engine_url, timeout=httpx.Timeout(10.0, read=None))

    async def forward(request: Request) -> StreamingResponse:
        upstream = await client.send(
            client.build_request(
                "POST", request.url.path, content=await request.body(), headers={"content-type": "application/json"}
            ),
            stream=True,
        )
        counts["open"] += 1
        counts["opened"] += 1
        counts["peak"] = max(counts["peak"], counts["open"])

        async def relay():
            try:
                async for piece in upstream.aiter_raw():
                    yield piece
            finally:
                counts["open"] -= 1
                await upstream.aclose()  # closing is vLLM's abort

        return StreamingResponse(relay(), status_code=upstream.status_code, media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return Response((await client.get("/v1/models")).content, media_type="application/json")

    routes = [Route("/v1/chat/completions", forward, methods=["POST"]), Route("/v1/models", models)]
    return Starlette(routes=routes), counts


@pytest.mark.slow
def test_client_disconnect_aborts_every_sub_request_in_the_engine(engine_url, engine_model, make_proxy, serve):
    counter, counts = stream_counter(engine_url)
    body = {
        "model": engine_model,
        "messages": LONG,
        "max_tokens": 1500,
        "dynasor": {"algorithm": "sc", "max_samples": 4, "samples_per_round": 4},
    }
    with serve(counter) as via, make_proxy(ServerSettings(upstreams=(via,), model=engine_model)) as (url, app):
        results = []
        app.state.proxy.runtime.observers.append(results.append)
        before = engine_metric(engine_url, "vllm:num_requests_running")
        with (
            httpx.Client(timeout=httpx.Timeout(10.0, read=60.0)) as http,
            http.stream("POST", f"{url}/v1/chat/completions", json=body | {"stream": True}) as response,
        ):
            lines = response.iter_lines()
            next(lines)
            assert wait_for(lambda: counts["open"] == 4), f"{counts} sub-requests open, expected 4"
            during = engine_metric(engine_url, "vllm:num_requests_running")
        # The client is gone: every sub-request must be closed upstream, which aborts it in vLLM.
        assert wait_for(lambda: counts["open"] == 0 and app.state.proxy.runtime.active == 0)
        assert counts["opened"] == 4
        after = engine_metric(engine_url, "vllm:num_requests_running")
    (result,) = [r for r in results if r.exit_reason == "cancelled"]
    assert len(result.requests) == 4
    # A sample may end by itself (the model's own EOS) before the client leaves; every other
    # one must have been aborted, none run to its length limit.
    reasons = [r.finish_reason for r in result.requests]
    assert set(reasons) <= {"abort", "stop"} and "abort" in reasons, reasons
    assert all(r.completion_tokens < 1500 for r in result.requests)
    # Informative only (the engine is shared): our four requests ran, and left.
    print(f"engine running: before {before}, during {during}, after {after}")


def wait_for(predicate, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# -- every algorithm, every reward scorer --------------------------------------------------

SMALL = {
    "sc": {"max_samples": 2, "samples_per_round": 2},
    "cot": {"chunk_tokens": 16, "probe_tokens": 8},
    "bon": {"max_samples": 2, "samples_per_round": 2},
    "mcts": {"iterations": 2, "width": 2, "rollout_tokens": 24},
    "rebase": {"width": 2, "max_depth": 2, "step_tokens": 16},
}
"""Each algorithm at a size the two-core engine answers in seconds."""
EXITS = {"confident", "budget", "completed", "hopeless"}


@pytest.mark.parametrize("algorithm", list(SMALL))
def test_every_algorithm_answers_through_the_proxy(engine_proxy, engine_model, algorithm):
    url, _ = engine_proxy
    out = sdk(url).chat.completions.create(
        model=engine_model,
        messages=PROMPT,
        max_tokens=24,
        extra_body={"dynasor": {"algorithm": algorithm} | SMALL[algorithm]},
    )
    ext = out.usage.model_extra["dynasor"]
    assert ext["algorithm"] == algorithm and ext["exit_reason"] in EXITS, ext
    assert ext["samples"] >= 1
    assert ext["steps"] >= (0 if algorithm == "cot" else 1)  # a chain the model ends in its first chunk is never probed
    assert ext["tokens_generated"] == out.usage.completion_tokens > 0
    assert out.choices[0].finish_reason == "stop"
    if algorithm in ("bon", "mcts", "rebase"):  # scored by the default reward: the engine's own logprobs
        assert ext["certaindex"] is not None and 0.0 <= ext["certaindex"] <= 1.0


@pytest.mark.parametrize("algorithm", list(SMALL))
async def test_every_algorithm_streams_through_the_proxy(engine_proxy, engine_model, algorithm):
    url, _ = engine_proxy
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=300) as c:
        stream = await c.chat.completions.create(
            model=engine_model,
            messages=PROMPT,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"dynasor": {"algorithm": algorithm} | SMALL[algorithm]},
        )
        chunks = [ch async for ch in stream]
    finishing = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == "stop"
    summary = finishing[0].model_extra["dynasor"]
    assert summary["algorithm"] == algorithm and summary["exit_reason"] in EXITS
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == summary["tokens_generated"]
    progress = [ch.model_extra["dynasor"] for ch in chunks if not ch.choices and "dynasor" in (ch.model_extra or {})]
    if algorithm == "cot":  # the chain streams as it decodes
        assert sum(bool(ch.choices and ch.choices[0].delta.content) for ch in chunks) > 3
    else:  # one progress chunk per certaindex report
        assert [p["step"] for p in progress if p["type"] == "report"] == list(range(1, summary["steps"] + 1))


def test_a_program_that_scores_is_refused_before_the_engine_sees_it(engine_url, engine_model, make_proxy):
    with make_proxy(ServerSettings(upstreams=(engine_url,), reward=("none",))) as (url, _):
        before = engine_metric(engine_url, "vllm:request_success_total")
        with pytest.raises(openai.BadRequestError, match="needs a reward scorer"):
            sdk(url).chat.completions.create(
                model=engine_model, messages=PROMPT, max_tokens=24, extra_body={"dynasor": {"algorithm": "bon"}}
            )
        assert engine_metric(engine_url, "vllm:request_success_total") == before


def test_the_served_model_as_judge(engine_url, engine_model, make_proxy):
    settings = ServerSettings(upstreams=(engine_url,), reward=("logprob", "judge"))
    with make_proxy(settings) as (url, app):
        requests = []
        app.state.proxy.runtime.observers.append(requests.append)
        body = {"dynasor": {"algorithm": "bon", "scorer": "judge"} | SMALL["bon"]}
        before = engine_metric(engine_url, "vllm:request_success_total")
        out = sdk(url).chat.completions.create(model=engine_model, messages=PROMPT, max_tokens=24, extra_body=body)
        after = engine_metric(engine_url, "vllm:request_success_total")
    ext = out.usage.model_extra["dynasor"]
    assert ext["exit_reason"] in EXITS and ext["samples"] == 2
    # Two samples, then two judge calls (not sub-requests of the query: the scheduler never saw them).
    assert after - before >= 4
    assert len(requests[0].requests) == 2


def test_a_served_reward_model(engine_url, engine_model, reward_engine, make_proxy):
    """bon scored by a classification head over vLLM's pooling API (a process-reward model's HTTP path)."""
    settings = ServerSettings(upstreams=(engine_url,), reward=(reward_engine.url,), reward_model=reward_engine.model)
    with make_proxy(settings) as (url, _):
        before = engine_metric(reward_engine.url, "vllm:request_success_total")
        out = sdk(url).chat.completions.create(
            model=engine_model,
            messages=PROMPT,
            max_tokens=24,
            extra_body={"dynasor": {"algorithm": "bon"} | SMALL["bon"]},
        )
        after = engine_metric(reward_engine.url, "vllm:request_success_total")
    ext = out.usage.model_extra["dynasor"]
    assert ext["exit_reason"] in EXITS and 0.0 < ext["certaindex"] < 1.0  # the head's probability of the best sample
    assert after > before  # the reward server scored them
