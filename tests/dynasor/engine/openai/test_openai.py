"""Unit tests of the ``openai`` backend against a scripted loopback HTTP server (no engine needed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiohttp
import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from algorithms.protocol import GenerateRequest
from dynasor import ConfigError, EngineError, EngineTimeout, EngineUnavailable, StreamBroken
from dynasor.engine.base import EngineRequest
from dynasor.engine.openai import OpenAIBackend, RetryPolicy, SSEDecoder
from tests.dynasor.mock_http import Handler, eventually, serving

FAST_RETRY = RetryPolicy(attempts=4, base_delay_s=0.001, max_delay_s=0.002)


def sse(events: Iterable[Any]) -> bytes:
    """Server-sent events as an OpenAI server writes them, ``[DONE]`` last."""
    out = [f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events]  # as vLLM: raw UTF-8
    return ("".join(out) + "data: [DONE]\n\n").encode()


def completion_events(pieces: list[str], *, usage: dict[str, int] | None, finish: str = "length") -> list[Any]:
    events: list[Any] = [{"id": "cmpl-1", "choices": [{"index": 0, "text": p, "finish_reason": None}]} for p in pieces]
    events[-1]["choices"][0]["finish_reason"] = finish
    if usage is not None:
        events.append({"id": "cmpl-1", "choices": [], "usage": usage})
    return events


class ChunkedStream(httpx.AsyncByteStream):
    """A response body delivered in the given chunks; records whether the client closed it."""

    def __init__(self, chunks: list[bytes], delay: float = 0.0) -> None:
        self.chunks, self.delay, self.closed, self.sent = chunks, delay, False, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.sent += 1
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


@contextlib.asynccontextmanager
async def backend(handler: Handler, **kw: Any) -> AsyncIterator[OpenAIBackend]:
    """A backend talking to ``handler`` served over loopback HTTP."""
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("model", "m")
    async with serving(handler) as url, OpenAIBackend(f"{url}/v1", seed=0, **kw) as b:
        yield b


def req(prompt: Any = "2+2=", priority: int = 0, **kw: Any) -> EngineRequest:
    kw.setdefault("max_tokens", 16)
    return EngineRequest("r1", "q1", GenerateRequest(prompt, **kw), priority=priority)


# -- SSE parsing --------------------------------------------------------------------------

event_text = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20)


@given(st.lists(st.lists(event_text, min_size=1, max_size=3), max_size=6), st.randoms())
@example([["a", "", "b"]], random.Random(0))
@example([["x\u2028y\x85z"]], random.Random(0))
def test_sse_decoder_recovers_events(events: list[list[str]], rnd: random.Random) -> None:
    """Each event's data lines come back joined with newlines, whatever the line endings,
    comments, other fields and piece boundaries."""
    body = ""
    for data_lines in events:
        eol = rnd.choice(["\n", "\r\n", "\r"])
        if rnd.random() < 0.5:
            body += ": keep-alive" + eol
        if rnd.random() < 0.5:
            body += "event: message" + eol
        for d in data_lines:
            # Without the space after the colon the value is taken verbatim.
            body += (f"data:{d}" if rnd.random() < 0.5 and not d.startswith(" ") else f"data: {d}") + eol
        body += eol
    raw = body.encode()
    cuts = sorted(rnd.randrange(len(raw) + 1) for _ in range(rnd.randrange(8))) if raw else []
    decoder = SSEDecoder()
    got: list[bytes] = []
    for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        got += decoder.decode(raw[a:b])
    got += decoder.flush()
    assert [g.decode() for g in got] == ["\n".join(data) for data in events]


def test_sse_flush_returns_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: x\ndata: y") == []
    assert decoder.flush() == [b"x\ny"]
    assert decoder.flush() == []


@given(st.lists(st.text(max_size=8), min_size=1, max_size=8), st.data())
async def test_stream_split_anywhere_gives_same_text(pieces: list[str], data: st.DataObject) -> None:
    """Chunk boundaries of the HTTP body (even inside a UTF-8 character) change nothing."""
    body = sse(completion_events(pieces, usage={"prompt_tokens": 3, "completion_tokens": len(pieces)}))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=10)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    seen: list[str] = []

    async with backend(lambda r: httpx.Response(200, stream=ChunkedStream(chunks))) as b:
        c = await b.generate(req(on_text=seen.append))
    assert c.text == "".join(pieces)
    assert "".join(seen) == c.text
    assert all(seen)


# -- request bodies -----------------------------------------------------------------------


def test_completion_body() -> None:
    b = OpenAIBackend("http://engine/", model="m")
    path, body = b.build_body(req("hi", priority=3, logprobs=2, stop=("\n",), seed=7, extra={"top_k": 5}))
    assert path == "/v1/completions"
    assert body["prompt"] == "hi" and body["logprobs"] == 2 and body["stop"] == ["\n"]
    assert body["seed"] == 7 and body["top_k"] == 5 and body["priority"] == 3
    assert body["stream"] is True and body["stream_options"]["include_usage"] is True


def test_chat_body_continues_final_message() -> None:
    b = OpenAIBackend("http://engine", model="m")
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "partial"}]
    path, body = b.build_body(req(msgs, logprobs=1, continue_final_message=True))
    assert path == "/v1/chat/completions"
    assert body["messages"] == msgs
    assert body["logprobs"] is True and body["top_logprobs"] == 1
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    _, plain = b.build_body(req(msgs[:1]))
    assert "continue_final_message" not in plain and "logprobs" not in plain


def test_stream_interval_is_asked_only_when_set() -> None:
    assert "stream_interval" not in OpenAIBackend("http://e", model="m").build_body(req())[1]
    assert OpenAIBackend("http://e", model="m", stream_interval=16).build_body(req())[1]["stream_interval"] == 16
    with pytest.raises(ConfigError, match="stream_interval"):
        OpenAIBackend("http://e", model="m", stream_interval=0)


CONVENTIONS = {c: OpenAIBackend("http://e", model="m", priority=c) for c in ("lower-first", "higher-first", "none")}


@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_priority_conventions_preserve_order(p: int, q: int) -> None:
    """Whatever the convention, the engine runs first what vLLM's convention runs first."""
    lower, higher = CONVENTIONS["lower-first"], CONVENTIONS["higher-first"]
    lp, lq = lower.engine_priority(p), lower.engine_priority(q)
    hp, hq = higher.engine_priority(p), higher.engine_priority(q)
    assert lp is not None and lq is not None and hp is not None and hq is not None
    assert (lp < lq) == (p < q)
    assert (hp > hq) == (p < q)
    assert CONVENTIONS["none"].engine_priority(p) is None


def test_unknown_priority_convention() -> None:
    with pytest.raises(ConfigError, match="higher-first"):
        OpenAIBackend("http://e", priority="fifo")  # type: ignore[arg-type]


# -- responses ----------------------------------------------------------------------------


async def test_usage_comes_from_usage_block_not_chunk_count() -> None:
    body = sse(completion_events(["a", "bc"], usage={"prompt_tokens": 11, "completion_tokens": 5}))
    async with backend(lambda r: httpx.Response(200, content=body)) as b:
        c = await b.generate(req())
    assert (c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) == ("abc", 11, 5, "length")
    assert "usage_estimated" not in c.meta and c.logprobs is None


@pytest.mark.parametrize("end_after_done_s", [0.0, 0.05])
async def test_finished_streams_leave_their_connection_for_the_next_request(end_after_done_s: float) -> None:
    """A stream read to ``[DONE]`` is read to its end, even one whose end comes a moment later,
    so its connection goes back to the pool."""
    body = sse(completion_events(["a"], usage={"prompt_tokens": 1, "completion_tokens": 1}))
    peers: list[Any] = []

    def handler(r: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=ChunkedStream([body, b""], delay=end_after_done_s))

    async with serving(handler, peers) as url, OpenAIBackend(url, model="m") as b:
        for _ in range(5):
            assert (await b.generate(req())).text == "a"
    assert len(peers) == 5 and len(set(peers)) == 1


async def test_missing_usage_is_flagged() -> None:
    body = sse(completion_events(["a", "b"], usage=None, finish="stop"))
    async with backend(lambda r: httpx.Response(200, content=body)) as b:
        c = await b.generate(req())
    assert c.meta["usage_estimated"] is True and c.completion_tokens == 2 and c.finish_reason == "stop"


async def test_completion_logprobs_parsed() -> None:
    events = [
        {
            "choices": [
                {
                    "index": 0,
                    "text": " Paris",
                    "finish_reason": "stop",
                    "logprobs": {
                        "tokens": [" Paris"],
                        "token_logprobs": [-0.25],
                        "top_logprobs": [{" Paris": -0.25, " the": -2.5}],
                    },
                }
            ]
        },
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}},
    ]
    async with backend(lambda r: httpx.Response(200, content=sse(events))) as b:
        c = await b.generate(req(logprobs=2))
    assert c.logprobs is not None and len(c.logprobs) == 1
    assert c.logprobs[0].token == " Paris" and c.logprobs[0].logprob == -0.25
    assert c.logprobs[0].top == {" Paris": -0.25, " the": -2.5}


async def test_chat_stream_with_logprobs() -> None:
    def lp(tok: str, v: float) -> dict[str, Any]:
        return {"token": tok, "logprob": v, "top_logprobs": [{"token": tok, "logprob": v}]}

    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "5"}, "logprobs": {"content": [lp("5", -0.1)]}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": ""},
                    "logprobs": {"content": [lp("<end>", -0.2)]},
                    "finish_reason": "stop",
                }
            ]
        },
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}},
    ]
    seen: list[str] = []
    async with backend(lambda r: httpx.Response(200, content=sse(events))) as b:
        c = await b.generate(req([{"role": "user", "content": "2+3"}], logprobs=0, on_text=seen.append))
    assert c.text == "5" and seen == ["5"] and c.completion_tokens == 2
    assert c.logprobs is not None and [t.token for t in c.logprobs] == ["5", "<end>"]


async def test_error_event_in_stream() -> None:
    body = sse([{"error": {"message": "boom", "code": 500}}])
    async with backend(lambda r: httpx.Response(200, content=body)) as b:
        with pytest.raises(EngineError, match="boom"):
            await b.generate(req())


async def test_stream_without_finish_is_an_error() -> None:
    body = b'data: {"choices": [{"index": 0, "text": "a"}]}\n\n'
    async with backend(lambda r: httpx.Response(200, content=body)) as b:
        with pytest.raises(EngineError, match="finish reason"):
            await b.generate(req())


async def test_model_discovered_from_models_endpoint() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "tiny"}, {"id": "other"}]})
        assert json.loads(r.content)["model"] == "tiny"
        return httpx.Response(
            200, content=sse(completion_events(["x"], usage={"prompt_tokens": 1, "completion_tokens": 1}))
        )

    async with serving(handler) as url, OpenAIBackend(url) as b:
        assert await b.models() == ["tiny", "other"]
        assert (await b.generate(req())).text == "x"
        assert b.model == "tiny"


# -- retries and errors -------------------------------------------------------------------


class Flaky:
    """Fails the first ``failures`` calls in the given way, then streams a completion."""

    def __init__(self, failures: int, fail: Callable[[httpx.Request], httpx.Response]) -> None:
        self.failures, self.fail, self.calls = failures, fail, 0

    def __call__(self, r: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.failures:
            return self.fail(r)
        return httpx.Response(
            200, content=sse(completion_events(["ok"], usage={"prompt_tokens": 1, "completion_tokens": 1}))
        )


def refuse(r: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=r)


@pytest.mark.parametrize(
    "fail",
    [
        refuse,
        lambda r: httpx.Response(503, json={"error": {"message": "overloaded"}}),
        lambda r: httpx.Response(429, text="slow down"),
        lambda r: httpx.Response(500, text="oops"),
    ],
)
async def test_retried_before_first_token(fail: Callable[[httpx.Request], httpx.Response]) -> None:
    handler = Flaky(3, fail)
    async with backend(handler) as b:
        c = await b.generate(req())
    assert c.text == "ok" and handler.calls == 4 and c.meta["attempts"] == 4


async def test_retries_exhausted_maps_to_unavailable() -> None:
    handler = Flaky(10, refuse)
    async with backend(handler) as b:
        with pytest.raises(EngineUnavailable) as info:
            await b.generate(req())
    assert handler.calls == FAST_RETRY.attempts
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectionError)


async def test_5xx_after_retries_keeps_status() -> None:
    async with backend(Flaky(10, lambda r: httpx.Response(502, text="bad gateway"))) as b:
        with pytest.raises(EngineUnavailable) as info:
            await b.generate(req())
    assert info.value.status == 502


async def test_client_error_not_retried() -> None:
    handler = Flaky(10, lambda r: httpx.Response(400, json={"error": {"message": "max_tokens too large"}}))
    async with backend(handler) as b:
        with pytest.raises(EngineError, match="max_tokens too large") as info:
            await b.generate(req())
    assert handler.calls == 1 and info.value.status == 400
    assert not isinstance(info.value, EngineUnavailable)


async def test_failure_after_first_token_not_retried() -> None:
    calls = 0

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'data: {"choices": [{"index": 0, "text": "partial"}]}\n\n'
            raise httpx.ReadError("connection reset")

    def handler(r: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, stream=Broken())

    async with backend(handler) as b:
        with pytest.raises(StreamBroken, match="broke after 1 chunks") as info:
            await b.generate(req())
    assert calls == 1 and not isinstance(info.value, EngineUnavailable) and info.value.chunks == 1
    assert isinstance(info.value.__cause__, aiohttp.ClientError)


async def test_read_timeout_maps_to_engine_timeout() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("silence", request=r)

    async with backend(handler, read_timeout=0.2) as b:
        with pytest.raises(EngineTimeout):
            await b.generate(req())


async def test_retry_after_header_is_honoured() -> None:
    policy = RetryPolicy(attempts=2, base_delay_s=0.0, max_delay_s=10.0)
    assert policy.delay(0, random.Random(0), retry_after=3.0) == 3.0
    assert policy.delay(0, random.Random(0), retry_after=60.0) == 10.0


@given(st.integers(0, 30), st.floats(0, 1), st.randoms())
def test_backoff_bounds(retry: int, jitter: float, rnd: random.Random) -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=5.0, jitter=jitter)
    cap = min(5.0, 0.1 * 2**retry)
    d = policy.delay(retry, rnd)
    assert (1 - jitter) * cap - 1e-12 <= d <= cap + 1e-12


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2.0)


async def test_cancel_closes_the_stream() -> None:
    """Cancelling the caller closes the response: for vLLM that is the abort."""
    first = json.dumps({"choices": [{"index": 0, "text": "t"}]})
    stream = ChunkedStream([f"data: {first}\n\n".encode()] * 1000, delay=0.01)
    got_text = asyncio.Event()
    async with backend(lambda r: httpx.Response(200, stream=stream)) as b:
        task = asyncio.create_task(b.generate(req(on_text=lambda t: got_text.set())))
        await asyncio.wait_for(got_text.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(lambda: stream.closed)  # the server saw the connection close
    assert stream.sent < 1000


async def test_post_json_and_errors() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/classify":
            return httpx.Response(200, json={"data": [{"probs": [0.5, 0.5]}], "echo": json.loads(r.content)})
        return httpx.Response(404, json={"detail": "Not Found"})

    async with backend(handler) as b:
        out = await b.post_json("/classify", {"input": ["x"]})
        assert out["echo"] == {"input": ["x"]}
        with pytest.raises(EngineError) as info:
            await b.post_json("/nope", {})
    assert info.value.status == 404


async def test_capacity_is_what_was_configured() -> None:
    async with backend(refuse) as b:
        assert b.capacity() is None
    async with backend(refuse, max_seqs=64, max_kv_tokens=90_000) as b:
        cap = b.capacity()
        assert cap is not None and (cap.max_seqs, cap.max_kv_tokens) == (64, 90_000)


async def test_meter_tracks_tokens_of_a_cancelled_request() -> None:
    """Without continuous usage the meter counts chunks; a cancelled request keeps its count."""
    first = json.dumps({"choices": [{"index": 0, "text": "t"}]})
    stream = ChunkedStream([f"data: {first}\n\n".encode()] * 1000, delay=0.005)
    r = req(on_text=lambda t: None)
    async with backend(lambda _: httpx.Response(200, stream=stream), continuous_usage=False) as b:
        assert "continuous_usage_stats" not in b.build_body(r)[1]["stream_options"]
        task = asyncio.create_task(b.generate(r))
        while r.meter.completion_tokens < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Chunks already on the wire when the request was cancelled were sent, not counted.
    assert 5 <= r.meter.completion_tokens <= stream.sent < 1000


async def test_meter_follows_continuous_usage() -> None:
    events = [
        {"choices": [{"index": 0, "text": "ab"}], "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
        {
            "choices": [{"index": 0, "text": "c", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 3},
        },
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}},
    ]
    r = req()
    async with backend(lambda _: httpx.Response(200, content=sse(events))) as b:
        assert b.build_body(r)[1]["stream_options"]["continuous_usage_stats"] is True
        c = await b.generate(r)
    assert (r.meter.prompt_tokens, r.meter.completion_tokens) == (4, 3) == (c.prompt_tokens, c.completion_tokens)


# -- malformed upstream answers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"data: [1, 2]\n\n", "a JSON list, not an object"),
        (b"data: {not json\n\n", "not JSON"),
        (b'data: "text"\n\n', "a JSON str"),
        (b'data: {"choices": {"0": 1}}\n\n', "choices is not a list"),
        (b'data: {"choices": [7]}\n\n', "a choice is not an object"),
        (b'data: {"choices": [{"index": 0, "delta": "x"}]}\n\n', "delta is not an object"),
        (b'data: {"choices": [{"index": 0, "text": 5}]}\n\n', "the text is not a string"),
        (b'data: {"choices": [], "usage": {"completion_tokens": "many"}}\n\n', "usage.completion_tokens"),
        (
            b'data: {"choices":[{"index":0,"text":"a","logprobs":{"tokens":["a"],"token_logprobs":["x"]}}]}\n\n',
            "malformed",
        ),
        (b'{"id": "cmpl-1", "choices": [{"text": "not streamed"}]}', "answered no completion events"),
        (b"<html>gateway</html>", "answered no completion events"),
    ],
)
async def test_malformed_stream_is_an_engine_error_naming_what_arrived(body: bytes, match: str) -> None:
    async with backend(lambda r: httpx.Response(200, content=body)) as b:
        with pytest.raises(EngineError, match=match) as info:
            await b.generate(req())
    assert not isinstance(info.value, EngineUnavailable)  # an upstream fault, not worth a retry


@pytest.mark.parametrize("answer", [[1, 2], {"data": "none"}, {"data": [{"name": "x"}]}, "models"])
async def test_models_of_another_shape_are_an_engine_error(answer: Any) -> None:
    async with serving(lambda r: httpx.Response(200, json=answer)) as url, OpenAIBackend(url) as b:
        with pytest.raises(EngineError, match="unexpected shape"):
            await b.models()


async def test_health_check_asks_health_then_models() -> None:
    seen: list[str] = []

    def handler(r: httpx.Request) -> httpx.Response:
        seen.append(r.url.path)
        if r.url.path == "/health":
            return httpx.Response(404)
        return httpx.Response(200, json={"data": []})

    async with backend(handler) as b:
        await b.check_health()
    assert seen == ["/health", "/v1/models"]

    async with backend(lambda r: httpx.Response(503)) as b:
        with pytest.raises(EngineUnavailable, match="503"):
            await b.check_health()
    async with OpenAIBackend("http://127.0.0.1:9") as b:  # discard port: nothing listens
        with pytest.raises(EngineUnavailable, match="ClientConnectorError"):
            await b.check_health()
    async with backend(refuse) as b:
        with pytest.raises(EngineUnavailable, match="ServerDisconnectedError"):
            await b.check_health()
