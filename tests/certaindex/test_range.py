"""The loss range of a rule: checked against the worst query found by brute force on small budgets."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from certaindex import OrderingReplay, Orderings, RuleError, StopRule, Trajectory, loss_range, mc_margin, stop_index


def partitions(n: int, largest: int | None = None) -> Iterator[tuple[int, ...]]:
    largest = n if largest is None else largest
    if n == 0:
        yield ()
        return
    for part in range(min(n, largest), 0, -1):
        for rest in partitions(n - part, part):
            yield (part, *rest)


def every_query(budget: int) -> list[Trajectory]:
    """Every multiset of answers (cluster sizes, abstentions) with every assignment of right and wrong."""
    out = []
    for abstained in range(budget + 1):
        for sizes in partitions(budget - abstained):
            for right in itertools.product([False, True], repeat=len(sizes)):
                labels: list[int | None] = [j for j, size in enumerate(sizes) for _ in range(size)]
                correct = [right[j] for j, size in enumerate(sizes) for _ in range(size)]
                out.append(Trajectory.from_labels(labels + [None] * abstained, correct=correct + [False] * abstained))
    return out


RULES = [
    StopRule("majority", 1.0, min_samples=2, abstentions="distinct"),
    StopRule("majority", 0.6, min_samples=2, abstentions="distinct"),
    StopRule("majority", 0.75, min_samples=3, abstentions="distinct"),
    StopRule("majority", 0.51, min_samples=2, round_size=2, abstentions="distinct"),
    StopRule("majority", 0.6, min_samples=2, abstentions="distinct", max_risk=0.15),
]


@pytest.mark.parametrize("budget", [5, 6, 7])
def test_no_query_loses_more_than_the_range(budget: int) -> None:
    queries = every_query(budget)
    replayer = OrderingReplay(Orderings(exact_limit=10**6))
    for rule in RULES:
        o = replayer.outcome(rule, queries)
        assert o.exact.all()
        bound = loss_range(rule, budget)
        assert bound.how in ("union bound over answer clusters", "never early")
        assert o.losses.max() <= bound.hi + 1e-12, rule.describe()
        assert o.losses.min() >= bound.lo - 1e-12, rule.describe()
        # Not vacuous: within a factor of the worst query actually found.
        assert bound.hi <= 1.6 * o.losses.max() + 0.06, rule.describe()


def test_the_range_is_exact_for_two_agreeing_samples() -> None:
    # Worst query: the right answer just ahead, one wrong answer holding the rest.
    rule = StopRule("majority", 1.0, min_samples=2, abstentions="distinct")
    for budget in (5, 6, 7):
        worst = OrderingReplay(Orderings(exact_limit=10**6)).outcome(rule, every_query(budget)).losses.max()
        assert loss_range(rule, budget).hi == pytest.approx(worst)


def test_stricter_rules_have_smaller_ranges_and_others_are_trivial() -> None:
    for budget in (10, 30):
        for low in (2, 4):
            his = [
                loss_range(StopRule("majority", t, min_samples=low, abstentions="distinct"), budget).hi
                for t in (1.0, 0.9, 0.8, 0.7, 0.6)
            ]
            assert his == sorted(his)
    assert loss_range(StopRule("majority", None), 30).hi == 0.0
    hopeless = StopRule(
        "majority", 0.9, min_samples=2, abstentions="distinct", hopeless_threshold=0.2, hopeless_after=10
    )
    assert (loss_range(hopeless, 30).lo, loss_range(hopeless, 30).hi) == (-1.0, 1.0)
    assert loss_range(StopRule("beta", 0.95), 30).how == "trivial"
    assert loss_range(StopRule("majority", 0.9, min_samples=2, abstentions="class"), 30).how == "trivial"
    assert loss_range(StopRule("majority", 0.4, min_samples=2, abstentions="distinct"), 30).how == "trivial"
    with pytest.raises(ValueError, match="budget"):
        loss_range(StopRule("majority", 0.9), 0)


def test_a_risk_cap_waits_longer_at_larger_budgets() -> None:
    loose = StopRule("majority", 0.7, min_samples=2, abstentions="distinct")
    capped = loose.with_changes(max_risk=0.1)
    lows = [capped.min_samples_at(n) for n in (8, 10, 30, 100)]
    assert lows == sorted(lows) and lows[0] < lows[-1]
    for n, low in zip((8, 10, 30, 100), lows, strict=True):
        assert loss_range(capped, n).hi <= 0.1 < loss_range(loose.with_changes(min_samples=low - 1), n).hi or low == 2
    with pytest.raises(RuleError, match="max_risk needs"):
        StopRule("beta", 0.9, max_risk=0.1)
    running = Trajectory(samples=np.arange(1, 4), values={"majority/distinct": np.ones(3)}, complete=False)
    with pytest.raises(RuleError, match="budget"):
        stop_index(capped, running)
    assert stop_index(capped, replace(running, budget=8)).reason == "confident"


def test_monte_carlo_margin() -> None:
    from scipy import integrate

    count, slack = 2000, 5e-5
    eta = mc_margin(count, slack)
    tail, _ = integrate.quad(lambda s: math.exp(-2 * count * s * s), eta, 1.0)
    assert tail == pytest.approx(slack, rel=1e-3)
    assert mc_margin(8000, slack) < eta  # more orderings, smaller margin
    # The average of `count` orderings of a 0/1 outcome exceeds its mean by eta very rarely.
    rng = np.random.default_rng(0)
    averages = rng.binomial(count, 0.3, size=20000) / count
    assert np.mean(averages - 0.3 > eta) < 1e-3
    with pytest.raises(ValueError):
        mc_margin(0, slack)
