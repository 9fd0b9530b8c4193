"""OpenAI response and stream-chunk shapes, one builder per endpoint.

``/v1/chat/completions`` answers with ``chat.completion`` objects and streams
``chat.completion.chunk`` objects whose choices carry a ``delta``; ``/v1/completions``
answers with ``text_completion`` objects and streams more ``text_completion`` objects whose
choices carry ``text``. Mixing the two is what breaks standard clients.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DONE", "PATHS", "Endpoint", "Shaper", "sse"]

Endpoint = Literal["chat", "completions"]
PATHS: dict[Endpoint, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
"""Each endpoint's path, on the proxy and upstream alike."""

DONE = b"data: [DONE]\n\n"


def sse(data: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


@dataclass(slots=True)
class Shaper:
    """Builds the responses and chunks of one answer on one endpoint."""

    endpoint: Endpoint
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            prefix = "chatcmpl" if self.endpoint == "chat" else "cmpl"
            self.id = f"{prefix}-{uuid.uuid4().hex}"

    def _choice(self, index: int, text: str | None, finish: str | None, *, first: bool = False) -> dict[str, Any]:
        if self.endpoint == "chat":
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}

    def _head(self, chunk: bool) -> dict[str, Any]:
        if self.endpoint == "chat":
            obj = "chat.completion.chunk" if chunk else "chat.completion"
        else:
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def response(
        self, texts: list[tuple[str, str]], usage: Mapping[str, Any], extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A whole (non-streamed) answer; ``texts`` holds ``(text, finish_reason)`` per choice."""
        choices: list[dict[str, Any]] = []
        for index, (text, finish) in enumerate(texts):
            if self.endpoint == "chat":
                message = {"role": "assistant", "content": text}
                choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
            else:
                choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": finish})
        body = {**self._head(chunk=False), "choices": choices, "usage": dict(usage)}
        if extra:
            body.update(extra)
        return body

    def chunk(
        self,
        text: str | None,
        finish: str | None = None,
        *,
        index: int = 0,
        first: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> bytes:
        """A content chunk (``first``: the chat chunk that opens with the assistant role)."""
        data = {**self._head(chunk=True), "choices": [self._choice(index, text, finish, first=first)]}
        if extra:
            data.update(extra)
        return sse(data)

    def side_chunk(self, extra: Mapping[str, Any] | None = None, usage: Mapping[str, Any] | None = None) -> bytes:
        """A chunk with no choices: carries usage, or a progress extension clients ignore."""
        data: dict[str, Any] = {**self._head(chunk=True), "choices": []}
        if usage is not None:
            data["usage"] = dict(usage)
        if extra:
            data.update(extra)
        return sse(data)
