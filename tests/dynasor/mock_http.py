"""A loopback HTTP server that answers each request with a test's handler.

The handler takes an ``httpx.Request`` and returns an ``httpx.Response`` (or awaits one); its
body goes out as it is iterated, one write per piece. A handler fails the way a network does:

- raising ``httpx.ConnectError``: the connection is dropped before any answer;
- raising ``httpx.ReadTimeout``: no answer at all, until the client gives up;
- a response stream that raises part-way: the connection is dropped there.

A stream is closed (``aclose``) when it ends, is cut off, or its client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[httpx.Request], "httpx.Response | Awaitable[httpx.Response]"]

_HOP_HEADERS = {"content-length", "transfer-encoding", "connection"}


@contextlib.asynccontextmanager
async def serving(handler: Handler, peers: list[Any] | None = None) -> AsyncIterator[str]:
    """Serve ``handler`` on 127.0.0.1; yields the server's root URL (no trailing slash).

    ``peers``, when given, receives each request's client address (one per connection used).
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        if peers is not None and request.transport is not None:
            peers.append(request.transport.get_extra_info("peername"))
        body = await request.read()
        asked = httpx.Request(request.method, str(request.url), headers=dict(request.headers), content=body)
        try:
            answer: Any = handler(asked)
            if inspect.isawaitable(answer):
                answer = await answer
        except httpx.ConnectError:
            return _drop(request)
        except httpx.ReadTimeout:
            await asyncio.Event().wait()  # silent until the client or the server gives up
            raise AssertionError("unreachable") from None
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
        response = web.StreamResponse(status=answer.status_code, headers=headers)
        await response.prepare(request)
        stream = answer.stream
        try:
            async for piece in stream:
                await response.write(piece)
        except ConnectionResetError:  # the client went away
            return response
        except httpx.HTTPError:
            return _drop(request)
        finally:
            await stream.aclose()
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without (the rest of) an answer."""
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (fail after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
