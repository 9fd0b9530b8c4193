"""Dynasor's exception tree.

::

    DynasorError
    ├── ConfigError          bad configuration or request parameters (a client mistake)
    ├── PolicyError          unknown or misconfigured scheduling / allocation policy
    ├── EngineError          the engine failed a request
    │   ├── EngineUnavailable    cannot reach the engine (connection refused, 5xx after retries)
    │   ├── EngineTimeout        no answer within the configured time
    │   └── StreamBroken         the connection broke after tokens arrived
    └── QueueFull            admission refused: too many queries waiting
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DynasorError",
    "EngineError",
    "EngineTimeout",
    "EngineUnavailable",
    "PolicyError",
    "QueueFull",
    "StreamBroken",
]


class DynasorError(Exception):
    """Base of every error Dynasor raises on purpose."""


class ConfigError(DynasorError, ValueError):
    """Bad configuration or request parameters."""


class PolicyError(ConfigError):
    """Unknown or misconfigured policy."""


class EngineError(DynasorError):
    """The engine failed a request."""

    def __init__(self, message: str, *, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class EngineUnavailable(EngineError):
    """The engine cannot be reached."""


class EngineTimeout(EngineError):
    """The engine did not answer in time."""


class StreamBroken(EngineError):
    """The connection broke after the engine had streamed tokens: the partial completion is lost.

    Not an :class:`EngineUnavailable`: sending the request again is safe only when none of its
    text has reached anyone yet, which the caller knows and the backend does not.
    """

    def __init__(self, message: str, *, chunks: int) -> None:
        super().__init__(message)
        self.chunks = chunks


class QueueFull(DynasorError):
    """Admission refused: the queue is at its limit."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
