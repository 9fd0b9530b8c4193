"""Plain requests (no ``dynasor`` field): forwarded to an upstream unchanged.

The client's body goes upstream byte for byte; the upstream's status, content type and
body come back as they are, a stream relayed chunk by chunk as the bytes arrive. Over the
simulated engine there is nothing to forward to, so the sim answers in the OpenAI shape.

The relay's HTTP client is aiohttp, whose HTTP parser is compiled: on an instantly answering
upstream the client's side of a relayed request cost 3-4x more CPU through httpx (pure-Python
h11), and was the larger part of the proxy's own CPU (docs/proxy.md, "Where the time goes").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from algorithms.protocol import Completion, GenerateRequest
from dynasor._exceptions import EngineError
from dynasor.engine.base import Backend, EngineRequest
from dynasor.server._shapes import DONE, PATHS, Endpoint, Shaper
from dynasor.server.protocol import ChatCompletionRequest, CompletionRequest, error_body
from dynasor.server.upstreams import NoHealthyUpstream, Replica, UpstreamPool

__all__ = ["Relay", "ServingError", "SimResponder", "UpstreamRelay", "unavailable"]

# Headers of the upstream answer worth relaying; length and encoding are set anew.
_RELAYED = ("content-type", "retry-after", "x-request-id")
_FORWARDED = ("content-type", "accept", "user-agent", "x-request-id", "traceparent")
# Tokens the sim generates when a plain request names no max_tokens.
_SIM_DEFAULT_MAX_TOKENS = 256

logger = logging.getLogger(__name__)


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
    stream: AsyncIterable[bytes] | None = None
    close: Callable[[], Awaitable[None]] | None = None
    """Ends the stream whether or not it was sent (the routes call it when the response is over)."""


class UpstreamRelay:
    """Forwards plain requests to the least loaded usable replica over pooled HTTP.

    At most ``max_inflight`` requests are relayed at once (more: 429 with ``Retry-After``);
    ``total_timeout`` bounds a request from its arrival to the end of its answer (504 before
    the answer starts, an error event in a stream after). A stream that breaks off, or stalls
    past the read timeout, ends with an error event and ``[DONE]``, never a dropped connection:
    only whole events are relayed, so the error event is never glued to half of one.
    """

    def __init__(
        self,
        pool: UpstreamPool,
        *,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float | None = 600.0,
        total_timeout: float | None = None,
        max_inflight: int = 1024,
        on_done: Callable[[Endpoint | str, float], None] | None = None,
    ) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
        self.pool = pool
        self.on_done = on_done
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_inflight = max_inflight
        self.active = 0
        """Requests admitted and not finished (streams until their last byte)."""
        self.broken_streams = 0
        """Streams ended with an error event because the upstream failed mid-way."""
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled client session, opened on first use (it belongs to the running loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # More connections than admitted requests, so an admitted request never waits for one.
                # Idle connections are dropped before the engine's keep-alive timeout (uvicorn, vLLM:
                # 5 s) would close them under a request being sent.
                connector=aiohttp.TCPConnector(limit=self.max_inflight + 16, keepalive_timeout=3.0),
                headers=self._headers,
                timeout=self._timeout,
                # Bytes are relayed as they come: no compression asked for or undone, and no
                # content type the client did not send.
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding", "Content-Type"),
            )
        return self._session

    @property
    def inflight(self) -> int:
        return self.active

    async def forward(self, method: str, path: str, body: bytes, headers: Mapping[str, str], *, stream: bool) -> Relay:
        """Send the request upstream; a replica that cannot be reached is taken out and the next tried."""
        if self.active >= self.max_inflight:
            raise ServingError(
                429,
                f"{self.active} pass-through requests in flight (limit {self.max_inflight}); retry later",
                "rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        started = time.perf_counter()
        deadline = None if self.total_timeout is None else time.monotonic() + self.total_timeout
        self.active += 1
        handed_over = False
        try:
            async with asyncio.timeout_at(None if deadline is None else _loop_deadline(deadline)):
                relay = await self._forward(
                    method, path, body, headers, stream=stream, started=started, deadline=deadline
                )
            handed_over = relay.stream is not None
            return relay
        except TimeoutError:
            raise ServingError(
                504,
                f"the upstream did not answer within the proxy's request timeout ({self.total_timeout:g} s)",
                "upstream_timeout",
            ) from None
        finally:
            if not handed_over:  # a stream releases its slot when it ends
                self.active -= 1

    async def _forward(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        stream: bool,
        started: float,
        deadline: float | None,
    ) -> Relay:
        sent = {k: v for k, v in headers.items() if k.lower() in _FORWARDED}
        tried: list[Replica] = []
        stale_retry = True
        while True:
            try:
                replica = self.pool.pick(exclude=tried)
            except NoHealthyUpstream as exc:
                raise unavailable(exc) from None
            replica.inflight += 1
            try:
                response = await self.session.request(method, replica.url + path, data=body or None, headers=sent)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Nothing reached the replica: safe to try another one.
                replica.inflight -= 1
                tried.append(replica)
                self.pool.mark_unreachable(replica, f"{type(exc).__name__}: {exc}")
                if len(tried) == len(self.pool.replicas):
                    raise ServingError(
                        502, f"upstream {replica.url} unreachable: {type(exc).__name__}: {exc}", "upstream_error"
                    ) from exc
                continue
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # A kept-alive connection the upstream had just closed: no answer came, so the
                # request is sent once more on a fresh connection (the engine drops the first).
                replica.inflight -= 1
                if stale_retry:
                    stale_retry = False
                    continue
                raise ServingError(
                    502, f"upstream {replica.url} failed: {type(exc).__name__}: {exc}", "upstream_error"
                ) from exc
            except aiohttp.ServerTimeoutError as exc:
                replica.inflight -= 1
                raise ServingError(
                    504, f"upstream {replica.url} sent no answer in time: {type(exc).__name__}", "upstream_timeout"
                ) from exc
            except aiohttp.ClientError as exc:
                replica.inflight -= 1
                raise ServingError(
                    502, f"upstream {replica.url} failed: {type(exc).__name__}: {exc}", "upstream_error"
                ) from exc
            except BaseException:
                replica.inflight -= 1
                raise
            break
        if replica.failures or replica.down_reason is not None:
            self.pool.mark_ok(replica)
        out = {k.lower(): v for k, v in response.headers.items() if k.lower() in _RELAYED}
        if stream and response.status < 400:
            relayed = _RelayedStream(self, response, replica, path, started, deadline)
            return Relay(response.status, out, stream=relayed, close=relayed.aclose)
        try:
            data = await response.read()
        except aiohttp.ServerTimeoutError as exc:
            raise ServingError(
                504, f"upstream {replica.url} stopped sending: {type(exc).__name__}", "upstream_timeout"
            ) from exc
        except aiohttp.ClientError as exc:
            raise ServingError(502, f"upstream {replica.url} broke off: {_describe(exc)}", "upstream_error") from exc
        finally:
            response.release()  # back to the pool if the body was read whole, else closed
            replica.inflight -= 1
        self._done(path, started)
        return Relay(response.status, out, body=data)

    def _done(self, path: str, started: float) -> None:
        if self.on_done is not None:
            self.on_done(path, time.perf_counter() - started)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _RelayedStream:
    """An upstream stream relayed to the client; :meth:`aclose` ends it, relayed or not.

    Closing (the client gone, or the response never sent) closes the upstream stream, which
    is how the engine learns to abort, and frees the request's slot.
    """

    def __init__(
        self,
        relay: UpstreamRelay,
        response: aiohttp.ClientResponse,
        replica: Replica,
        path: str,
        started: float,
        deadline: float | None,
    ) -> None:
        self.relay = relay
        self.response = response
        self.replica = replica
        self.path = path
        self.started = started
        self.deadline = deadline
        self.events = response.headers.get("content-type", "").startswith("text/event-stream")
        self.chunked = "chunked" in response.headers.get("transfer-encoding", "").lower()
        self.finished = False
        self.closed = False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.replica.inflight -= 1
        self.relay.active -= 1
        self.relay._done(self.path, self.started)
        if self.finished:
            self.response.release()  # the connection goes back to the pool
        else:
            self.response.close()  # closing the connection is how the engine learns to abort

    def _reads(self) -> AsyncIterator[tuple[bytes, bool]]:
        """The upstream's bytes as ``(data, ends_a_chunk)``.

        Events are cut at their own boundaries, so everything received so far is taken in one
        read: when the upstream writes faster than the client reads, many events go out in one
        write instead of one each (a relayed token costs the proxy a fraction of a wakeup).
        Other streams keep the upstream's chunks.
        """
        if self.events:
            return _whole_reads(self.response.content)
        return self.response.content.iter_chunks()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        relay = self.relay
        held = b""  # the start of an event whose end has not arrived yet
        error: str | None = None
        partial = b""  # the start of an upstream chunk that arrived in parts
        try:
            async for data, chunk_ends in self._reads():
                if self.chunked and not chunk_ends:
                    partial += data
                    continue
                piece, partial = partial + data, b""
                if not piece:
                    continue
                if self.events:
                    if held:
                        piece, held = held + piece, b""
                    cut = _events_end(piece)
                    if cut < len(piece):
                        piece, held = piece[:cut], piece[cut:]
                    if not piece:
                        continue
                yield piece
                if self.deadline is not None and time.monotonic() > self.deadline:
                    error = f"the answer ran past the proxy's request timeout ({relay.total_timeout:g} s)"
                    break
            else:
                self.finished = True
        except aiohttp.ServerTimeoutError:
            error = f"upstream {self.replica.url} sent nothing for {relay.read_timeout:g} s"
        except aiohttp.ClientError as exc:
            error = f"upstream {self.replica.url} broke off the stream: {_describe(exc)}"
            # What arrived before the break still goes to the client, whole events only.
            partial += _received_unread(self.response.content)
        finally:
            await self.aclose()
        if error is not None and self.events:
            rest = held + partial
            whole = rest[: _events_end(rest)]
            if whole:
                yield whole
        if error is None:
            held += partial
            if held:
                yield held  # a last event without its blank line
            return
        relay.broken_streams += 1
        logger.warning("pass-through stream on %s ended early: %s", self.path, error)
        if self.events:
            yield _sse_error(ServingError(502, error, "upstream_error"))


async def _whole_reads(content: aiohttp.StreamReader) -> AsyncIterator[tuple[bytes, bool]]:
    async for data in content.iter_any():
        yield data, True


def _received_unread(content: aiohttp.StreamReader) -> bytes:
    """Bytes aiohttp received but had not handed out when the connection broke: once it holds the
    error its reads raise before returning them (aiohttp 3.x keeps them in ``_buffer``)."""
    buffer = getattr(content, "_buffer", None)
    return b"".join(bytes(part) for part in buffer) if buffer else b""


def _events_end(data: bytes) -> int:
    """Where the last complete server-sent event in ``data`` ends (0: none ends in it)."""
    if data.endswith(b"\n\n"):
        return len(data)
    end = data.rfind(b"\n\n")
    cut = end + 2 if end >= 0 else 0
    crlf = data.rfind(b"\r\n\r\n")
    return max(cut, crlf + 4) if crlf >= 0 else cut


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an HTTP client error, with the cause a payload error wraps."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    return f"{text} ({type(cause).__name__}: {cause})" if cause is not None and str(cause) not in text else text


def _loop_deadline(monotonic_deadline: float) -> float:
    """A ``time.monotonic`` deadline on the running loop's clock."""
    return asyncio.get_running_loop().time() + (monotonic_deadline - time.monotonic())


class SimResponder:
    """Answers plain requests over the simulated engine, in the OpenAI shape of each endpoint.

    The simulated engine produces a request's text in one piece when it finishes, so a
    stream carries that text in one chunk, then the finish chunk.
    """

    def __init__(
        self,
        backend: Backend,
        on_done: Callable[[Endpoint | str, float], None] | None = None,
        *,
        max_inflight: int = 1024,
    ) -> None:
        self.backend = backend
        self.on_done = on_done
        self.max_inflight = max_inflight
        self.inflight = 0
        """Simulated sequences of plain requests running now."""

    async def answer(self, endpoint: Endpoint, req: ChatCompletionRequest | CompletionRequest) -> Relay:
        if self.inflight >= self.max_inflight:
            raise ServingError(
                429,
                f"{self.inflight} pass-through sequences in flight (limit {self.max_inflight}); retry later",
                "rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
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
        if req.include_usage:
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
            self.on_done(PATHS[endpoint], time.perf_counter() - started)


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
