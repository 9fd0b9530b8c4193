from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.bench import QueryOutcome, summarize


def _outcome(
    i: int,
    latency: float,
    deadline: float,
    *,
    queue: float = 0.0,
    correct: bool | None = True,
    reason: str = "confident",
    tokens: int = 100,
) -> QueryOutcome:
    attained = reason not in ("deadline", "error") and latency <= deadline
    return QueryOutcome(f"q{i}", "p", float(i), latency, deadline, attained, correct, tokens, 4, queue, reason)


def test_attainment_percentiles_accuracy_and_tokens() -> None:
    outcomes = [
        _outcome(0, 10.0, 60.0, tokens=100),
        _outcome(1, 20.0, 60.0, correct=False, tokens=300),
        _outcome(2, 60.0, 60.0, reason="deadline", correct=None, tokens=500),
        _outcome(3, 30.0, 60.0, tokens=100),
    ]
    m = summarize(outcomes, duration=100.0)
    assert m.queries == 4
    assert m.attainment == 0.75
    assert not m.p90_attained
    assert m.latency_p50 == pytest.approx(np.percentile([10, 20, 60, 30], 50))
    assert m.latency_p99 == pytest.approx(np.percentile([10, 20, 60, 30], 99))
    assert m.accuracy == pytest.approx(2 / 3)  # the ungraded query is left out
    assert m.tokens_per_query == 250
    assert m.goodput == pytest.approx(3 / 100.0)
    assert m.throughput == pytest.approx(4 / (2.0 + 60.0))  # first arrival 0, last finish 2 + 60
    assert m.exit_reasons == {"confident": 3, "deadline": 1}
    assert m.slo_scale_p90_is_bound  # one query was cut: the p90 scale is only a lower bound
    assert m.slo_scale_p90 == pytest.approx(np.percentile([10 / 60, 20 / 60, 1.0, 30 / 60], 90))


def test_fairness_is_one_when_every_query_is_slowed_alike() -> None:
    even = summarize([_outcome(i, 10.0, 60.0, queue=5.0) for i in range(5)], 10.0)
    assert even.jain_fairness == pytest.approx(1.0)
    assert even.slowdown_max == pytest.approx(2.0)
    skewed = summarize([_outcome(0, 10.0, 60.0, queue=9.0)] + [_outcome(i, 10.0, 60.0) for i in range(1, 5)], 10.0)
    assert skewed.jain_fairness < 0.7
    assert skewed.slowdown_max == pytest.approx(10.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 100.0), st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=30))
def test_metric_ranges(rows) -> None:
    outcomes = [_outcome(i, lat, 50.0, queue=lat * q, correct=c) for i, (lat, q, c) in enumerate(rows)]
    m = summarize(outcomes, 100.0)
    assert 0.0 <= m.attainment <= 1.0
    assert m.p90_attained == (m.attainment >= 0.9)
    assert 1.0 / len(rows) - 1e-9 <= m.jain_fairness <= 1.0 + 1e-9
    assert m.latency_p50 <= m.latency_p90 <= m.latency_p99
    assert m.attainment == pytest.approx(np.mean([lat <= 50.0 for lat, _, _ in rows]))


def test_empty_run() -> None:
    m = summarize([], 10.0)
    assert m.queries == 0 and m.attainment == 1.0 and m.latency_p50 is None and m.accuracy is None
