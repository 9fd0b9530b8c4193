"""Certification on the ordering-averaged loss: valid by simulation, the walk, the scope of the promise."""

from __future__ import annotations

import math

import numpy as np
import pytest

import certaindex._certify_orderings as module
from certaindex import Family, OrderingReplay, StopRule, Trajectory, certify, expected_replay, loss_range


def _query(kind: str, dataset: str = "d", qid: str = "") -> Trajectory:
    """Six samples: ``safe`` all right and alike; ``trap`` four right, two alike and wrong."""
    if kind == "safe":
        labels, correct = ["r"] * 6, [True] * 6
    else:
        labels, correct = ["r"] * 4 + ["w"] * 2, [True] * 4 + [False] * 2
    return Trajectory.from_labels(labels, correct=correct, dataset=dataset, query_id=qid)


TWO_AGREE = Family(
    measures=("majority",),
    abstentions=("distinct",),
    round_sizes=(1,),
    min_samples=(2,),
    max_risks=(None,),
    hopeless=(None,),
    thresholds=(1.0,),
)


def test_the_trap_loses_what_the_range_allows() -> None:
    rule = StopRule("majority", 1.0, min_samples=2, abstentions="distinct")
    o = expected_replay(rule, [_query("safe"), _query("trap")])
    assert o.losses.tolist() == pytest.approx([0.0, 1 / 15])  # the two wrong samples first: 2/6 x 1/5
    assert loss_range(rule, 6).hi == pytest.approx(1 / 15)  # the trap is the worst query there is


@pytest.mark.parametrize(("trap_share", "expect_certified"), [(0.33, False), (0.05, True)])
def test_certified_in_at_most_delta_of_the_draws_when_the_true_loss_exceeds_the_bound(
    trap_share: float, expect_certified: bool
) -> None:
    """True expected loss trap_share / 15: 2.2 pt (above the 2 pt bound) or 0.33 pt (well below)."""
    safe, trap = _query("safe"), _query("trap")
    replayer = OrderingReplay()  # the two queries' orderings are computed once, then reused
    bound, delta, n, reps = 0.02, 0.05, 600, 300
    rng = np.random.default_rng(5)
    certified = 0
    for rep in range(reps):
        draw = [trap if rng.random() < trap_share else safe for _ in range(n)]
        cal = certify(draw, target=bound, family=TWO_AGREE, replayer=replayer, seed=rep)
        certified += cal.certified
    rate = certified / reps
    if expect_certified:
        assert rate > 0.8  # the test has power where the rule is good
    else:
        assert trap_share / 15 > bound
        assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / reps)


def test_the_walk_starts_at_the_strictest_threshold_and_stops_at_the_first_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queries = [_query("safe", qid=str(i)) for i in range(200)] + [_query("trap", qid=f"t{i}") for i in range(5)]
    family = Family(
        measures=("majority",),
        abstentions=("distinct",),
        round_sizes=(1,),
        min_samples=(2,),
        max_risks=(None,),
        hopeless=(None,),
        thresholds=(0.55, 0.7, 1.0),  # given loosest first
    )
    tested: list[float] = []
    crafted = iter([0.001, 0.5, 0.001])  # strictest passes, the middle fails, the loosest would pass

    def p_value(losses: np.ndarray, bound: float, upper: float, bets: tuple[float, ...]) -> float:
        tested.append(upper)
        return next(crafted)

    monkeypatch.setattr(module, "betting_pvalue", p_value)
    cal = certify(queries, target=0.001, family=family)
    assert len(tested) == 2  # nothing after the first failure is even tested
    assert [s.rule.threshold for s in cal.walk] == [1.0]
    assert cal.stopped_at is not None and cal.stopped_at.rule.threshold == 0.7
    assert cal.certified and cal.rule.threshold == 1.0  # walking on would have certified 0.55


def test_each_set_is_held_to_the_bound_where_the_pooled_mixture_hides_one() -> None:
    queries = [_query("safe", "easy", str(i)) for i in range(600)] + [
        _query("trap", "hard", str(i)) for i in range(120)
    ]
    replayer = OrderingReplay()
    pooled = certify(queries, target=0.02, family=TWO_AGREE, replayer=replayer, scope="pooled")
    each = certify(queries, target=0.02, family=TWO_AGREE, replayer=replayer)
    assert pooled.certified  # 120 / 720 x 1/15 = 1.1 pt on the mixture
    assert not each.certified  # 6.7 pt on the hard set
    assert pooled.rule.certification is not None
    assert "ordering-betting on the pooled data" in pooled.rule.certification.method
    assert pooled.rule.certification.expected_saving == pytest.approx(pooled.outcome.samples_saved)
    with pytest.raises(ValueError, match="scope"):
        certify(queries, target=0.02, family=TWO_AGREE, replayer=replayer, scope="everywhere")


def test_too_few_queries_say_how_many_are_needed() -> None:
    queries = [_query("safe", qid=str(i)) for i in range(40)]
    cal = certify(queries, target=0.005, family=TWO_AGREE)
    assert not cal.certified and cal.rule.threshold is None
    assert any("are needed" in note for note in cal.notes)
    assert cal.outcome.samples_saved == 0.0
