"""Dynasor: serve LLM reasoning programs with Certaindex early exit and gang scheduling."""

from dynasor._exceptions import (
    ConfigError,
    DynasorError,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    PolicyError,
    QueueFull,
    StreamBroken,
)
from dynasor._presets import AllocatorConfig, StopRule
from dynasor._query import Budget, Query, QueryResult, TrajectoryPoint, Usage
from dynasor._state import ExitReason, QueryStats, RequestRecord
from dynasor.allocator import Allocator
from dynasor.runtime import Runtime

__all__ = [
    "Allocator",
    "AllocatorConfig",
    "Budget",
    "ConfigError",
    "DynasorError",
    "EngineError",
    "EngineTimeout",
    "EngineUnavailable",
    "ExitReason",
    "PolicyError",
    "Query",
    "QueryResult",
    "QueryStats",
    "QueueFull",
    "RequestRecord",
    "Runtime",
    "StopRule",
    "StreamBroken",
    "TrajectoryPoint",
    "Usage",
]
