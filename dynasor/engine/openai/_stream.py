"""Reading a streamed answer: server-sent events, then chunks folded into a :class:`Completion`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from algorithms.protocol import Completion, TokenLogprob
from dynasor._exceptions import EngineError
from dynasor.engine.base import EngineRequest

__all__ = ["Accumulator", "SSEDecoder"]

_FINISH = {"stop": "stop", "length": "length", "abort": "abort", "tool_calls": "stop", "eos": "stop"}


class SSEDecoder:
    """Incremental server-sent-events parser: feed the body's bytes as they arrive, get each
    event's ``data``.

    Follows the WHATWG rules that matter here: lines end at ``\\r\\n``, ``\\n`` or ``\\r``
    (and nowhere else: generated text may hold U+2028 or NEL, which ``str.splitlines`` would
    break on); ``data:`` lines of one event are joined with newlines; a blank line ends the
    event; lines starting with ``:`` are comments; other fields are ignored. It works on bytes
    (no line break byte occurs inside a UTF-8 character), so the body is never decoded to text
    here: ``json.loads`` takes the data as it is.

    >>> d = SSEDecoder()
    >>> d.decode(b"data: {}\\n: ping\\nda")
    []
    >>> d.decode(b"ta: 1\\r\\n\\r\\ndata: 2")
    [b'{}\\n1']
    >>> d.flush()
    [b'2']
    """

    def __init__(self) -> None:
        self._data: list[bytes] = []
        self._buf = b""

    def decode(self, chunk: bytes) -> list[bytes]:
        """Take the next piece of the body; return the data of every event it completes."""
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # Rare (vLLM ends lines with \n): a \r at the very end may be half of \r\n.
            held = b"\r" if buf.endswith(b"\r") else b""
            buf = buf[: len(buf) - len(held)].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        end = buf.rfind(b"\n")
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 1 :]
        events: list[bytes] = []
        data = self._data
        for line in buf[:end].split(b"\n"):
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = self._data = []
            elif line.startswith(b"data"):
                value = line[4:]
                if not value:
                    data.append(b"")
                elif value[0] == 0x3A:  # "data:" (a field named e.g. "database" is another field)
                    data.append(value[2:] if value[1:2] == b" " else value[1:])
        return events

    def flush(self) -> list[bytes]:
        """Events still pending at the end of the body (a server may omit the final blank line)."""
        rest, self._buf = self._buf.rstrip(b"\r"), b""
        return self.decode(rest + b"\n\n") if rest or self._data else []


class Accumulator:
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

    def event(self, data: bytes, elapsed: float) -> bool:
        """Take one event's data; True when the stream is over (``[DONE]``).

        An event that is not JSON, or JSON of another shape than a completion chunk, raises
        :class:`EngineError` naming what arrived: the upstream is misbehaving, not the client.
        """
        if data.strip() == b"[DONE]":
            return True
        chunk = _parse(data)
        if not isinstance(chunk, dict):
            kind = type(chunk).__name__
            raise EngineError(f"malformed stream event from the upstream: a JSON {kind}, not an object: {_shown(data)}")
        if "error" in chunk and "choices" not in chunk:
            err = chunk["error"]
            message = err.get("message", err) if isinstance(err, Mapping) else err
            status = err.get("code") if isinstance(err, Mapping) else None
            raise EngineError(
                f"engine error in stream: {message}", status=status if isinstance(status, int) else None, body=chunk
            )
        try:
            usage, choice = _read_chunk(chunk)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise EngineError(f"malformed stream event from the upstream ({exc}): {_shown(data)}") from exc
        self.chunks += 1
        self.id = self.id or chunk.get("id")
        if usage is not None:
            self.usage = usage
            self.meter.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.meter.completion_tokens = int(usage.get("completion_tokens") or 0)
        if choice is None:
            return False
        text, parsed, finish, stop_reason = choice
        if text or parsed:
            self.started = True
            if self.first_token_s is None:
                self.first_token_s = elapsed
        if text:
            self.parts.append(text)
            if self.req.on_text is not None:
                self.req.on_text(text)
        self.logprobs.extend(parsed)
        if self.usage is None and (text or parsed):
            self.meter.completion_tokens += max(len(parsed), 1)
        if finish:
            self.finish = finish
            self.stop_reason = stop_reason
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


_Choice = tuple[str, list[TokenLogprob], str | None, Any]


def _parse(data: bytes) -> Any:
    """One event's JSON. orjson first (an event per token makes this the stream's hottest step);
    what it refuses, such as ``NaN`` or ``-Infinity`` in logprobs, Python's parser may still take."""
    import orjson  # here: vLLM's own venv imports this package (in-process backend) without it

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except ValueError as exc:
        raise EngineError(f"malformed stream event from the upstream (not JSON): {_shown(data)}") from exc


def _shown(data: bytes) -> str:
    """The start of an event, as text, for an error message."""
    return repr(data[:200].decode("utf-8", errors="replace"))


def _read_chunk(chunk: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, _Choice | None]:
    """The usage block and choice 0 of a chunk, checked: ``(text, logprobs, finish, stop_reason)``.

    Raises TypeError/ValueError/KeyError for a chunk of another shape (the caller names it).
    """
    usage = chunk.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            raise TypeError("usage is not an object")
        for key in ("prompt_tokens", "completion_tokens"):
            if not isinstance(usage.get(key) or 0, int):
                raise TypeError(f"usage.{key} is not an integer")
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise TypeError("choices is not a list")
    for choice in choices:
        if not isinstance(choice, dict):
            raise TypeError("a choice is not an object")
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta")
        if delta is not None and not isinstance(delta, dict):
            raise TypeError("delta is not an object")
        text = (delta.get("content") or "") if delta is not None else (choice.get("text") or "")
        if not isinstance(text, str):
            raise TypeError("the text is not a string")
        block = choice.get("logprobs")
        parsed = _parse_logprobs(block) if block else []
        finish = choice.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            raise TypeError("finish_reason is not a string")
        return usage, (text, parsed, finish, choice.get("stop_reason"))
    return usage, None


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
