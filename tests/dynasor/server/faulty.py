"""A fake OpenAI upstream whose behaviour a test switches: answers, fails, hangs, breaks, talks nonsense.

``FaultyUpstream.mode`` says what the next requests get:

``ok``          a normal answer (streamed when asked): ``max_tokens`` pieces of `` 42`` then ``\\boxed{42}``
``500``         HTTP 500 with an OpenAI error body
``hang``        nothing, ever (until the client goes away)
``hang-stream`` the status and two chunks, then nothing
``cut``         the status and two chunks, then the connection drops
``list``        a stream whose event is the JSON ``[1, 2]``
``garbage``     a stream whose event is not JSON
``json``        a JSON body although a stream was asked for

It counts what it saw: requests, streams opened, closed early by the client (aborts) and
completed; ``/health`` answers 200 unless ``healthy`` is False.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class FaultyUpstream:
    def __init__(self, mode: str = "ok", *, token_delay: float = 0.0) -> None:
        self.mode = mode
        self.token_delay = token_delay
        self.healthy = True
        self.requests = 0
        self.opened = 0
        self.closed_early = 0
        self.completed = 0
        self.bodies: list[dict[str, Any]] = []

    @property
    def open(self) -> int:
        return self.opened - self.closed_early - self.completed

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._answer, methods=["POST"]),
                Route("/v1/completions", self._answer, methods=["POST"]),
                Route("/v1/models", self._models),
                Route("/health", self._health),
            ]
        )

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200 if self.healthy else 503)

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _answer(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests += 1
        self.bodies.append(body)
        mode = self.mode
        chat = request.url.path.endswith("chat/completions")
        n = int(body.get("max_tokens") or 8)
        if mode == "500":
            return JSONResponse({"error": {"message": "engine exploded", "type": "server_error", "code": 500}}, 500)
        if mode == "hang":
            await asyncio.Event().wait()
        if mode == "json" or not body.get("stream"):
            text = " 42" * (n - 1) + " \\boxed{42}"
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
            return JSONResponse(
                {"id": "x", "object": "completion", "model": "fake", "choices": [choice], "usage": usage}
            )
        return StreamingResponse(self._chunks(mode, chat, n, body), media_type="text/event-stream")

    async def _chunks(self, mode: str, chat: bool, n: int, body: dict[str, Any]) -> Any:
        self.opened += 1
        finished = False
        try:
            if mode == "list":
                yield b"data: [1, 2]\n\n"
                finished = True
                return
            if mode == "garbage":
                yield b"data: {this is not json\n\n"
                finished = True
                return
            for i in range(n):
                piece = " 42" if i < n - 1 else " \\boxed{42}"
                choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if i == n - 1 else None}
                choice.update({"delta": {"content": piece}} if chat else {"text": piece})
                data = {"id": "x", "object": "chunk", "created": 0, "model": "fake", "choices": [choice]}
                yield f"data: {json.dumps(data)}\n\n".encode()
                if i == 1 and mode == "cut":
                    raise ConnectionResetError("the upstream died mid-stream")
                if i == 1 and mode == "hang-stream":
                    await asyncio.Event().wait()
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
            usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
            yield f"data: {json.dumps({'id': 'x', 'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"
            finished = True
        finally:
            if finished:
                self.completed += 1
            else:
                self.closed_early += 1
