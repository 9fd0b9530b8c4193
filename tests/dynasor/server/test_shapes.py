"""Each endpoint's response and chunk shapes, checked against the OpenAI SDK's own types."""

from __future__ import annotations

import json

import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from dynasor.server._shapes import DONE, Shaper, sse


def events(raw: bytes) -> list[dict]:
    assert raw.endswith(b"\n\n") and raw.startswith(b"data: ")
    return [json.loads(part.removeprefix(b"data: ")) for part in raw.strip().split(b"\n\n") if part != DONE.strip()]


def test_chat_response_and_chunks_validate_as_chat_types():
    s = Shaper("chat", "m")
    body = s.response(
        [("hi", "stop"), ("yo", "length")], {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    )
    parsed = ChatCompletion.model_validate(body)
    assert [c.message.content for c in parsed.choices] == ["hi", "yo"]
    assert [c.finish_reason for c in parsed.choices] == ["stop", "length"]
    first, text, last = (events(s.chunk("", first=True))[0], events(s.chunk("ab"))[0], events(s.chunk(None, "stop"))[0])
    for data in (first, text, last):
        assert ChatCompletionChunk.model_validate(data).object == "chat.completion.chunk"
        assert data["id"] == s.id and data["id"].startswith("chatcmpl-")
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text["choices"][0]["delta"] == {"content": "ab"}
    assert last["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


def test_completion_response_and_chunks_validate_as_text_completion():
    s = Shaper("completions", "m")
    body = s.response([("hi", "stop")], {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
    assert Completion.model_validate(body).choices[0].text == "hi"
    middle, last = events(s.chunk("ab"))[0], events(s.chunk("", "stop"))[0]
    # The SDK's type insists on a finish reason; mid-stream chunks carry null, as OpenAI's do.
    assert Completion.model_validate(last).choices[0].finish_reason == "stop"
    assert middle["object"] == "text_completion" and middle["choices"][0]["finish_reason"] is None
    assert middle["choices"][0]["text"] == "ab" and "delta" not in middle["choices"][0]
    assert s.id.startswith("cmpl-")


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_side_chunks_have_no_choices(endpoint):
    s = Shaper(endpoint, "m")
    progress = events(s.side_chunk(extra={"dynasor": {"type": "report", "step": 1}}))[0]
    usage = events(s.side_chunk(usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))[0]
    assert progress["choices"] == [] and progress["dynasor"]["step"] == 1
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 2
    if endpoint == "chat":
        assert ChatCompletionChunk.model_validate(progress).model_extra["dynasor"]["type"] == "report"


def test_sse_is_one_compact_event():
    assert sse({"a": [1, "x"]}) == b'data: {"a":[1,"x"]}\n\n'
