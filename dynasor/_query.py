"""Queries in, results out: the runtime's public data types."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from algorithms.protocol import ChatMessage
from certaindex import StopRule
from dynasor._state import ExitReason, RequestRecord

__all__ = ["Budget", "Query", "QueryResult", "TrajectoryPoint", "Usage"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Caps on what one query may spend (None: no cap)."""

    max_samples: int | None = None
    """Generation calls (probes included)."""
    max_tokens: int | None = None
    """Completion tokens over all calls."""
    max_steps: int | None = None
    """Certaindex reports (program steps)."""

    def __post_init__(self) -> None:
        for name in ("max_samples", "max_tokens", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")


@dataclass(frozen=True, slots=True)
class Query:
    """One reasoning query: a prompt, the program to run on it, and its limits.

    Everything a query asks for travels on it: the program's knobs, its budget, its deadline
    and, when it has one of its own, its stop rule; the runtime and the allocator read them here.
    """

    prompt: str | Sequence[ChatMessage]
    algorithm: str = "sc"
    params: Mapping[str, Any] = field(default_factory=dict)
    """The algorithm's knobs (``max_samples``, ``samples_per_round``, ...)."""
    budget: Budget = field(default_factory=Budget)
    deadline: float | None = None
    """Seconds after arrival by which the query must finish (its SLO); None: none."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    certaindex: StopRule | None = field(default=None, kw_only=True)
    """This query's own stop rule, a :class:`certaindex.StopRule` (None: the allocator's rule for its algorithm)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token accounting of a query, summed over its sub-requests (aborted ones included)."""

    prompt_tokens: int
    completion_tokens: int
    tokens_cap: int | None
    """Completion tokens the configured cap allowed (None: uncapped)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def tokens_saved(self) -> int | None:
        """Completion tokens avoided versus the cap."""
        return None if self.tokens_cap is None else max(self.tokens_cap - self.completion_tokens, 0)


@dataclass(frozen=True, slots=True)
class TrajectoryPoint:
    """One certaindex report."""

    step: int
    time: float
    """Seconds since the query arrived."""
    samples: int
    tokens: int
    value: float
    measure: str
    answer: str | None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Everything the runtime knows of a finished query."""

    id: str
    algorithm: str
    answer: str | None
    output: str
    """What is returned to the client: the answer with its reasoning where the program has one."""
    exit_reason: ExitReason
    usage: Usage
    samples: int
    steps: int
    certaindex: float | None
    """Last reported value (None: the program never reported)."""
    trajectory: tuple[TrajectoryPoint, ...]
    arrival: float
    finished: float
    queue_time: float
    """Seconds the query had a gang waiting for dispatch and none running."""
    requests: tuple[RequestRecord, ...] = ()
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.finished - self.arrival

    @property
    def run_time(self) -> float:
        return self.latency - self.queue_time

    def to_dict(self, *, requests: bool = False) -> dict[str, Any]:
        """JSON-ready form (sub-request records only when asked for)."""
        data = asdict(self)
        if not requests:
            data.pop("requests")
        data["exit_reason"] = str(self.exit_reason)
        data["latency"] = self.latency
        data["run_time"] = self.run_time
        data["usage"].update(total_tokens=self.usage.total_tokens, tokens_saved=self.usage.tokens_saved)
        return data
