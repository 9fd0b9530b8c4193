"""The ``openai`` backend: any OpenAI-compatible server over HTTP, vLLM first.

Every request streams (server-sent events) with ``stream_options.include_usage``, for two
reasons: cancelling the awaiting task closes the stream, which is how vLLM learns to abort
the sequence and free its KV cache; and token counts come from the engine's own usage
block rather than from counting chunks.

The client (this module) holds the connection pool, retries and the model name; the request
body is shaped in :mod:`._request`, the streamed answer read in :mod:`._stream`, and failures
mapped onto Dynasor's errors in :mod:`._errors`.

Failures before the first token (connection refused or reset, HTTP 429, HTTP 5xx) are
retried with exponential backoff and jitter; once a token has streamed a failure is final,
since a retry would silently generate a different continuation.

The HTTP client is aiohttp, whose HTTP parser is compiled: a sub-request streams one event
per token, and per event a pure-Python stack (httpx's) cost more CPU than everything else the
proxy does for it (docs/proxy.md, "Where the time goes"). Each read takes every byte received
so far, so when events arrive faster than they are handled, many are parsed in one go.

Example
-------
>>> async def main() -> None:  # doctest: +SKIP
...     async with OpenAIBackend("http://127.0.0.1:8000", model="smollm2") as backend:
...         req = EngineRequest("r1", "q1", GenerateRequest("2+2=", max_tokens=8))
...         print((await backend.generate(req)).text)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp

from algorithms.protocol import Completion, GenerateRequest  # noqa: F401  (doctest)
from dynasor._exceptions import ConfigError, EngineError, EngineTimeout, EngineUnavailable, StreamBroken
from dynasor.engine.base import Backend, Capacity, EngineRequest
from dynasor.engine.openai._errors import Retryable, RetryPolicy, status_error
from dynasor.engine.openai._request import PriorityConvention, build_body, engine_priority
from dynasor.engine.openai._stream import Accumulator, SSEDecoder

__all__ = ["OpenAIBackend"]

T = TypeVar("T")


class OpenAIBackend(Backend):
    """Generation on an OpenAI-compatible server (vLLM, SGLang, ...) over pooled HTTP.

    Parameters
    ----------
    base_url
        Server root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted).
    model
        Model name sent with each request; None: the first one ``/v1/models`` lists.
    api_key
        Sent as a bearer token when given.
    priority
        The engine's :data:`PriorityConvention`. :class:`EngineRequest` priorities follow
        vLLM (lower first) and are negated for ``higher-first`` engines.
    max_seqs, max_kv_tokens
        What :meth:`capacity` reports to the scheduler (None: the backend does not know).
    connect_timeout, read_timeout
        Seconds to open a connection, and the longest silence allowed while waiting for the
        next bytes of a response (a queued request on a busy engine sends nothing until its
        first token, so keep this generous).
    retry
        Backoff for failures before the first token.
    max_connections
        Size of the keep-alive connection pool (one streaming request holds one).
    continuous_usage
        Ask for usage in every chunk (``stream_options.continuous_usage_stats``, a vLLM
        extension) so ``request.meter`` is exact while the request runs; turn it off for
        servers that reject the field (the meter then counts one token per chunk until the
        final usage block).
    stream_interval
        Tokens per streamed chunk asked of the engine (vLLM's per-request ``stream_interval``;
        its server's ``--stream-interval`` is the floor). Each chunk costs the proxy a parse
        and a wakeup, so on long samples this divides most of the proxy's CPU per sub-request;
        the meter (exact with ``continuous_usage``) and any streamed text then advance that
        many tokens at a time. None: not sent, one token per chunk on vLLM's default (older
        vLLM versions ignore the field; other servers may reject it).
    trace_configs
        aiohttp request hooks (``aiohttp.TraceConfig``), e.g. to time when each request is sent.
    seed
        Seeds the jitter of retry delays.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        priority: PriorityConvention = "lower-first",
        max_seqs: int | None = None,
        max_kv_tokens: int | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float | None = 600.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 512,
        headers: Mapping[str, str] | None = None,
        continuous_usage: bool = True,
        stream_interval: int | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
        seed: int | None = None,
    ) -> None:
        if priority not in ("lower-first", "higher-first", "none"):
            raise ConfigError(f"unknown priority convention {priority!r}: lower-first, higher-first or none")
        root = base_url.rstrip("/")
        self.base_url = root.removesuffix("/v1")
        self.model = model or "unknown"
        self._model_known = model is not None
        self.priority_convention: PriorityConvention = priority
        self.retry = retry or RetryPolicy()
        self.continuous_usage = continuous_usage
        if stream_interval is not None and stream_interval < 1:
            raise ConfigError(f"stream_interval must be >= 1, got {stream_interval}")
        self.stream_interval = stream_interval
        self._capacity = Capacity(max_seqs, max_kv_tokens) if max_seqs is not None else None
        self._rng = random.Random(seed)
        all_headers = dict(headers or {})
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._headers = all_headers
        self._max_connections = max_connections
        self._trace_configs = list(trace_configs)
        # No total limit: the scheduler, not a timeout, bounds how long a generation may run.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._health_timeout = aiohttp.ClientTimeout(total=min(connect_timeout, 5.0))
        self._session: aiohttp.ClientSession | None = None
        self._model_lock = asyncio.Lock()

    @property
    def _http(self) -> aiohttp.ClientSession:
        """The pooled session, opened on first use (it belongs to the running event loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # When every connection is busy a request waits its turn. Idle connections are
                # dropped before the engine's keep-alive timeout (uvicorn, vLLM: 5 s) would
                # close them under a request being sent.
                connector=aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=3.0),
                headers=self._headers,
                timeout=self._timeout,
                trace_configs=self._trace_configs,
            )
        return self._session

    # -- public API -------------------------------------------------------------------

    def capacity(self) -> Capacity | None:
        return self._capacity

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def models(self) -> list[str]:
        """Model ids the upstream serves (``GET /v1/models``)."""
        body = await self._request_json("GET", "/v1/models", None)
        data = body.get("data", []) if isinstance(body, Mapping) else None
        if not isinstance(data, list) or not all(isinstance(m, Mapping) and isinstance(m.get("id"), str) for m in data):
            raise EngineError(f"{self.base_url}/v1/models answered an unexpected shape: {str(body)[:200]}")
        return [m["id"] for m in data]

    async def check_health(self) -> None:
        """Raise :class:`EngineUnavailable` unless the server answers its health check.

        ``GET /health`` (vLLM, SGLang); a server without one (404) is asked ``GET /v1/models``.
        """
        for path in ("/health", "/v1/models"):
            try:
                async with self._http.get(self.base_url + path, timeout=self._health_timeout) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise EngineUnavailable(f"health check of {self.base_url}: {type(exc).__name__}: {exc}") from exc
            if status == 404 and path == "/health":
                continue
            if status >= 400:
                raise EngineUnavailable(f"health check of {self.base_url}{path} answered HTTP {status}", status=status)
            return

    async def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST ``body`` to ``path`` on the upstream (e.g. ``/classify``) and return its JSON.

        Shares the connection pool, timeouts, retry policy and error mapping of generation,
        so reward-model scorers and other extensions can build on it.
        """
        return await self._request_json("POST", path, body)

    def engine_priority(self, priority: int) -> int | None:
        """The ``priority`` value to send for a vLLM-convention priority (None: send none)."""
        return engine_priority(self.priority_convention, priority)

    def build_body(self, request: EngineRequest) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body for ``request`` (public for inspection and tests)."""
        return build_body(
            request,
            model=self.model,
            priority=self.engine_priority(request.priority),
            usage=self.continuous_usage,
            stream_interval=self.stream_interval,
        )

    async def generate(self, request: EngineRequest) -> Completion:
        """Stream ``request`` from the server; see :meth:`Backend.generate`.

        Raises
        ------
        EngineUnavailable
            The server could not be reached, or kept answering 429/5xx, through all retries.
        EngineTimeout
            No bytes arrived within ``read_timeout``.
        StreamBroken
            The connection broke after tokens arrived (not retried: they may have been relayed).
        EngineError
            Any other failure: a 4xx answer (``status`` and ``body`` carry the server's),
            or an error event in the stream.
        """
        await self._ensure_model()
        path, body = self.build_body(request)
        return await self._retrying(lambda attempt: self._stream_once(path, body, request, attempts=attempt))

    # -- internals --------------------------------------------------------------------

    async def _ensure_model(self) -> None:
        if self._model_known:
            return
        async with self._model_lock:
            if not self._model_known:
                names = await self.models()
                if not names:
                    raise EngineError(f"{self.base_url} serves no model")
                self.model, self._model_known = names[0], True

    async def _stream_once(
        self, path: str, body: Mapping[str, Any], request: EngineRequest, *, attempts: int
    ) -> Completion:
        acc = Accumulator(request)
        t0 = time.monotonic()
        url = self.base_url + path
        try:
            # Leaving this block before the end of the body closes the connection: for vLLM,
            # that is the abort of a cancelled request.
            async with self._http.post(url, json=body) as response:
                if response.status >= 400:
                    raise status_error(response.status, response.headers, await response.read(), path)
                decoder = SSEDecoder()
                done = False
                head = b""  # the start of the body, to name what arrived when it holds no events
                async for data in response.content.iter_any():
                    if len(head) < 200:
                        head += data[: 200 - len(head)]
                    for event in decoder.decode(data):
                        done = done or acc.event(event, time.monotonic() - t0)
                    if done:
                        break
                else:
                    for event in decoder.flush():
                        acc.event(event, time.monotonic() - t0)
                if acc.chunks == 0 and acc.finish is None:
                    kind = response.headers.get("content-type", "no content type")
                    text = head.decode("utf-8", errors="replace")
                    raise EngineError(f"{url} answered no completion events ({kind}): {text!r}")
                if done:
                    await _finish_body(response)
        except aiohttp.ClientError as exc:
            error = _mapped(exc, url)
            if acc.started and isinstance(error, Retryable):
                message = f"stream from {url} broke after {acc.chunks} chunks: {type(exc).__name__}: {exc}"
                raise StreamBroken(message, chunks=acc.chunks) from exc
            raise error from exc
        return acc.completion(attempts=attempts, latency_s=time.monotonic() - t0)

    async def _retrying(self, once: Callable[[int], Awaitable[T]]) -> T:
        """Call ``once(attempt)`` (1-based) until it stops raising ``Retryable``, with backoff."""
        last: Retryable | None = None
        for attempt in range(self.retry.attempts):
            if last is not None:
                await asyncio.sleep(self.retry.delay(attempt - 1, self._rng, last.retry_after))
            try:
                return await once(attempt + 1)
            except Retryable as exc:
                last = exc
        assert last is not None
        raise last.error from last.error.__cause__

    async def _request_json(self, method: str, path: str, body: Mapping[str, Any] | None) -> Any:
        url = self.base_url + path

        async def once(_: int) -> Any:
            try:
                async with self._http.request(method, url, json=body) as response:
                    data = await response.read()
                    status, headers = response.status, response.headers
            except aiohttp.ClientError as exc:
                raise _mapped(exc, url) from exc
            if status >= 400:
                raise status_error(status, headers, data, path)
            try:
                return json.loads(data)
            except ValueError as exc:
                raise EngineError(f"{url} answered with invalid JSON") from exc

        return await self._retrying(once)


def _mapped(exc: aiohttp.ClientError, url: str) -> Exception:
    """An aiohttp failure as Dynasor's error (see ``_errors``): a connection that could not be
    opened, was dropped or broke the body is worth a retry; silence past the read timeout is not."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ServerTimeoutError) and not isinstance(exc, aiohttp.ConnectionTimeoutError):
        return EngineTimeout(f"no data from {url} in time: {name}")
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        error = EngineUnavailable(f"{name} talking to {url}: {exc}")
        error.__cause__ = exc
        return Retryable(error)
    return EngineError(f"HTTP failure talking to {url}: {name}: {exc}")


_DRAIN_S = 1.0
"""How long the end of a finished stream's body is waited for (it keeps the connection reusable)."""


async def _finish_body(response: aiohttp.ClientResponse) -> None:
    """Read the rest of a body whose ``[DONE]`` has arrived: the connection goes back to the pool
    instead of being closed. A server that keeps the stream open after it loses the connection."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(_DRAIN_S):
            while await response.content.readany():
                pass
