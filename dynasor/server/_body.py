"""A request body, read and parsed with guards: a size limit, strict JSON, a nesting limit.

The size limit is checked against ``Content-Length`` before anything is read, and again
while reading (a body sent without a length, or lying about it), so an oversized body costs
the proxy no more than the limit. JSON is strict: ``NaN`` and ``Infinity`` are not numbers
here. A body nested deeper than the parser's recursion limit is a 400, never a crash;
reasoning and simulated requests, whose contents the proxy itself re-serialises, are held
to :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from typing import Any

from dynasor.server._passthrough import ServingError

__all__ = ["MAX_DEPTH", "check_depth", "parse_json", "read_body"]

MAX_DEPTH = 64
"""Deepest nesting of a reasoning or simulated request's body."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


async def read_body(chunks: AsyncIterable[bytes], declared_length: str | None, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    if declared_length is not None:
        try:
            declared = int(declared_length)
        except ValueError:
            raise ServingError(400, "Content-Length is not a number") from None
        if declared > limit:
            raise _too_large(declared, limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_large(size: int, limit: int) -> ServingError:
    return ServingError(
        413,
        f"request body of {size} bytes or more exceeds this server's limit of {limit} bytes",
        "invalid_request_error",
    )


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; 400 for anything else (never an internal error)."""
    try:
        data = _DECODER.decode(raw.decode("utf-8"))
    except RecursionError:
        raise ServingError(400, "Request body is nested too deeply") from None
    except UnicodeDecodeError:
        raise ServingError(400, "Request body is not UTF-8 text") from None
    except ValueError as exc:
        number = "is not a JSON number" in str(exc)
        raise ServingError(400, f"Request body: {exc}" if number else "Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ServingError(400, "Request body must be a JSON object")
    return data


def check_depth(data: Any, limit: int = MAX_DEPTH) -> None:
    """400 when ``data`` nests deeper than ``limit`` levels (the top-level object is level 1).

    >>> check_depth({"a": [[1]]}, limit=3)
    >>> check_depth({"a": [[[1]]]}, limit=3)
    Traceback (most recent call last):
    ...
    dynasor.server._passthrough.ServingError: Request body is nested more than 3 levels deep
    """
    level: list[Any] = [data]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise ServingError(400, f"Request body is nested more than {limit} levels deep")
        below: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                below.extend(v for v in item if isinstance(v, dict | list))
        level = below
