"""Plain requests (no ``dynasor`` field): forwarded to an upstream unchanged.

The client's body goes upstream byte for byte; the upstream's status, content type and
body come back as they are, a stream relayed chunk by chunk as the bytes arrive. Over the
simulated engine there is nothing to forward to, so the sim answers in the OpenAI shape.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from algorithms.protocol import Completion, GenerateRequest
from dynasor._exceptions import EngineError
from dynasor.engine.base import Backend, EngineRequest
from dynasor.server._shapes import DONE, Endpoint, Shaper
from dynasor.server.protocol import ChatCompletionRequest, CompletionRequest, error_body
from dynasor.server.upstreams import NoHealthyUpstream, Replica, UpstreamPool

__all__ = ["Relay", "ServingError", "SimResponder", "UpstreamRelay", "unavailable"]

_PATHS: dict[Endpoint, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
# Headers of the upstream answer worth relaying; length and encoding are set anew.
_RELAYED = ("content-type", "retry-after", "x-request-id")
_FORWARDED = ("content-type", "accept", "user-agent", "x-request-id", "traceparent")
# Tokens the sim generates when a plain request names no max_tokens.
_SIM_DEFAULT_MAX_TOKENS = 256


class ServingError(Exception):
    """A request the proxy answers with an error status and an OpenAI-shaped body."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, status, kind, param)
        self.headers = dict(headers or {})


def unavailable(exc: Exception) -> ServingError:
    """The error for an upstream that cannot serve: 503 while all are out, else 502."""
    if isinstance(exc, NoHealthyUpstream):
        retry = max(1, round(exc.retry_after))
        return ServingError(503, str(exc), "upstream_unavailable", headers={"Retry-After": str(retry)})
    return ServingError(502, f"upstream failed: {exc}", "upstream_error")


@dataclass(slots=True)
class Relay:
    """An answer for the routes to send: whole ``body``, or a byte ``stream``."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


class UpstreamRelay:
    """Forwards plain requests to the least loaded healthy replica over pooled HTTP."""

    def __init__(
        self,
        pool: UpstreamPool,
        *,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float | None = 600.0,
        max_connections: int = 1024,
        on_done: Callable[[Endpoint | str, float], None] | None = None,
    ) -> None:
        self.pool = pool
        self.on_done = on_done
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=None),
            # Idle connections are dropped before the engine's keep-alive timeout (uvicorn, vLLM: 5 s)
            # would close them under a request being sent.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=3.0
            ),
        )

    @property
    def inflight(self) -> int:
        return sum(r.inflight for r in self.pool.replicas)

    async def forward(self, method: str, path: str, body: bytes, headers: Mapping[str, str], *, stream: bool) -> Relay:
        """Send the request upstream; a replica that cannot be reached is taken out and the next tried."""
        started = time.perf_counter()
        sent = {k: v for k, v in headers.items() if k.lower() in _FORWARDED}
        tried: list[Replica] = []
        stale_retry = True
        while True:
            try:
                replica = self.pool.pick(exclude=tried)
            except NoHealthyUpstream as exc:
                raise unavailable(exc) from None
            request = self.client.build_request(method, replica.url + path, content=body or None, headers=sent)
            replica.inflight += 1
            try:
                response = await self.client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # Nothing reached the replica: safe to try another one.
                replica.inflight -= 1
                tried.append(replica)
                self.pool.mark_failed(replica, f"{type(exc).__name__}: {exc}")
                if len(tried) == len(self.pool.replicas):
                    raise ServingError(
                        502, f"upstream {replica.url} unreachable: {type(exc).__name__}: {exc}", "upstream_error"
                    ) from exc
                continue
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # A kept-alive connection the upstream had just closed: no answer came, so the
                # request is sent once more on a fresh connection (the engine drops the first).
                replica.inflight -= 1
                if stale_retry:
                    stale_retry = False
                    continue
                raise ServingError(
                    502, f"upstream {replica.url} failed: {type(exc).__name__}: {exc}", "upstream_error"
                ) from exc
            except httpx.HTTPError as exc:
                replica.inflight -= 1
                raise ServingError(
                    502, f"upstream {replica.url} failed: {type(exc).__name__}: {exc}", "upstream_error"
                ) from exc
            except BaseException:
                replica.inflight -= 1
                raise
            break
        if replica.failures:
            self.pool.mark_ok(replica)
        out = {k: v for k, v in response.headers.items() if k.lower() in _RELAYED}
        if stream and response.status_code < 400:
            return Relay(response.status_code, out, stream=self._relay(response, replica, path, started))
        try:
            data = await response.aread()
        except httpx.HTTPError as exc:
            raise ServingError(502, f"upstream {replica.url} broke off: {exc}", "upstream_error") from exc
        finally:
            await response.aclose()
            replica.inflight -= 1
        self._done(path, started)
        return Relay(response.status_code, out, body=data)

    async def _relay(
        self, response: httpx.Response, replica: Replica, path: str, started: float
    ) -> AsyncIterator[bytes]:
        # Closing the generator (client gone) closes the upstream stream: the engine aborts.
        try:
            async for piece in response.aiter_raw():
                yield piece
        finally:
            await response.aclose()
            replica.inflight -= 1
            self._done(path, started)

    def _done(self, path: str, started: float) -> None:
        if self.on_done is not None:
            self.on_done(path, time.perf_counter() - started)

    async def aclose(self) -> None:
        await self.client.aclose()


class SimResponder:
    """Answers plain requests over the simulated engine, in the OpenAI shape of each endpoint.

    The simulated engine produces a request's text in one piece when it finishes, so a
    stream carries that text in one chunk, then the finish chunk.
    """

    def __init__(self, backend: Backend, on_done: Callable[[Endpoint | str, float], None] | None = None) -> None:
        self.backend = backend
        self.on_done = on_done
        self.inflight = 0

    async def answer(self, endpoint: Endpoint, req: ChatCompletionRequest | CompletionRequest) -> Relay:
        started = time.perf_counter()
        prompts = _prompts(req)
        n = req.n or 1
        max_tokens = req.token_cap() or _SIM_DEFAULT_MAX_TOKENS
        shaper = Shaper(endpoint, req.model or self.backend.model)
        gen = [GenerateRequest(p, max_tokens=max_tokens, temperature=req.temperature or 0.0) for p in prompts]
        calls = [(g, _key(g.prompt)) for g in gen for _ in range(n)]
        if not req.stream:
            completions = await self._run(calls)
            self._done(endpoint, started)
            texts = [(c.text, _finish(c)) for c in completions]
            return Relay(
                200, {"content-type": "application/json"}, body=_json(shaper.response(texts, _usage(completions, n)))
            )
        return Relay(
            200, {"content-type": "text/event-stream"}, stream=self._stream(endpoint, req, shaper, calls, started)
        )

    async def _stream(
        self,
        endpoint: Endpoint,
        req: ChatCompletionRequest | CompletionRequest,
        shaper: Shaper,
        calls: list[tuple[GenerateRequest, str]],
        started: float,
    ) -> AsyncIterator[bytes]:
        try:
            if endpoint == "chat":
                for index in range(len(calls)):
                    yield shaper.chunk("", index=index, first=True)
            completions = await self._run(calls)
        except ServingError as exc:
            yield _sse_error(exc)
            return
        for index, completion in enumerate(completions):
            yield shaper.chunk(completion.text, index=index)
            yield shaper.chunk(None if endpoint == "chat" else "", _finish(completion), index=index)
        if (req.stream_options or {}).get("include_usage"):
            yield shaper.side_chunk(usage=_usage(completions, req.n or 1))
        yield DONE
        self._done(endpoint, started)

    async def _run(self, calls: list[tuple[GenerateRequest, str]]) -> list[Completion]:
        self.inflight += len(calls)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.backend.generate(EngineRequest(f"{key}-{i}", key, g)))
                    for i, (g, key) in enumerate(calls)
                ]
        except* EngineError as group:
            raise ServingError(502, f"simulated engine failed: {group.exceptions[0]}", "upstream_error") from None
        finally:
            self.inflight -= len(calls)
        return [t.result() for t in tasks]

    def _done(self, endpoint: Endpoint, started: float) -> None:
        if self.on_done is not None:
            self.on_done(_PATHS[endpoint], time.perf_counter() - started)


def _prompts(req: ChatCompletionRequest | CompletionRequest) -> list[Any]:
    if isinstance(req, ChatCompletionRequest):
        return [req.messages]
    if isinstance(req.prompt, str):
        return [req.prompt]
    if not req.prompt:
        raise ServingError(400, "prompt must not be empty", param="prompt")
    return list(req.prompt)


def _key(prompt: Any) -> str:
    # Same prompt, same simulated query: its answers and lengths stay consistent.
    return "plain-" + hashlib.blake2b(repr(prompt).encode(), digest_size=6).hexdigest()


def _finish(completion: Completion) -> str:
    return "length" if completion.finish_reason == "length" else "stop"


def _usage(completions: list[Completion], n: int = 1) -> dict[str, int]:
    # Each prompt is counted once, not once per choice.
    prompt = sum(c.prompt_tokens for c in completions[::n])
    out = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}


def _json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _sse_error(exc: ServingError) -> bytes:
    return b"data: " + json.dumps(exc.body).encode() + b"\n\n" + DONE
