"""Upstream faults through the proxy: down, 500, hang, a stream cut, nonsense. Each answered cleanly."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from dynasor.server import ServerSettings
from tests.dynasor.server.conftest import free_port, serve_app
from tests.dynasor.server.faulty import FaultyUpstream

PROMPT = [{"role": "user", "content": "What is 6 times 7?"}]


@pytest.fixture
def faulty() -> Iterator[tuple[FaultyUpstream, str]]:
    upstream = FaultyUpstream()
    with serve_app(upstream.app()) as url:
        yield upstream, url


def events(text: str) -> list[Any]:
    """The data of each server-sent event; every one must be whole JSON (or [DONE])."""
    out: list[Any] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), f"not an event: {block!r}"
        data = block[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# -- plain requests --------------------------------------------------------------------------


def test_a_plain_stream_cut_mid_way_ends_with_an_error_event_and_done(faulty, make_proxy):
    upstream, up_url = faulty
    upstream.mode = "cut"
    with make_proxy(ServerSettings(upstreams=(up_url,))) as (url, app):
        body = {"model": "fake", "messages": PROMPT, "max_tokens": 8, "stream": True}
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 200
        got = events(r.text)
        assert got[-1] == "[DONE]"
        error = got[-2]["error"]
        assert error["type"] == "upstream_error" and error["code"] == 502
        assert "broke off the stream" in error["message"]
        assert [e["choices"][0]["delta"]["content"] for e in got[:-2]] == [" 42", " 42"]  # what came before, whole
        assert app.state.proxy.relay.broken_streams == 1
        assert wait_for(lambda: app.state.proxy.relay.active == 0)
        # The official SDK surfaces it as an error, not a silently short answer.
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIError, match="broke off"):
            for _ in client.chat.completions.create(model="fake", messages=PROMPT, max_tokens=8, stream=True):
                pass


def test_a_plain_request_to_a_hanging_upstream_times_out_with_504(faulty, make_proxy):
    upstream, up_url = faulty
    upstream.mode = "hang"
    with make_proxy(ServerSettings(upstreams=(up_url,), request_timeout_s=1.0)) as (url, app):
        started = time.monotonic()
        r = httpx.post(f"{url}/v1/chat/completions", json={"messages": PROMPT, "max_tokens": 4}, timeout=30)
        assert r.status_code == 504, r.text
        assert r.json()["error"]["type"] == "upstream_timeout"
        assert 0.9 < time.monotonic() - started < 5
        assert app.state.proxy.relay.active == 0
        assert wait_for(lambda: app.state.proxy.pool.replicas[0].inflight == 0)


def test_a_plain_stream_that_stalls_ends_at_the_read_timeout(faulty, make_proxy):
    upstream, up_url = faulty
    upstream.mode = "hang-stream"
    with make_proxy(ServerSettings(upstreams=(up_url,), read_timeout_s=0.5)) as (url, _):
        body = {"messages": PROMPT, "max_tokens": 8, "stream": True}
        started = time.monotonic()
        got = events(httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).text)
        assert time.monotonic() - started < 5
        assert got[-1] == "[DONE]" and "sent nothing for 0.5 s" in got[-2]["error"]["message"]
        assert wait_for(lambda: upstream.closed_early == 1)  # the upstream stream was closed: the engine aborts


def test_plain_requests_beyond_the_limit_get_429_with_retry_after(faulty, make_proxy):
    upstream, up_url = faulty
    upstream.mode = "hang"
    with make_proxy(ServerSettings(upstreams=(up_url,), max_passthrough=2, request_timeout_s=3.0)) as (url, app):
        body = {"messages": PROMPT, "max_tokens": 4}
        held = [
            threading.Thread(
                target=httpx.post, args=(f"{url}/v1/chat/completions",), kwargs={"json": body, "timeout": 10}
            )
            for _ in range(2)
        ]
        for thread in held:
            thread.start()
        assert wait_for(lambda: app.state.proxy.relay.active == 2)
        started = time.monotonic()
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
        assert time.monotonic() - started < 1.0  # refused at once, not queued
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_exceeded"
        for thread in held:
            thread.join()
        assert app.state.proxy.relay.active == 0


def test_health_is_degraded_for_a_closed_port_and_ok_once_it_listens(make_proxy):
    port = free_port()
    upstream = FaultyUpstream()
    with make_proxy(ServerSettings(upstreams=(f"http://127.0.0.1:{port}",), health_interval_s=0.2)) as (url, _):
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        (replica,) = health.json()["upstreams"]
        assert replica["up"] is False and replica["down_reason"] == "unreachable"
        assert "ClientConnectorError" in replica["error"]  # refused, not a timeout
        # The engine starts on that port: the next probe brings it back, no request needed.
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(upstream.app(), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            assert wait_for(lambda: httpx.get(f"{url}/health").status_code == 200)
            r = httpx.post(f"{url}/v1/chat/completions", json={"messages": PROMPT, "max_tokens": 3})
            assert r.status_code == 200 and upstream.requests == 1
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def test_an_upstream_answering_500_keeps_its_status_and_stays_in(faulty, make_proxy):
    upstream, up_url = faulty
    upstream.mode = "500"
    with make_proxy(ServerSettings(upstreams=(up_url,))) as (url, _):
        for _ in range(4):
            r = httpx.post(f"{url}/v1/chat/completions", json={"messages": PROMPT})
            assert r.status_code == 500 and r.json()["error"]["message"] == "engine exploded"  # relayed as is
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


# -- reasoning requests ----------------------------------------------------------------------

SC = {"algorithm": "sc", "max_samples": 4, "samples_per_round": 2}


def reason(url: str, timeout: float = 30, **changes: Any) -> httpx.Response:
    body = {"model": "fake", "messages": PROMPT, "max_tokens": 6, "dynasor": SC | changes}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("list", "malformed stream event from the upstream: a JSON list, not an object: '[1, 2]'"),
        ("garbage", "malformed stream event from the upstream (not JSON)"),
        ("json", "answered no completion events (application/json)"),
    ],
)
def test_malformed_upstream_answers_are_502_naming_what_arrived(faulty, make_proxy, mode, message):
    upstream, up_url = faulty
    upstream.mode = mode
    with make_proxy(ServerSettings(upstreams=(up_url,))) as (url, app):
        r = reason(url)
        assert r.status_code == 502, r.text
        error = r.json()["error"]
        assert error["type"] == "upstream_error" and message in error["message"]
        assert "AttributeError" not in error["message"] and "ExceptionGroup" not in error["message"]
        assert app.state.proxy.runtime.active == 0


def test_a_500_from_the_only_replica_fails_that_request_and_no_other(faulty, make_proxy):
    upstream, up_url = faulty
    upstream.mode = "500"
    settings = ServerSettings(upstreams=(up_url,), upstream_attempts=2, eject_after=1)
    with make_proxy(settings) as (url, _):
        first = reason(url)
        assert first.status_code == 502 and "engine exploded" in first.json()["error"]["message"]
        assert upstream.requests >= 3  # a sample tried twice, with backoff (then its gang failed)
        # The replica stays in: other clients are not turned away for 10 s.
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        upstream.mode = "ok"
        assert reason(url).status_code == 200


def test_a_500_ing_replica_is_taken_out_after_repeated_failures_when_another_serves(make_proxy):
    bad, good = FaultyUpstream("500"), FaultyUpstream()
    with serve_app(bad.app()) as bad_url, serve_app(good.app()) as good_url:
        settings = ServerSettings(upstreams=(bad_url, good_url), upstream_attempts=1, eject_after=2)
        with make_proxy(settings) as (url, app):
            for _ in range(3):
                assert reason(url).status_code == 200  # each query moves to the good replica
            pool = app.state.proxy.pool
            assert [r.up(pool.clock()) for r in pool.replicas] == [False, True]
            assert pool.replicas[0].down_reason == "failing"
            seen = bad.requests
            assert reason(url).status_code == 200 and bad.requests == seen  # no longer asked


@pytest.mark.parametrize("limit", ["request_timeout", "deadline"])
def test_a_hanging_upstream_holds_a_reasoning_query_no_longer_than_its_deadline(faulty, make_proxy, limit):
    upstream, up_url = faulty
    upstream.mode = "hang"
    settings = ServerSettings(upstreams=(up_url,), request_timeout_s=1.0 if limit == "request_timeout" else 60.0)
    extra = {"deadline": 1.0} if limit == "deadline" else {}
    with make_proxy(settings) as (url, app):
        started = time.monotonic()
        r = reason(url, **extra)
        assert 0.9 < time.monotonic() - started < 5
        assert r.status_code == 504, r.text
        assert r.json()["error"]["type"] == "upstream_timeout" and "deadline (1 s)" in r.json()["error"]["message"]
        # The --max-queries slot is free again and every sub-request was closed upstream.
        assert app.state.proxy.runtime.active == 0
        assert wait_for(lambda: app.state.proxy.runtime.scheduler.running_seqs == 0)


def test_a_reasoning_stream_whose_upstream_fails_ends_with_an_error_event(faulty, make_proxy):
    upstream, up_url = faulty
    upstream.mode = "list"
    with make_proxy(ServerSettings(upstreams=(up_url,))) as (url, _):
        body = {"model": "fake", "messages": PROMPT, "max_tokens": 6, "stream": True, "dynasor": SC}
        got = events(httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).text)
    assert got[-1] == "[DONE]" and "a JSON list" in got[-2]["error"]["message"]


def test_a_replica_killed_under_a_query_moves_its_next_sub_requests(make_proxy):
    """Connection refused: the query moves to the other replica and succeeds."""
    alive = FaultyUpstream()
    dead = f"http://127.0.0.1:{free_port()}"
    with serve_app(alive.app()) as alive_url:
        settings = ServerSettings(upstreams=(dead, alive_url), upstream_attempts=1, health_interval_s=0)
        with make_proxy(settings) as (url, app):
            r = reason(url)
            assert r.status_code == 200, r.text
            usage = r.json()["usage"]["dynasor"]
            assert usage["samples"] >= 2 and usage["exit_reason"] != "error"
            assert app.state.proxy.pool.replicas[0].down_reason == "unreachable"
            assert alive.requests == usage["samples"]


def test_a_sample_whose_stream_breaks_part_way_is_sent_again_to_another_replica(make_proxy):
    """The connection drops after tokens arrived: no client watched that sample decode, so it
    starts again on the other replica and the query is answered."""
    cutting, alive = FaultyUpstream("cut"), FaultyUpstream()
    with serve_app(cutting.app()) as cut_url, serve_app(alive.app()) as alive_url:
        settings = ServerSettings(upstreams=(cut_url, alive_url), upstream_attempts=1, health_interval_s=0)
        with make_proxy(settings) as (url, app):
            r = reason(url, max_samples=2)
            assert r.status_code == 200, r.text
            usage = r.json()["usage"]["dynasor"]
            assert usage["exit_reason"] != "error" and usage["samples"] == 2
            broken, serving = app.state.proxy.pool.replicas
            assert cutting.requests == broken.resent == 2  # the gang's two samples, each once
            assert broken.tokens_lost > 0 and broken.down_reason == "unreachable"
            assert alive.completed == 2 and serving.resent == 0
            metrics = httpx.get(f"{url}/metrics").text
            assert f'dynasor_upstream_resent_total{{upstream="{cut_url}"}} 2.0' in metrics
            [shown] = [u for u in httpx.get(f"{url}/health").json()["upstreams"] if u["url"] == cut_url]
            assert shown["resent"] == 2 and shown["tokens_lost"] == broken.tokens_lost


def test_a_relayed_chain_whose_stream_breaks_fails_rather_than_restarting(make_proxy):
    """A chain of thought streamed to its client as it decodes is not sent again (the client has
    seen its start): the stream ends with an error event, and the other replica is not asked."""
    cutting, alive = FaultyUpstream("cut"), FaultyUpstream()
    with serve_app(cutting.app()) as cut_url, serve_app(alive.app()) as alive_url:
        settings = ServerSettings(upstreams=(cut_url, alive_url), upstream_attempts=1, health_interval_s=0)
        with make_proxy(settings) as (url, app):
            cot = {"algorithm": "cot", "chunk_tokens": 6, "probe_tokens": 4}
            body = {"model": "fake", "messages": PROMPT, "max_tokens": 12, "stream": True, "dynasor": cot}
            got = events(httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).text)
            assert got[-1] == "[DONE]" and "broke after" in got[-2]["error"]["message"]
            assert alive.requests == 0 and app.state.proxy.pool.replicas[0].resent == 0
