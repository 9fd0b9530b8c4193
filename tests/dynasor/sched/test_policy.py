"""Each policy orders crafted queues as specified."""

from __future__ import annotations

import pytest

from algorithms.protocol import GenerateRequest
from dynasor import PolicyError
from dynasor.sched import DynasorPolicy, Gang, QueryStats, make_policy


def gang(query: QueryStats, submitted: float, size: int = 1, max_tokens: int = 100) -> Gang:
    return Gang(query, [GenerateRequest("q", max_tokens)] * size, submitted, [10] * size)


def order(policy_name: str, gangs: list[Gang], **options: float) -> list[Gang]:
    policy = make_policy(policy_name, **options)
    return sorted(gangs, key=lambda g: (policy.key(g), g.seq))


def test_fcfs_orders_by_request_submission_and_splits_gangs() -> None:
    old, new = QueryStats("old", arrival=0.0), QueryStats("new", arrival=5.0)
    a, b = gang(new, submitted=6.0), gang(old, submitted=7.0)
    assert order("fcfs", [b, a]) == [a, b]
    assert make_policy("fcfs").split_gangs


def test_query_fcfs_orders_by_query_arrival() -> None:
    old, new = QueryStats("old", arrival=0.0), QueryStats("new", arrival=5.0)
    a, b = gang(new, submitted=6.0), gang(old, submitted=7.0)
    assert order("query-fcfs", [a, b]) == [b, a]
    assert not make_policy("query-fcfs").split_gangs


def test_las_serves_least_attained_first() -> None:
    heavy = QueryStats("heavy", arrival=0.0, attained_tokens=5000)
    light = QueryStats("light", arrival=9.0, attained_tokens=100)
    a, b = gang(heavy, 10.0), gang(light, 10.0)
    assert order("las", [a, b]) == [b, a]


def test_dynasor_prefers_less_remaining_work() -> None:
    long = QueryStats("long", arrival=0.0, max_samples=32)
    short = QueryStats("short", arrival=0.0, max_samples=4)
    a, b = gang(long, 1.0, size=2), gang(short, 1.0, size=2)
    assert order("dynasor", [a, b]) == [b, a]


def test_dynasor_certain_query_predicted_nearly_done() -> None:
    unsure = QueryStats("unsure", arrival=0.0, max_samples=16, samples=4, attained_tokens=400, certaindex=0.1)
    sure = QueryStats("sure", arrival=0.0, max_samples=16, samples=4, attained_tokens=400, certaindex=0.9)
    a, b = gang(unsure, 1.0), gang(sure, 1.0)
    assert order("dynasor", [a, b]) == [b, a]


def test_dynasor_aging_lets_old_queries_overtake() -> None:
    policy = DynasorPolicy(aging=10.0)
    old = gang(QueryStats("old", arrival=0.0, max_samples=10), 0.0)  # 10 x 100 tokens of work
    assert policy.predicted_work(old) == pytest.approx(1000.0)
    # A newcomer with almost no work wins until the old query has waited work / aging = 100 s.
    early = gang(QueryStats("early", arrival=99.0, max_samples=1), 0.0, max_tokens=1)
    late = gang(QueryStats("late", arrival=101.0, max_samples=1), 0.0, max_tokens=1)
    assert order("dynasor", [old, early], aging=10.0)[0] is early
    assert order("dynasor", [old, late], aging=10.0)[0] is old


def test_dynasor_demoted_query_goes_last() -> None:
    hopeless = QueryStats("h", arrival=0.0, max_samples=2, demoted=True)
    fresh = QueryStats("f", arrival=100.0, max_samples=64)
    assert order("dynasor", [gang(hopeless, 0.0), gang(fresh, 0.0)])[0].stats is fresh


def test_unknown_policy_names_the_valid_ones() -> None:
    with pytest.raises(PolicyError, match="fcfs, query-fcfs, las, dynasor"):
        make_policy("sjf")
    with pytest.raises(PolicyError, match="Bad options"):
        make_policy("dynasor", speed=3)


def test_dynasor_predicts_new_queries_from_finished_ones() -> None:
    """Without history a new query looks like its whole budget; with it, like a typical query."""
    old = QueryStats("old", arrival=0.0, max_samples=16, samples=10, steps=5, attained_tokens=4000, certaindex=0.2)
    fresh = QueryStats("new", arrival=0.0, max_samples=16)
    learned = QueryStats("new", arrival=0.0, max_samples=16, expected_samples=4.0, prior_request_tokens=400.0)
    assert order("dynasor", [gang(old, 0.0, max_tokens=2048), gang(fresh, 0.0, max_tokens=2048)])[0].stats is old
    first = order("dynasor", [gang(old, 0.0, max_tokens=2048), gang(learned, 0.0, max_tokens=2048)])[0]
    assert first.stats is learned
    policy = DynasorPolicy()
    assert policy.predicted_work(gang(learned, 0.0, size=2, max_tokens=2048)) == pytest.approx(4 * 400.0)
