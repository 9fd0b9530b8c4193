"""Dynasor: serve LLM reasoning programs with Certaindex early exit and gang scheduling."""

from dynasor._exceptions import (
    ConfigError,
    DynasorError,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    PolicyError,
    QueueFull,
)

__all__ = [
    "ConfigError",
    "DynasorError",
    "EngineError",
    "EngineTimeout",
    "EngineUnavailable",
    "PolicyError",
    "QueueFull",
]
