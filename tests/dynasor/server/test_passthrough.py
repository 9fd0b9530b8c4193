"""Plain requests through the proxy to a fake upstream: bytes, statuses and streams untouched."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dynasor.server import ServerSettings

GAP_S = 0.15
"""Pause between the fake upstream's stream chunks."""

TOOLS_BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": "weather in Paris?"}],
    "tools": [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        }
    ],
    "tool_choice": "auto",
    "n": 2,
    "logprobs": True,
    "top_logprobs": 2,
    "response_format": {"type": "json_object"},
    "stop": ["\n\n", "END"],
    "vendor_field": {"nested": [1, 2.5, None, "x"]},
}


def _chunk(i: int, *, last: bool = False) -> bytes:
    data = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": f"{{{i}"}}]}
                if i
                else {"role": "assistant"},
                "finish_reason": "tool_calls" if last else None,
            }
        ],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _chat(request: Request) -> Response:
    raw = await request.body()
    body = json.loads(raw)
    if "status" in body:
        return JSONResponse({"error": {"message": "upstream says no", "code": body["status"]}}, body["status"])
    if body.get("stream"):

        async def chunks():
            for i in range(4):
                yield _chunk(i, last=i == 3)
                await asyncio.sleep(GAP_S)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")
    # Echo: the exact bytes received and the headers, so the test can compare.
    echo = {"raw": raw.decode(), "auth": request.headers.get("authorization")}
    return Response(json.dumps(echo), media_type="application/json", headers={"x-request-id": "up-1"})


async def _models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "test"}]})


# A stream as an upstream might write it, one write per item: multi-byte UTF-8 (one character
# split across two writes), a comment line, CRLF line ends, an event split in two, two events
# in one write, and an event with no blank line after it at the very end.
RAW_PIECES = [
    b'data: {"text": "caf\xc3\xa9 \xe2\x9c\x93", "n": 1.50}\n\n',
    b": keep-alive\n\n",
    b'event: message\r\nid: 7\r\ndata: {"crlf": true}\r\n\r\n',
    b'data: {"split": "\xe2\x9c',
    b'\x93 across writes"}\n\n',
    b'data: {"a": 1}\n\ndata: {"b": 2}\n\n',
    b"data:   [DONE]\n\n",
    b"data: tail without its blank line\n",
]
RELAYED_PIECES = [*RAW_PIECES[:3], RAW_PIECES[3] + RAW_PIECES[4], *RAW_PIECES[5:]]
"""What the client receives: each write as it came, except that half an event waits for its end."""


async def _raw_stream(request: Request) -> Response:
    await request.body()

    async def pieces():
        for piece in RAW_PIECES:
            yield piece
            await asyncio.sleep(0.02)

    return StreamingResponse(pieces(), media_type="text/event-stream; charset=utf-8")


def fake_upstream() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/chat/completions", _chat, methods=["POST"]),
            Route("/v1/completions", _raw_stream, methods=["POST"]),
            Route("/v1/models", _models),
        ]
    )


@pytest.fixture(scope="module")
def upstream(serve):
    with serve(fake_upstream()) as url:
        yield url


@pytest.fixture(scope="module")
def relay_proxy(upstream, make_proxy):
    with make_proxy(ServerSettings(upstreams=(upstream,), api_key="k", upstream_api_key="up-key")) as served:
        yield served


def test_body_is_forwarded_byte_for_byte(relay_proxy):
    url, _ = relay_proxy
    raw = json.dumps(TOOLS_BODY, indent=1).encode()  # odd formatting on purpose: must survive as is
    r = httpx.post(
        f"{url}/v1/chat/completions",
        content=raw,
        headers={"authorization": "Bearer k", "content-type": "application/json"},
    )
    assert r.status_code == 200
    echo = r.json()
    assert echo["raw"].encode() == raw
    # The client's key is the proxy's; upstream sees the upstream key only.
    assert echo["auth"] == "Bearer up-key"
    assert r.headers["x-request-id"] == "up-1"


@pytest.mark.parametrize("status", [400, 404, 422, 500])
def test_upstream_status_and_error_body_are_preserved(relay_proxy, status):
    url, _ = relay_proxy
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}], "status": status},
        headers={"authorization": "Bearer k"},
    )
    assert r.status_code == status
    assert r.json() == {"error": {"message": "upstream says no", "code": status}}


def test_stream_is_relayed_chunk_by_chunk_with_tool_calls(relay_proxy):
    url, _ = relay_proxy
    c = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    started = time.monotonic()
    arrivals, chunks = [], []
    sdk_args = {k: v for k, v in TOOLS_BODY.items() if k not in ("vendor_field", "n")}
    for chunk in c.chat.completions.create(**sdk_args, stream=True, extra_body={"vendor_field": 1}):
        arrivals.append(time.monotonic() - started)
        chunks.append(chunk)
    assert len(chunks) == 4
    # Unbuffered: the first chunk arrives long before the upstream has produced the last one.
    assert arrivals[0] < arrivals[-1] - 2 * GAP_S
    args = "".join(
        call.function.arguments for ch in chunks[1:] for call in ch.choices[0].delta.tool_calls or () if call.function
    )
    assert args == "{1{2{3"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("through_proxy", [False, True])
def test_a_stream_is_relayed_byte_for_byte_chunk_by_chunk(relay_proxy, upstream, through_proxy):
    """The proxy's stream equals the upstream's, piece by piece (the direct read is the control)."""
    url, _ = relay_proxy
    base = url if through_proxy else upstream
    body = {"model": "m", "prompt": "x", "stream": True}
    with httpx.stream("POST", f"{base}/v1/completions", json=body, headers={"authorization": "Bearer k"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        received = list(r.iter_raw())
    assert b"".join(received) == b"".join(RAW_PIECES)
    assert received == (RELAYED_PIECES if through_proxy else RAW_PIECES)


def test_models_come_from_the_upstream(relay_proxy):
    url, _ = relay_proxy
    models = openai.OpenAI(base_url=f"{url}/v1", api_key="k").models.list()
    assert [m.id for m in models.data] == ["fake-model"]


def test_unreachable_upstream_is_502_then_503_with_retry_after(make_proxy):
    """Without probing, the first request finds out (502) and takes the replica out (503 after)."""
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    with make_proxy(ServerSettings(upstreams=(dead,), replica_retry_s=30, health_interval_s=0)) as (url, _):
        body = {"messages": [{"role": "user", "content": "x"}]}
        first = httpx.post(f"{url}/v1/chat/completions", json=body)
        assert first.status_code == 502
        assert first.json()["error"]["type"] == "upstream_error"
        assert "unreachable" in first.json()["error"]["message"]
        second = httpx.post(f"{url}/v1/chat/completions", json=body)
        assert second.status_code == 503
        assert 1 <= int(second.headers["retry-after"]) <= 30
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["upstreams"][0]["up"] is False


def test_failing_replica_is_taken_out_and_traffic_moves(make_proxy, upstream):
    dead = "http://127.0.0.1:9"
    settings = ServerSettings(upstreams=(dead, upstream), replica_retry_s=30, health_interval_s=0)
    with make_proxy(settings) as (url, app):
        body = {"messages": [{"role": "user", "content": "x"}]}
        for _ in range(3):
            r = httpx.post(f"{url}/v1/chat/completions", json=body)
            assert r.status_code == 200 and "raw" in r.json()
        pool = app.state.proxy.pool
        assert [r.up(pool.clock()) for r in pool.replicas] == [False, True]
        assert pool.replicas[0].failures == 1  # tried once, then left out


def test_reasoning_on_an_unreachable_upstream_is_502_then_503(make_proxy):
    dead = "http://127.0.0.1:9"
    settings = ServerSettings(
        upstreams=(dead,), model="m", upstream_attempts=1, replica_retry_s=30, health_interval_s=0
    )
    with make_proxy(settings) as (url, app):
        body = {"messages": [{"role": "user", "content": "x"}], "dynasor": {"algorithm": "sc", "max_samples": 2}}
        first = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert first.status_code == 502, first.text
        assert first.json()["error"]["type"] == "upstream_error"
        assert "127.0.0.1:9" in first.json()["error"]["message"]
        second = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert second.status_code == 503 and int(second.headers["retry-after"]) >= 1
        assert app.state.proxy.runtime.active == 0 and app.state.proxy.pool.bound == 0


def test_a_connection_closed_without_answer_is_retried_once(make_proxy):
    """The first connection is dropped unanswered (as a server closing an idle keep-alive does)."""
    import socket
    import threading

    answer = b'{"ok": true}'
    seen = {"connections": 0}
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve_forever() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                seen["connections"] += 1
                conn.recv(65536)
                if seen["connections"] == 1:
                    continue  # closed without a byte of answer
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(answer)}\r\nconnection: close\r\n\r\n".encode()
                    + answer
                )

    server = threading.Thread(target=serve_forever, daemon=True)
    server.start()
    upstream = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        # No probing: the first connection the proxy opens is the one dropped.
        with make_proxy(ServerSettings(upstreams=(upstream,), health_interval_s=0)) as (url, app):
            r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 200 and r.json() == {"ok": True}
            assert seen["connections"] == 2
            assert app.state.proxy.pool.replicas[0].failures == 0
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        listener.close()
        server.join(timeout=10)
    assert not server.is_alive()


def test_a_client_leaving_a_relayed_stream_closes_the_upstream_stream(make_proxy, serve):
    # The upstream streams for ~10 s; the client reads two chunks and hangs up. The proxy must
    # notice and close its upstream stream (vLLM aborts the request on that), not drain it.
    ended: list[tuple[float, int]] = []

    async def long_stream(request: Request) -> Response:
        await request.body()

        async def chunks():
            sent = 0
            try:
                for i in range(200):
                    yield _chunk(i)
                    sent += 1
                    await asyncio.sleep(0.05)
            finally:
                ended.append((time.monotonic(), sent))

        return StreamingResponse(chunks(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", long_stream, methods=["POST"]), Route("/v1/models", _models)])
    with serve(app) as upstream, make_proxy(ServerSettings(upstreams=(upstream,))) as (url, _):
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.Client(timeout=5.0) as client, client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            left = time.monotonic()
        deadline = time.monotonic() + 5.0
        while not ended and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ended, "the upstream stream was still open 5 s after the client left"
        closed_at, sent = ended[0]
        assert closed_at - left < 3.0 and sent < 100
