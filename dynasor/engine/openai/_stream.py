"""Reading a streamed answer: server-sent events, then chunks folded into a :class:`Completion`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from algorithms.protocol import Completion, TokenLogprob
from dynasor._exceptions import EngineError
from dynasor.engine.base import EngineRequest

__all__ = ["Accumulator", "SSEDecoder"]

_EOL = re.compile(r"\r\n|\r|\n")
_FINISH = {"stop": "stop", "length": "length", "abort": "abort", "tool_calls": "stop", "eos": "stop"}


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

    def event(self, data: str, elapsed: float) -> bool:
        """Take one event's data; True when the stream is over (``[DONE]``).

        An event that is not JSON, or JSON of another shape than a completion chunk, raises
        :class:`EngineError` naming what arrived: the upstream is misbehaving, not the client.
        """
        if data.strip() == "[DONE]":
            return True
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise EngineError(f"malformed stream event from the upstream (not JSON): {data[:200]!r}") from exc
        if not isinstance(chunk, Mapping):
            kind = type(chunk).__name__
            raise EngineError(f"malformed stream event from the upstream: a JSON {kind}, not an object: {data[:200]!r}")
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
            raise EngineError(f"malformed stream event from the upstream ({exc}): {data[:200]!r}") from exc
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


def _read_chunk(chunk: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, _Choice | None]:
    """The usage block and choice 0 of a chunk, checked: ``(text, logprobs, finish, stop_reason)``.

    Raises TypeError/ValueError/KeyError for a chunk of another shape (the caller names it).
    """
    usage = chunk.get("usage")
    if usage is not None:
        if not isinstance(usage, Mapping):
            raise TypeError("usage is not an object")
        for key in ("prompt_tokens", "completion_tokens"):
            if not isinstance(usage.get(key) or 0, int):
                raise TypeError(f"usage.{key} is not an integer")
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise TypeError("choices is not a list")
    for choice in choices:
        if not isinstance(choice, Mapping):
            raise TypeError("a choice is not an object")
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta")
        if delta is not None and not isinstance(delta, Mapping):
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
