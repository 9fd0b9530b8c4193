"""Ordering-averaged replay: exact where cheap, Monte Carlo otherwise, always through stop_indices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certaindex import (
    OrderingReplay,
    Orderings,
    StopRule,
    Trajectory,
    distinct_orderings,
    expected_replay,
    stop_index,
)

RULES = [
    StopRule("majority", 0.6, min_samples=2, abstentions="distinct"),
    StopRule(
        "majority", 0.7, min_samples=3, round_size=2, abstentions="distinct", hopeless_threshold=0.5, hopeless_after=4
    ),
    StopRule("majority", 0.6, min_samples=2, abstentions="ignore"),
    StopRule("majority", 0.6, min_samples=2, abstentions="class"),
    StopRule("majority", 0.55, min_samples=2, abstentions="distinct", max_risk=0.05),
    StopRule("entropy", 0.5, min_samples=2, abstentions="class"),
    StopRule("entropy", 0.3, min_samples=2, abstentions="ignore"),
    StopRule("beta", 0.8, min_samples=1, abstentions="ignore"),
    StopRule("beta", 0.7, min_samples=1, abstentions="distinct"),
    StopRule("beta", 0.7, min_samples=1, abstentions="class"),
    StopRule("esc", 1.0, min_samples=2, round_size=2, abstentions="distinct"),
    StopRule("esc", 1.0, min_samples=2, round_size=2, abstentions="class"),
    StopRule("esc", 1.0, min_samples=2, round_size=2, abstentions="ignore"),
    StopRule("dirichlet", 0.6, min_samples=2, abstentions="class"),
]


def brute_force(rule: StopRule, labels: list[str | None], correct: list[bool]) -> tuple[float, float, float]:
    """Every permutation of the samples through Trajectory.from_labels and stop_index: samples, loss, accuracy."""
    drawn, loss, right = [], [], []
    for order in itertools.permutations(range(len(labels))):
        t = Trajectory.from_labels([labels[i] for i in order], correct=[correct[i] for i in order])
        assert t.correct is not None
        stop = stop_index(rule, t)
        drawn.append(stop.index + 1)
        right.append(int(t.correct[stop.index]))
        loss.append(int(t.correct[-1]) - int(t.correct[stop.index]))
    return float(np.mean(drawn)), float(np.mean(loss)), float(np.mean(right))


samples = st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.booleans()), min_size=2, max_size=6)


@settings(max_examples=12, deadline=None)
@given(samples, st.sampled_from(RULES))
def test_exact_average_is_the_mean_over_every_permutation(drawn: list[tuple[str | None, bool]], rule: StopRule) -> None:
    # Correctness may differ inside a cluster (code signatures): the first sample of a cluster decides.
    labels = [x for x, _ in drawn]
    correct = [ok and x is not None for x, ok in drawn]
    o = expected_replay(rule, [Trajectory.from_labels(labels, correct=correct)])
    assert bool(o.exact[0])
    assert (o.drawn[0], o.losses[0], o.right[0]) == pytest.approx(brute_force(rule, labels, correct))


def test_monte_carlo_converges_to_the_exact_average_and_is_reproducible() -> None:
    rng = np.random.default_rng(3)
    trajectories = []
    for q in range(12):
        labels = [str(x) if x < 3 else None for x in rng.choice(4, 8, p=[0.5, 0.25, 0.15, 0.1])]
        trajectories.append(Trajectory.from_labels(labels, correct=[x == "0" for x in labels], query_id=str(q)))
    rule = StopRule("majority", 0.6, min_samples=2, abstentions="distinct")
    exact = expected_replay(rule, trajectories)
    assert exact.exact.all()
    mc = expected_replay(rule, trajectories, Orderings(count=20000, exact_limit=0))
    assert not mc.exact.any()
    assert np.abs(mc.losses - exact.losses).max() < 0.02
    assert np.abs(mc.drawn - exact.drawn).max() < 0.05
    again = expected_replay(rule, trajectories[::-1], Orderings(count=20000, exact_limit=0))
    assert np.array_equal(again.losses[::-1], mc.losses)  # a query's orderings do not depend on the batch
    other = expected_replay(rule, trajectories, Orderings(count=20000, exact_limit=0, seed=1))
    assert not np.array_equal(other.drawn, mc.drawn)


def test_sweep_matches_each_threshold_replayed_alone() -> None:
    rng = np.random.default_rng(2)
    trajectories = []
    for q in range(15):
        n = int(rng.integers(5, 15))
        labels = [None if x == 4 else "abcd"[x] for x in rng.choice(5, n, p=[0.5, 0.2, 0.1, 0.1, 0.1])]
        correct = [bool(rng.integers(0, 2)) and x is not None for x in labels]
        trajectories.append(Trajectory.from_labels(labels, correct=correct, query_id=str(q)))
    replayer = OrderingReplay(Orderings(count=200))
    thresholds = (1.0, 0.9, 0.75, 0.6, 0.55)
    chains = [
        StopRule("majority", None, min_samples=2, abstentions="distinct", max_risk=0.1),
        StopRule(
            "majority",
            None,
            min_samples=3,
            round_size=2,
            abstentions="distinct",
            hopeless_threshold=0.3,
            hopeless_after=4,
        ),
        StopRule("majority", None, min_samples=2, abstentions="distinct", hopeless_threshold=0.7, hopeless_after=4),
        StopRule("entropy", None, min_samples=2, abstentions="class"),
    ]
    for chain in chains:
        for t, swept in zip(thresholds, replayer.sweep(chain, thresholds, trajectories), strict=True):
            hope = chain.hopeless_threshold
            rule = chain.with_changes(threshold=t, hopeless_threshold=None if hope is None else min(hope, t))
            alone = OrderingReplay(Orderings(count=200)).outcome(rule, trajectories)  # computed on its own
            served = replayer.outcome(rule, trajectories)  # taken from the sweep already computed
            for name in ("losses", "drawn", "harm_probability", "help_probability", "hopeless_probability"):
                assert np.allclose(getattr(swept, name), getattr(alone, name)), (chain.describe(), t, name)
                assert np.allclose(getattr(served, name), getattr(alone, name)), (chain.describe(), t, name)


def test_totals_the_oracle_and_subsets() -> None:
    t1 = Trajectory.from_labels(["7", "7", "9", "7"], correct=[True, True, False, True], tokens=[10, 10, 30, 10])
    t2 = Trajectory.from_labels(["1", "2", "3", None], correct=[False, True, False, False], tokens=[5, 5, 5, 5])
    replayer = OrderingReplay()
    full = replayer.outcome(StopRule(), [t1, t2])
    assert full.samples_saved == 0.0 and full.loss == 0.0 and full.tokens_saved == 0.0
    assert full.full_accuracy == pytest.approx((1.0 + 1 / 3) / 2)  # t2: a three-way tie, the first seen wins
    oracle = replayer.oracle([t1, t2])
    assert oracle.harms == 0.0 and oracle.helps == 0.0 and oracle.loss == pytest.approx(0.0)
    rule = StopRule("majority", 1.0, min_samples=2, abstentions="distinct")
    o = replayer.outcome(rule, [t1, t2])
    assert o.samples >= oracle.samples
    assert o.subset([1]).n == 1 and o.subset([1]).drawn[0] == o.drawn[1]
    # t1 stops after 2 when both first samples are "7" (probability 1/2): 10 + 10 tokens, else all 60.
    assert o.tokens_drawn[0] == pytest.approx(0.5 * 20 + 0.5 * 60)


def test_distinct_orderings_and_exactness() -> None:
    assert distinct_orderings(np.array([0, 0, 0])) == 1
    assert distinct_orderings(np.arange(10)) == 3628800
    many = Trajectory.from_labels([str(i % 2) for i in range(30)], correct=[True] * 30)
    few = Trajectory.from_labels(["x"] * 29 + ["y"], correct=[True] * 30)
    o = expected_replay(StopRule("majority", 0.8, min_samples=3, abstentions="distinct"), [many, few])
    assert o.exact.tolist() == [False, True]


def test_needs_labels_and_agreement_measures() -> None:
    bare = Trajectory(samples=np.arange(1, 4), values={"majority/class": np.ones(3)}, correct=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="per-sample labels"):
        expected_replay(StopRule("majority", 0.5), [bare])
    t = Trajectory.from_labels(["a", "a"], correct=[True, True])
    with pytest.raises(ValueError, match="agreement measures"):
        expected_replay(StopRule("reward_max", 0.5), [t])
    with pytest.raises(ValueError, match="count"):
        Orderings(count=0)
