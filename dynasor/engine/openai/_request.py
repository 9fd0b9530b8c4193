"""Request shaping: a program's :class:`GenerateRequest` as an OpenAI-compatible request body.

A text prompt goes to ``/v1/completions``, a list of chat messages to ``/v1/chat/completions``.
Every request streams with ``stream_options.include_usage``, so token counts come from the
engine's own usage block (and, with ``continuous_usage_stats``, a vLLM extension, from every
chunk).
"""

from __future__ import annotations

from typing import Any, Literal

from dynasor.engine.base import EngineRequest

__all__ = ["PriorityConvention", "build_body", "engine_priority"]

PriorityConvention = Literal["lower-first", "higher-first", "none"]
"""How the engine reads ``priority``: vLLM runs lower values first; SGLang, unless configured
otherwise, higher first; ``none`` sends no priority field (servers that reject it)."""


def engine_priority(convention: PriorityConvention, priority: int) -> int | None:
    """The ``priority`` value to send for a vLLM-convention priority (None: send none).

    >>> engine_priority("higher-first", 3), engine_priority("none", 3)
    (-3, None)
    """
    if convention == "none":
        return None
    return -priority if convention == "higher-first" else priority


def build_body(
    request: EngineRequest,
    *,
    model: str,
    priority: int | None,
    usage: bool = True,
    stream_interval: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """The endpoint path and JSON body for ``request``.

    ``priority`` is the value to send (None: none); ``usage`` asks for usage in every chunk;
    ``stream_interval`` asks for that many tokens per chunk (None: none asked).
    """
    req = request.request
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if usage:
        body["stream_options"]["continuous_usage_stats"] = True
    if stream_interval is not None:
        body["stream_interval"] = stream_interval
    if req.stop:
        body["stop"] = list(req.stop)
    if req.seed is not None:
        body["seed"] = req.seed
    if priority is not None:
        body["priority"] = priority
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
