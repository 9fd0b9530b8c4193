"""Failures talking to an OpenAI-compatible server, mapped onto Dynasor's errors, and when to retry.

::

    connection refused or reset, server disconnected,   -> EngineUnavailable (retried before the
    connect timeout, broken body (aiohttp)                 first token; StreamBroken after it)
    no bytes within the read timeout                    -> EngineTimeout
    HTTP 429, 500, 502, 503, 504                        -> EngineUnavailable (retried)
    any other HTTP 4xx / 5xx                            -> EngineError (status, body)
    an error event inside the stream                    -> EngineError
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dynasor._exceptions import EngineError, EngineUnavailable

__all__ = ["RETRY_STATUS", "RetryPolicy", "Retryable", "status_error"]

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
"""HTTP answers worth a retry: the server is busy or restarting, not refusing the request."""


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


class Retryable(Exception):
    """A failure before the first token: the request may be sent again."""

    def __init__(self, error: EngineError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def status_error(status: int, headers: Mapping[str, str], body: bytes, path: str) -> Exception:
    """An HTTP error answer as a Dynasor error (wrapped in :class:`Retryable` when worth a retry)."""
    text = body.decode("utf-8", errors="replace")
    try:
        payload: Any = json.loads(text)
    except ValueError:
        payload = text
    detail = payload
    if isinstance(payload, Mapping):
        err = payload.get("error", payload)
        detail = err.get("message", err) if isinstance(err, Mapping) else err
    message = f"{path} answered HTTP {status}: {detail}"
    if status in RETRY_STATUS:
        retry_after: float | None = None
        try:
            retry_after = float(headers.get("retry-after", ""))
        except ValueError:
            retry_after = None
        return Retryable(EngineUnavailable(message, status=status, body=payload), retry_after)
    return EngineError(message, status=status, body=payload)
