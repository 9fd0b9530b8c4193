r"""Metrics of one benchmark point, from the outcome of every query.

- **Attainment**: the fraction of queries that finished within their deadline (a query cut
  at its deadline, or failed, missed it). ``p90_attained`` says whether it is >= 0.9, the
  paper's operating point.
- **SLO scale for 90%**: the 90th percentile of ``latency / base_deadline``: the tightest
  deadline scale at which 90% of these queries would have finished. Only meaningful where
  no query was cut at its deadline; otherwise it is a lower bound, flagged as such.
- **Latency** p50/p90/p99 (seconds from arrival to result).
- **Programs/s**: queries finished within their deadline per second of offered traffic
  (goodput), and all queries finished per second from first arrival to last finish.
- **Accuracy**: answers equal to the reference (canonical keys), over queries with one.
- **Tokens per query**: completion tokens, aborted sub-requests included.
- **Finish-time fairness**: with :math:`\rho_i = T_i / (T_i - Q_i)` the slowdown of query
  :math:`i` from queueing (latency over time with work in the engine), the p90 and max of
  :math:`\rho` and Jain's index :math:`J = (\sum \rho_i)^2 / (n \sum \rho_i^2)`, 1 when every
  query is slowed down alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["PointMetrics", "QueryOutcome", "summarize"]

# Attainment the sustainable rate must keep (the paper's P90 attainment).
TARGET_ATTAINMENT = 0.9


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """One query's fate in a run."""

    id: str
    preset: str
    arrival: float
    """Seconds after the run started."""
    latency: float
    deadline: float
    attained: bool
    correct: bool | None
    completion_tokens: int
    samples: int
    queue_time: float
    exit_reason: str

    @property
    def slowdown(self) -> float:
        run = self.latency - self.queue_time
        return self.latency / run if run > 0 else 1.0


@dataclass(frozen=True, slots=True)
class PointMetrics:
    queries: int
    attainment: float
    p90_attained: bool
    slo_scale_p90: float | None
    slo_scale_p90_is_bound: bool
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    goodput: float
    """Queries within deadline per second of offered traffic."""
    throughput: float
    """Queries finished per second, first arrival to last finish."""
    accuracy: float | None
    tokens_per_query: float | None
    samples_per_query: float | None
    slowdown_p90: float | None
    slowdown_max: float | None
    jain_fairness: float | None
    exit_reasons: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


def summarize(
    outcomes: Sequence[QueryOutcome], duration: float, base_deadlines: Sequence[float] | None = None
) -> PointMetrics:
    """Metrics of one point (``duration``: seconds of offered arrivals).

    ``base_deadlines`` (per outcome) normalise latencies for ``slo_scale_p90``; by default
    each outcome's own deadline is used, which gives the SLO scale relative to the one run.
    """
    n = len(outcomes)
    latency = np.array([o.latency for o in outcomes], dtype=float)
    attained = np.array([o.attained for o in outcomes], dtype=bool)
    bases = np.array(base_deadlines if base_deadlines is not None else [o.deadline for o in outcomes], dtype=float)
    graded = [o.correct for o in outcomes if o.correct is not None]
    slowdown = np.array([o.slowdown for o in outcomes], dtype=float)
    attainment = float(attained.mean()) if n else 1.0
    reasons: dict[str, int] = {}
    for o in outcomes:
        reasons[o.exit_reason] = reasons.get(o.exit_reason, 0) + 1
    span = (max(o.arrival + o.latency for o in outcomes) - min(o.arrival for o in outcomes)) if n else 0.0
    return PointMetrics(
        queries=n,
        attainment=attainment,
        p90_attained=attainment >= TARGET_ATTAINMENT,
        slo_scale_p90=_pct(latency / bases, 90) if n else None,
        slo_scale_p90_is_bound="deadline" in reasons,
        latency_p50=_pct(latency, 50),
        latency_p90=_pct(latency, 90),
        latency_p99=_pct(latency, 99),
        goodput=float(attained.sum()) / duration if duration > 0 else 0.0,
        throughput=n / span if span > 0 else 0.0,
        accuracy=float(np.mean(graded)) if graded else None,
        tokens_per_query=float(np.mean([o.completion_tokens for o in outcomes])) if n else None,
        samples_per_query=float(np.mean([o.samples for o in outcomes])) if n else None,
        slowdown_p90=_pct(slowdown, 90),
        slowdown_max=float(slowdown.max()) if n else None,
        jain_fairness=float(slowdown.sum() ** 2 / (n * (slowdown**2).sum())) if n else None,
        exit_reasons=dict(sorted(reasons.items())),
    )
