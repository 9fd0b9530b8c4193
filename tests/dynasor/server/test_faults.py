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
        assert "ConnectError" in replica["error"]
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
