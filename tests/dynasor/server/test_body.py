"""Request bodies: a size limit, strict JSON, a nesting guard, on every path; each answered 4xx in milliseconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from dynasor.server import ServerSettings
from dynasor.server._body import check_depth, parse_json, read_body
from dynasor.server._passthrough import ServingError
from tests.dynasor.server.conftest import serve_app
from tests.dynasor.server.faulty import FaultyUpstream

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def proxies(make_proxy, sim_settings) -> Iterator[dict[str, str]]:
    """A proxy over the sim and one relaying to a fake upstream, both with a 64 KiB body limit."""
    upstream = FaultyUpstream()
    with (
        serve_app(upstream.app()) as up_url,
        make_proxy(sim_settings(max_body_bytes=LIMIT)) as (sim_url, _),
        make_proxy(ServerSettings(upstreams=(up_url,), max_body_bytes=LIMIT)) as (relay_url, _),
    ):
        yield {"sim": sim_url, "relay": relay_url}


def post(url: str, content: bytes, **kw: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", content=content, headers={"content-type": "application/json"}, **kw)


@pytest.mark.parametrize("path", ["sim", "relay"])
@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"[" * 200_000 + b"]" * 200_000, 413, "exceeds this server's limit"),
        (b"[" * 50_000, 400, "nested too deeply"),
        (b'{"messages": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", 400, "nested"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 400, "NaN is not a JSON number"),
        (b'{"messages": [], "max_tokens": Infinity}', 400, "Infinity is not a JSON number"),
        (b"\xff\xfe{}", 400, "not UTF-8"),
        (b"{not json", 400, "not valid JSON"),
        (b'["a list"]', 400, "must be a JSON object"),
        (b"", 400, "not valid JSON"),
    ],
)
def test_bad_bodies_are_4xx_in_openai_shape(proxies, path, content, status, message):
    started = time.monotonic()
    r = post(proxies[path], content)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == status and message in error["message"]
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("path", ["sim", "relay"])
def test_a_body_without_a_length_is_refused_at_the_limit(proxies, path):
    """Chunked, no Content-Length: the proxy counts as it reads (what it keeps is bounded by read_body)."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):  # 1 MB
            yield b" " * 1000

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            try:
                return await client.post(f"{proxies[path]}/v1/chat/completions", content=chunks())
            except httpx.HTTPError:
                return httpx.Response(599)  # the proxy may close the connection while the client still sends

    r = asyncio.run(go())
    assert r.status_code in (413, 599)
    if r.status_code == 413:
        assert "exceeds" in r.json()["error"]["message"]


def test_a_body_at_the_limit_is_read():
    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    assert asyncio.run(read_body(one(b"x" * 10), "10", 10)) == b"x" * 10
    with pytest.raises(ServingError) as info:
        asyncio.run(read_body(one(b"x" * 11), None, 10))
    assert info.value.status == 413
    with pytest.raises(ServingError) as info:
        asyncio.run(read_body(one(b""), "11", 10))  # refused on the declared length, before reading
    assert info.value.status == 413


def test_parse_and_depth_guards():
    assert parse_json(b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    check_depth({"a": [1, {"b": 2}]}, limit=3)
    with pytest.raises(ServingError, match="more than 2 levels"):
        check_depth({"a": [1, {"b": 2}]}, limit=2)


def test_a_client_gone_while_its_body_is_read_is_no_error(proxies, caplog):
    """The client sends half a body and leaves: no 500, no traceback, nothing counted as a server error."""
    import socket
    from urllib.parse import urlparse

    for name in ("sim", "relay"):
        address = urlparse(proxies[name])
        with socket.create_connection((address.hostname, address.port)) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 1000\r\n\r\n" + b'{"messages": ['
            )
        metrics = httpx.get(f"{proxies[name]}/metrics").text
        for _ in range(50):
            if 'status="499"' in metrics:
                break
            time.sleep(0.05)
            metrics = httpx.get(f"{proxies[name]}/metrics").text
        assert 'status="499"' in metrics and 'status="500"' not in metrics
    assert "unhandled error" not in caplog.text
