"""State the runtime's parts share: how a query ended, what it has done so far, what each request cost.

This module sits at the bottom of ``dynasor/`` and imports nothing from it, so the scheduler,
its policies, the allocator, the runtime and the proxy read the same types without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ExitReason", "QueryStats", "RequestRecord"]


class ExitReason(StrEnum):
    """Why a query ended."""

    CONFIDENT = "confident"
    """Certaindex reached the stopping threshold."""
    BUDGET = "budget"
    """The sample, token or step cap was spent."""
    HOPELESS = "hopeless"
    """Certaindex stayed too low: more compute was unlikely to help."""
    DEADLINE = "deadline"
    """The deadline passed, or the next step could not finish before it."""
    COMPLETED = "completed"
    """The program finished on its own before any cap."""
    ERROR = "error"
    """The engine failed; the best answer so far is returned."""
    CANCELLED = "cancelled"
    """The client cancelled the query."""


@dataclass(eq=False)
class QueryStats:
    """What the scheduler's policies and the allocator may know of a running query.

    The runtime keeps it current; policies read it to order gangs, the allocator to decide.
    """

    id: str
    arrival: float
    """Loop time the query was admitted."""
    deadline: float | None = None
    """Absolute loop time by which the query should finish (None: no SLO)."""
    max_samples: int | None = None
    max_tokens: int | None = None
    samples: int = 0
    """Completed sub-requests."""
    attained_tokens: int = 0
    """Completion tokens generated for the query so far (its attained service)."""
    steps: int = 0
    certaindex: float = 0.0
    """Latest reported certaindex (0 before the first report)."""
    demoted: bool = False
    """Set by the allocator for queries that look hopeless."""
    expected_samples: float | None = None
    """Sub-requests finished queries of the same algorithm used on average (None: none yet)."""
    prior_request_tokens: float | None = None
    """Completion tokens per sub-request seen across queries (None: none yet)."""

    def mean_request_tokens(self, prior: float) -> float:
        """Observed completion tokens per sub-request, ``prior`` before any finished."""
        return self.attained_tokens / self.samples if self.samples else prior


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """Accounting for one sub-request, whether it completed or was aborted."""

    id: str
    query_id: str
    tag: str
    priority: int
    submitted: float
    dispatched: float
    finished: float
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
