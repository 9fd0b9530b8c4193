"""The ``openai`` backend: any OpenAI-compatible server over HTTP, vLLM first.

Every request streams (server-sent events) with ``stream_options.include_usage``, for two
reasons: cancelling the awaiting task closes the stream, which is how vLLM learns to abort
the sequence and free its KV cache; and token counts come from the engine's own usage
block rather than from counting chunks. A text prompt goes to ``/v1/completions``, a list of
chat messages to ``/v1/chat/completions``.

Failures before the first token (connection refused or reset, HTTP 429, HTTP 5xx) are
retried with exponential backoff and jitter; once a token has streamed a failure is final,
since a retry would silently generate a different continuation.

Example
-------
>>> async def main() -> None:  # doctest: +SKIP
...     async with OpenAIBackend("http://127.0.0.1:8000", model="smollm2") as backend:
...         req = EngineRequest("r1", "q1", GenerateRequest("2+2=", max_tokens=8))
...         print((await backend.generate(req)).text)
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx

from algorithms.protocol import Completion, GenerateRequest, TokenLogprob  # noqa: F401  (doctest)
from dynasor._exceptions import ConfigError, EngineError, EngineTimeout, EngineUnavailable
from dynasor.engine.base import Backend, Capacity, EngineRequest

__all__ = ["OpenAIBackend", "PriorityConvention", "RetryPolicy", "SSEDecoder"]

T = TypeVar("T")

PriorityConvention = Literal["lower-first", "higher-first", "none"]
"""How the engine reads ``priority``: vLLM runs lower values first; SGLang, unless configured
otherwise, higher first; ``none`` sends no priority field (servers that reject it)."""

_EOL = re.compile(r"\r\n|\r|\n")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_FINISH = {"stop": "stop", "length": "length", "abort": "abort", "tool_calls": "stop", "eos": "stop"}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for failures before the first token.

    The delay before retry ``k`` (``k = 0, 1, ...``) is drawn uniformly from
    ``[(1 - jitter) d_k, d_k]`` with ``d_k = min(max_delay_s, base_delay_s * 2**k)``; a
    ``Retry-After`` header, when the server sends one, raises it (still capped).
    """

    attempts: int = 5
    """Total tries, the first included (1: never retry)."""
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must lie in [0, 1], got {self.jitter}")

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2.0**retry)
        d = cap * (1.0 - self.jitter * rng.random())
        if retry_after is not None:
            d = max(d, min(retry_after, self.max_delay_s))
        return d


class SSEDecoder:
    """Incremental server-sent-events parser: feed text as it arrives, get each event's ``data``.

    Follows the WHATWG rules that matter here: lines end at ``\\r\\n``, ``\\n`` or ``\\r``
    (and nowhere else: generated text may hold U+2028 or NEL, which ``str.splitlines`` would
    break on); ``data:`` lines of one event are joined with newlines; a blank line ends the
    event; lines starting with ``:`` are comments; other fields are ignored.

    >>> d = SSEDecoder()
    >>> d.decode("data: {}\\n: ping\\nda")
    []
    >>> d.decode("ta: 1\\r\\n\\r\\ndata: 2")
    ['{}\\n1']
    >>> d.flush()
    ['2']
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self._buf = ""

    def decode(self, text: str) -> list[str]:
        """Take the next piece of the body; return the data of every event it completes."""
        self._buf += text
        events: list[str] = []
        start = 0
        while (m := _EOL.search(self._buf, start)) is not None:
            if m.group() == "\r" and m.end() == len(self._buf):
                break  # maybe the first half of \r\n: wait for the next piece
            event = self.feed(self._buf[start : m.start()])
            if event is not None:
                events.append(event)
            start = m.end()
        self._buf = self._buf[start:]
        return events

    def feed(self, line: str) -> str | None:
        """Take one line (without its terminator); return the event's data when it ends."""
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> list[str]:
        """Events still pending at the end of the body (a server may omit the final blank line)."""
        rest, self._buf = self._buf.rstrip("\r"), ""
        events = [e for e in (self.feed(rest) if rest else None, self.feed("")) if e is not None]
        return events


class _Retryable(Exception):
    def __init__(self, error: EngineError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


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
    transport
        An httpx transport to use instead of the network (tests pass ``httpx.MockTransport``).
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
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._capacity = Capacity(max_seqs, max_kv_tokens) if max_seqs is not None else None
        self._rng = random.Random(seed)
        all_headers = dict(headers or {})
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=all_headers,
            # pool=None: when every connection is busy a request waits its turn; the scheduler,
            # not a pool timeout, bounds how much is in flight.
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=None),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )
        self._model_lock = asyncio.Lock()

    # -- public API -------------------------------------------------------------------

    def capacity(self) -> Capacity | None:
        return self._capacity

    async def aclose(self) -> None:
        await self._client.aclose()

    async def models(self) -> list[str]:
        """Model ids the upstream serves (``GET /v1/models``)."""
        body = await self._request_json("GET", "/v1/models", None)
        return [m["id"] for m in body.get("data", [])]

    async def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST ``body`` to ``path`` on the upstream (e.g. ``/classify``) and return its JSON.

        Shares the connection pool, timeouts, retry policy and error mapping of generation,
        so reward-model scorers and other extensions can build on it.
        """
        return await self._request_json("POST", path, body)

    def engine_priority(self, priority: int) -> int | None:
        """The ``priority`` value to send for a vLLM-convention priority (None: send none)."""
        if self.priority_convention == "none":
            return None
        return -priority if self.priority_convention == "higher-first" else priority

    def build_body(self, request: EngineRequest) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body for ``request`` (public for inspection and tests)."""
        req = request.request
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.continuous_usage:
            body["stream_options"]["continuous_usage_stats"] = True
        if req.stop:
            body["stop"] = list(req.stop)
        if req.seed is not None:
            body["seed"] = req.seed
        prio = self.engine_priority(request.priority)
        if prio is not None:
            body["priority"] = prio
        if isinstance(req.prompt, str):
            path = "/v1/completions"
            body["prompt"] = req.prompt
            if req.logprobs is not None:
                body["logprobs"] = req.logprobs
        else:
            path = "/v1/chat/completions"
            body["messages"] = [dict(m) for m in req.prompt]
            if req.logprobs is not None:
                body["logprobs"] = True
                body["top_logprobs"] = req.logprobs
            if req.continue_final_message:
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
        body.update(req.extra)
        return path, body

    async def generate(self, request: EngineRequest) -> Completion:
        """Stream ``request`` from the server; see :meth:`Backend.generate`.

        Raises
        ------
        EngineUnavailable
            The server could not be reached, or kept answering 429/5xx, through all retries.
        EngineTimeout
            No bytes arrived within ``read_timeout``.
        EngineError
            Any other failure: a 4xx answer (``status`` and ``body`` carry the server's),
            an error event in the stream, or a stream broken after tokens arrived.
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
        acc = _Accumulator(request)
        t0 = time.monotonic()
        try:
            async with self._client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _status_error(response)
                decoder = SSEDecoder()
                done = False
                async for text in response.aiter_text():
                    for data in decoder.decode(text):
                        done = done or acc.event(data, time.monotonic() - t0)
                    if done:
                        break
                else:
                    for data in decoder.flush():
                        acc.event(data, time.monotonic() - t0)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            error = EngineUnavailable(f"{type(exc).__name__} talking to {self.base_url}{path}: {exc}")
            if acc.started:
                raise EngineError(f"stream from {self.base_url}{path} broke after {acc.chunks} chunks: {exc}") from exc
            error.__cause__ = exc
            raise _Retryable(error) from exc
        except httpx.TimeoutException as exc:
            raise EngineTimeout(f"no data from {self.base_url}{path} in time: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"HTTP failure talking to {self.base_url}{path}: {exc}") from exc
        return acc.completion(attempts=attempts, latency_s=time.monotonic() - t0)

    async def _retrying(self, once: Callable[[int], Awaitable[T]]) -> T:
        """Call ``once(attempt)`` (1-based) until it stops raising ``_Retryable``, with backoff."""
        last: _Retryable | None = None
        for attempt in range(self.retry.attempts):
            if last is not None:
                await asyncio.sleep(self.retry.delay(attempt - 1, self._rng, last.retry_after))
            try:
                return await once(attempt + 1)
            except _Retryable as exc:
                last = exc
        assert last is not None
        raise last.error from last.error.__cause__

    async def _request_json(self, method: str, path: str, body: Mapping[str, Any] | None) -> Any:
        async def once(_: int) -> Any:
            try:
                response = await self._client.request(method, path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                error = EngineUnavailable(f"{type(exc).__name__} talking to {self.base_url}{path}: {exc}")
                error.__cause__ = exc
                raise _Retryable(error) from exc
            except httpx.TimeoutException as exc:
                raise EngineTimeout(f"no answer from {self.base_url}{path} in time") from exc
            except httpx.HTTPError as exc:
                raise EngineError(f"HTTP failure talking to {self.base_url}{path}: {exc}") from exc
            if response.status_code >= 400:
                raise _status_error(response)
            try:
                return response.json()
            except ValueError as exc:
                raise EngineError(f"{self.base_url}{path} answered with invalid JSON") from exc

        return await self._retrying(once)


def _status_error(response: httpx.Response) -> Exception:
    """An HTTP error answer as a Dynasor error (wrapped in ``_Retryable`` when worth a retry)."""
    try:
        payload: Any = response.json()
    except ValueError:
        payload = response.text
    detail = payload
    if isinstance(payload, Mapping):
        err = payload.get("error", payload)
        detail = err.get("message", err) if isinstance(err, Mapping) else err
    status = response.status_code
    message = f"{response.request.url.path} answered HTTP {status}: {detail}"
    if status in _RETRY_STATUS:
        retry_after: float | None = None
        try:
            retry_after = float(response.headers.get("retry-after", ""))
        except ValueError:
            retry_after = None
        return _Retryable(EngineUnavailable(message, status=status, body=payload), retry_after)
    return EngineError(message, status=status, body=payload)


class _Accumulator:
    """Folds the stream's chunks into a :class:`Completion` (choice 0; we never ask for n > 1)."""

    def __init__(self, request: EngineRequest) -> None:
        self.req = request.request
        self.meter = request.meter
        self.parts: list[str] = []
        self.logprobs: list[TokenLogprob] = []
        self.finish: str | None = None
        self.usage: Mapping[str, Any] | None = None
        self.id: str | None = None
        self.chunks = 0
        self.started = False
        self.first_token_s: float | None = None
        self.stop_reason: Any = None

    def event(self, data: str, elapsed: float) -> bool:
        """Take one event's data; True when the stream is over (``[DONE]``)."""
        if data.strip() == "[DONE]":
            return True
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise EngineError(f"malformed stream event: {data[:200]!r}") from exc
        if "error" in chunk and "choices" not in chunk:
            err = chunk["error"]
            message = err.get("message", err) if isinstance(err, Mapping) else err
            status = err.get("code") if isinstance(err, Mapping) else None
            raise EngineError(
                f"engine error in stream: {message}", status=status if isinstance(status, int) else None, body=chunk
            )
        self.chunks += 1
        self.id = self.id or chunk.get("id")
        if usage := chunk.get("usage"):
            self.usage = usage
            self.meter.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.meter.completion_tokens = int(usage.get("completion_tokens") or 0)
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            text = (delta.get("content") or "") if isinstance(delta, Mapping) else (choice.get("text") or "")
            if text or choice.get("logprobs"):
                self.started = True
                if self.first_token_s is None:
                    self.first_token_s = elapsed
            if text:
                self.parts.append(text)
                if self.req.on_text is not None:
                    self.req.on_text(text)
            if choice.get("logprobs"):
                parsed = _parse_logprobs(choice["logprobs"])
                self.logprobs.extend(parsed)
            else:
                parsed = []
            if self.usage is None and (text or parsed):
                self.meter.completion_tokens += max(len(parsed), 1)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
                self.stop_reason = choice.get("stop_reason")
        return False

    def completion(self, *, attempts: int, latency_s: float) -> Completion:
        if self.finish is None:
            raise EngineError(f"stream ended without a finish reason after {self.chunks} chunks")
        meta: dict[str, Any] = {"id": self.id, "attempts": attempts, "latency_s": latency_s}
        if self.first_token_s is not None:
            meta["first_token_s"] = self.first_token_s
        if self.stop_reason is not None:
            meta["stop_reason"] = self.stop_reason
        if self.usage is None:
            # Servers without stream_options support: the token count is a lower bound.
            meta["usage_estimated"] = True
            prompt_tokens, completion_tokens = 0, len(self.logprobs) or len(self.parts)
        else:
            prompt_tokens = int(self.usage.get("prompt_tokens") or 0)
            completion_tokens = int(self.usage.get("completion_tokens") or 0)
            details = self.usage.get("prompt_tokens_details") or {}
            if details.get("cached_tokens") is not None:
                meta["cached_prompt_tokens"] = details["cached_tokens"]
        return Completion(
            text="".join(self.parts),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=_FINISH.get(self.finish, "stop"),  # type: ignore[arg-type]
            logprobs=tuple(self.logprobs) if self.req.logprobs is not None else None,
            meta=meta,
        )


def _parse_logprobs(block: Mapping[str, Any]) -> list[TokenLogprob]:
    """Logprobs of one chunk, in either endpoint's format."""
    if "content" in block:  # chat: [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]
        return [
            TokenLogprob(
                token=item["token"],
                logprob=float(item["logprob"]),
                top={t["token"]: float(t["logprob"]) for t in item.get("top_logprobs") or ()},
            )
            for item in block.get("content") or ()
        ]
    tokens = block.get("tokens") or []
    values = block.get("token_logprobs") or []
    tops = block.get("top_logprobs") or [None] * len(tokens)
    return [
        TokenLogprob(
            token=tok,
            logprob=float("-inf") if lp is None else float(lp),
            top={k: float(v) for k, v in (top or {}).items()},
        )
        for tok, lp, top in zip(tokens, values, tops, strict=False)
    ]
