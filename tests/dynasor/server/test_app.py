"""The proxy over the simulated engine, driven with the official OpenAI SDK and raw HTTP."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from dynasor.engine.sim import SyntheticSource
from dynasor.server import create_app
from dynasor.server._passthrough import ServingError
from dynasor.server.routes import require_api_key

PROMPT = [{"role": "user", "content": "What is 6 times 7?"}]
SC = {"dynasor": {"algorithm": "sc", "max_samples": 6, "samples_per_round": 2}}


def client(url: str, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, **kw)  # type: ignore[arg-type]


def aclient(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


# -- models, health, metrics -------------------------------------------------------------


def test_models_lists_the_simulated_model(sim_proxy):
    url, app = sim_proxy
    models = client(url).models.list()
    assert [m.id for m in models.data] == [app.state.proxy.backend.model]


def test_health_reports_the_upstream(sim_proxy):
    url, _ = sim_proxy
    body = httpx.get(f"{url}/health").json()
    assert body["status"] == "ok"
    assert body["upstreams"][0]["url"].startswith("sim:")


# -- plain requests over the sim ---------------------------------------------------------


def test_plain_chat_sync_and_stream_shapes(sim_proxy):
    url, _ = sim_proxy
    c = client(url)
    out = c.chat.completions.create(model="m", messages=PROMPT, max_tokens=50, n=2)
    assert out.object == "chat.completion"
    assert len(out.choices) == 2
    assert all(ch.finish_reason in ("stop", "length") for ch in out.choices)
    assert out.usage is not None and out.usage.completion_tokens > 0
    chunks = list(
        c.chat.completions.create(
            model="m", messages=PROMPT, max_tokens=50, stream=True, stream_options={"include_usage": True}
        )
    )
    assert {ch.object for ch in chunks} == {"chat.completion.chunk"}
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "boxed" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] in ("stop", "length")


def test_plain_completions_stream_uses_text_completion_chunks(sim_proxy):
    url, _ = sim_proxy
    c = client(url)
    out = c.completions.create(model="m", prompt="2+2=", max_tokens=40)
    assert out.object == "text_completion" and out.choices[0].text
    chunks = list(c.completions.create(model="m", prompt="2+2=", max_tokens=40, stream=True))
    assert {ch.object for ch in chunks} == {"text_completion"}
    assert "".join(ch.choices[0].text for ch in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


# -- reasoning requests ------------------------------------------------------------------


def test_reasoning_chat_returns_answer_and_usage_extension(sim_proxy):
    url, _ = sim_proxy
    out = client(url).chat.completions.create(model="m", messages=PROMPT, extra_body=SC)
    assert out.choices[0].finish_reason == "stop"
    content = out.choices[0].message.content
    ext = out.usage.model_extra["dynasor"]  # type: ignore[union-attr]
    assert ext["algorithm"] == "sc"
    assert 2 <= ext["samples"] <= 6
    assert ext["exit_reason"] in ("confident", "budget", "completed")
    assert ext["answer"] is not None and f"\\boxed{{{ext['answer']}}}" in content
    assert ext["tokens_generated"] == out.usage.completion_tokens  # type: ignore[union-attr]
    assert ext["tokens_saved"] == ext["tokens_cap"] - ext["tokens_generated"]


def test_reasoning_stream_sends_progress_then_answer(sim_proxy):
    url, _ = sim_proxy
    stream = client(url).chat.completions.create(
        model="m", messages=PROMPT, stream=True, stream_options={"include_usage": True}, extra_body=SC
    )
    chunks = list(stream)
    progress = [ch.model_extra["dynasor"] for ch in chunks if not ch.choices and "dynasor" in (ch.model_extra or {})]
    assert progress and all(p["type"] == "report" for p in progress)
    assert [p["step"] for p in progress] == list(range(1, len(progress) + 1))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    final = chunks[-1].usage.model_extra["dynasor"]  # type: ignore[union-attr]
    assert final["steps"] == len(progress)
    assert f"\\boxed{{{final['answer']}}}" in text


async def test_reasoning_async_completions_endpoint(sim_proxy):
    url, _ = sim_proxy
    async with aclient(url) as c:
        whole, stream = await asyncio.gather(
            c.completions.create(model="m", prompt="What is 6 times 7?", max_tokens=64, extra_body=SC),
            c.completions.create(model="m", prompt="What is 6 times 7?", max_tokens=64, stream=True, extra_body=SC),
        )
        assert whole.object == "text_completion"
        assert whole.usage.model_extra["dynasor"]["samples"] >= 2  # type: ignore[union-attr]
        chunks = [ch async for ch in stream]
    assert {ch.object for ch in chunks} == {"text_completion"}
    assert "boxed" in "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_per_request_certaindex_override_changes_when_queries_stop(sim_proxy):
    url, _ = sim_proxy
    c = client(url)
    never = {"dynasor": {"algorithm": "sc", "max_samples": 6, "certaindex": {"threshold": 1.0, "min_samples": 6}}}
    eager = {"dynasor": {"algorithm": "sc", "max_samples": 6, "certaindex": {"threshold": 0.0, "min_samples": 1}}}
    a = c.chat.completions.create(model="m", messages=PROMPT, extra_body=never).usage.model_extra["dynasor"]
    b = c.chat.completions.create(model="m", messages=PROMPT, extra_body=eager).usage.model_extra["dynasor"]
    assert b["exit_reason"] == "confident" and b["steps"] == 1 and b["samples"] == 2
    assert a["steps"] >= 3 or a["exit_reason"] == "confident"
    assert a["samples"] > b["samples"]


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": PROMPT, "dynasor": {"algorithm": "nope"}}, "dynasor.algorithm"),
        ({"messages": PROMPT, "dynasor": {"algorithm": "sc", "bogus_knob": 1}}, "dynasor.bogus_knob"),
        ({"messages": PROMPT, "dynasor": {"certaindex": {"threshold": 2}}}, "dynasor.certaindex.threshold"),
        ({"messages": PROMPT, "dynasor": {"certaindex": {"nope": 1}}}, "dynasor.certaindex.nope"),
        ({"messages": PROMPT, "dynasor": {"max_samples": 10_000}}, "dynasor.max_samples"),
        ({"messages": PROMPT, "max_tokens": 10**7}, "max_tokens"),
        ({"messages": PROMPT, "n": 1000}, "n"),
        ({"messages": PROMPT, "n": 2, "dynasor": {}}, "n"),
        ({"messages": []}, "messages"),
    ],
)
def test_client_mistakes_are_400_in_openai_shape(sim_proxy, body, param):
    url, _ = sim_proxy
    r = httpx.post(f"{url}/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert error["param"] == param
    with pytest.raises(openai.BadRequestError):
        client(url).chat.completions.create(
            model="m",
            **{k: v for k, v in body.items() if k != "dynasor"},
            extra_body={k: v for k, v in body.items() if k == "dynasor"},
        )


def test_bad_json_is_400(sim_proxy):
    url, _ = sim_proxy
    r = httpx.post(f"{url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "JSON" in r.json()["error"]["message"]


def test_unknown_route_is_404_in_openai_shape(sim_proxy):
    url, _ = sim_proxy
    r = httpx.get(f"{url}/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == 404


def test_api_key_is_required_when_configured(make_proxy, sim_settings):
    with make_proxy(sim_settings(api_key="s3cret")) as (url, _):
        with pytest.raises(openai.AuthenticationError):
            client(url).models.list()
        assert httpx.post(f"{url}/v1/completions", json={"prompt": "x"}).status_code == 401
        assert client(url).with_options(api_key="s3cret").models.list().data
        assert httpx.get(f"{url}/health").status_code == 401  # the ops endpoints too (tests/dynasor/server/test_ops.py)


def test_completions_are_answered_ahead_of_the_framework_routes(sim_settings):
    # The framework's routes are made to refuse every request (their key dependency always
    # fails): the completion endpoints still answer, checking the key themselves, while
    # everything else still goes through the routes.
    def refuse() -> None:
        raise ServingError(418, "the framework's routing was used")

    app = create_app(sim_settings(api_key="s3cret"))
    app.dependency_overrides[require_api_key] = refuse
    with TestClient(app) as http:
        key = {"Authorization": "Bearer s3cret"}
        assert http.get("/v1/models", headers=key).status_code == 418
        assert http.post("/v1/completions", json={"prompt": "x"}).status_code == 401
        plain = http.post("/v1/chat/completions", json={"messages": PROMPT, "max_tokens": 8}, headers=key)
        assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"]
        reasoning = http.post("/v1/chat/completions", json={"messages": PROMPT} | SC, headers=key)
        assert reasoning.status_code == 200 and reasoning.json()["usage"]["dynasor"]["algorithm"] == "sc"
        assert http.post("/v1/completions", content=b"{", headers=key).status_code == 400
        assert http.get("/v1/completions", headers=key).status_code == 405
        app.dependency_overrides.clear()
        metrics = http.get("/metrics", headers=key).text
        assert 'endpoint="chat",kind="reasoning",status="200"' in metrics
        assert 'endpoint="completions",kind="plain",status="401"' in metrics


def test_queue_full_is_429_with_retry_after(make_proxy, sim_settings):
    slow = SyntheticSource(seed=0, min_tokens=400, max_tokens=400)
    with make_proxy(sim_settings(max_active=1, sim_source=slow)) as (url, app):
        body = {"messages": PROMPT, "dynasor": {"algorithm": "sc", "max_samples": 2}}
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", f"{url}/v1/chat/completions", json=body | {"stream": True}) as first,
        ):
            lines = first.iter_lines()  # kept referenced: dropping it would close the stream
            next(lines)  # the first query is admitted and running
            assert _wait(lambda: app.state.proxy.runtime.active == 1)
            second = http.post(f"{url}/v1/chat/completions", json=body)
            assert second.status_code == 429
            assert int(second.headers["retry-after"]) >= 1
            assert second.json()["error"]["code"] == 429
            with pytest.raises(openai.RateLimitError):
                client(url).chat.completions.create(model="m", messages=PROMPT, extra_body=body)


# -- client disconnect -------------------------------------------------------------------


def _wait(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.mark.parametrize("stream", [False, True])
def test_client_disconnect_aborts_every_sub_request(make_proxy, sim_settings, stream):
    # Samples of 2000 tokens at ~6 ms a step run for ~12 s: long enough to leave mid-way.
    slow = SyntheticSource(seed=0, min_tokens=2000, max_tokens=2000)
    with make_proxy(sim_settings(sim_source=slow)) as (url, app):
        engine = app.state.proxy.pool.replicas[0].backend.engine
        body = {
            "messages": PROMPT,
            "stream": stream,
            "dynasor": {"algorithm": "sc", "max_samples": 8, "samples_per_round": 4},
        }
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=httpx.Timeout(5.0, read=0.5))
        assert _wait(lambda: app.state.proxy.runtime.active == 0), "query still active after disconnect"
        assert engine.running == 0 and engine.waiting == 0
        generated = engine.tokens_generated
        time.sleep(0.3)
        assert engine.tokens_generated == generated  # nothing decodes any more
        assert generated < 4 * 2000
        metrics = httpx.get(f"{url}/metrics").text
        assert 'dynasor_queries_total{algorithm="sc",exit_reason="cancelled"} 1.0' in metrics
        # Counted: the query's sub-requests, each closed in the engine; none left running.
        assert 'dynasor_subrequests_total{algorithm="sc",exit_reason="cancelled",finish_reason="abort"} 4.0' in metrics
        assert "dynasor_subrequests_running 0.0" in metrics and "dynasor_sim_engine_sequences 0.0" in metrics


def test_metrics_count_queries_tokens_and_latency(sim_proxy):
    url, _ = sim_proxy
    c = client(url)
    before = httpx.get(f"{url}/metrics").text
    out = c.chat.completions.create(model="m", messages=PROMPT, extra_body=SC)
    text = httpx.get(f"{url}/metrics").text
    reason = out.usage.model_extra["dynasor"]["exit_reason"]  # type: ignore[union-attr]

    def value(body: str, name: str) -> float:
        for line in body.splitlines():
            if line.startswith(name + " ") or (line.startswith(name + "{") and line.split(" ")[0] == name):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    key = f'dynasor_queries_total{{algorithm="sc",exit_reason="{reason}"}}'
    assert value(text, key) == value(before, key) + 1
    tokens = 'dynasor_tokens_generated_total{algorithm="sc"}'
    assert value(text, tokens) - value(before, tokens) == out.usage.completion_tokens  # type: ignore[union-attr]
    for name in (
        "dynasor_certaindex_bucket",
        "dynasor_query_latency_seconds_bucket",
        "dynasor_queue_depth",
        "dynasor_passthrough_latency_seconds",
        "dynasor_upstream_up",
    ):
        assert name in text
