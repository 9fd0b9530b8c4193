"""Certification: valid p-values, the fixed-sequence walk (strictest first, stop at the first failure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from certaindex import (
    Family,
    ProfilingRecord,
    StopRule,
    Trajectory,
    binomial_pvalue,
    calibrate,
    certify,
    certify_ladder,
    fixed_sequence,
    group_queries,
    loss_pvalue,
    replay,
    sign_pvalue,
    split_queries,
)


@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), st.floats(0.001, 0.2))
def test_binomial_pvalue_is_the_exact_tail(hn: tuple[int, int], bound: float) -> None:
    h, n = hn
    assert binomial_pvalue(h, n, bound) == pytest.approx(stats.binom.cdf(h, n, bound))
    assert binomial_pvalue(h, n, bound / 2) >= binomial_pvalue(h, n, bound) - 1e-12  # tighter: harder


def test_sign_pvalue_and_pairing() -> None:
    assert sign_pvalue(0, 0) == 1.0
    assert sign_pvalue(0, 5) == pytest.approx(0.5**5)
    # Many helps make a rule certifiable that harms too often for the harm-rate test.
    paired = loss_pvalue(4, 20, 300, 0.005, "ltt-paired")
    harm_only = loss_pvalue(4, 20, 300, 0.005, "ltt-binomial")
    assert paired < 0.05 < harm_only
    # With no discordance the paired test pays for its split of delta.
    assert loss_pvalue(0, 0, 700, 0.005) == pytest.approx(binomial_pvalue(0, 700, 0.005) / 0.8)
    with pytest.raises(ValueError, match="unknown method"):
        loss_pvalue(0, 0, 10, 0.01, "hoeffding")  # type: ignore[arg-type]


@pytest.mark.parametrize(("p_h", "p_g"), [(0.012, 0.001), (0.02, 0.008), (0.011, 0.0)])
def test_the_paired_test_is_valid_at_the_boundary(p_h: float, p_g: float) -> None:
    """True loss just above the bound: certified in at most delta of the draws (plus Monte Carlo slack)."""
    bound, delta, n, reps = 0.01, 0.05, 400, 4000
    assert p_h - p_g > bound
    rng = np.random.default_rng(7)
    draws = rng.multinomial(n, [p_h, p_g, 1 - p_h - p_g], size=reps)
    certified = np.mean([loss_pvalue(int(h), int(g), n, bound) <= delta for h, g, _ in draws])
    assert certified <= delta + 3 * np.sqrt(delta * (1 - delta) / reps)
    # The point estimate (observed loss within the bound) would claim it far more often.
    point = np.mean((draws[:, 0] - draws[:, 1]) / n <= bound)
    assert point > 2 * delta


def test_fixed_sequence_stops_at_the_first_failure() -> None:
    tested: list[str] = []

    def p(name: str) -> float:
        tested.append(name)
        return {"strict": 0.001, "middle": 0.3, "loose": 0.001}[name]

    passed, failed = fixed_sequence(["strict", "middle", "loose"], p, 0.05)
    assert passed == ["strict"] and failed == "middle"
    assert tested == ["strict", "middle"]  # nothing after the failure is even tested
    assert fixed_sequence([], p, 0.05) == ([], None)


def _traj(values: list[float], correct: list[bool], dataset: str = "d") -> Trajectory:
    n = len(values)
    return Trajectory(
        samples=np.arange(1, n + 1),
        values={"majority/class": np.array(values)},
        correct=np.array(correct),
        tokens=np.arange(1, n + 1) * 10,
        dataset=dataset,
    )


def _crafted(safe: int = 700, traps: int = 70) -> list[Trajectory]:
    """Threshold 0.85 harms every trap query (it stops them at step 2, where they are wrong);
    the looser 0.75 stops them at step 1, where they are right again, and harms nobody."""
    return [_traj([0.95, 0.95, 0.95], [True, True, True]) for _ in range(safe)] + [
        _traj([0.75, 0.85, 0.0], [True, False, True]) for _ in range(traps)
    ]


ONE_CHAIN = Family(
    measures=("majority",),
    abstentions=("class",),
    round_sizes=(1,),
    min_samples=(1,),
    hopeless=(None,),
    thresholds=(0.0, 0.75, 0.85, 0.95),  # given loosest first: the walk must still start at 0.95
)


def test_certify_walks_strictest_first_and_stops_at_the_first_failing_threshold() -> None:
    population = _crafted()
    loose = StopRule("majority", 0.75)
    assert replay(loose, population).harms == 0  # a walk that went on past 0.85 would certify 0.75
    cal = certify(population, target=0.05, family=ONE_CHAIN, method="ltt-paired")
    assert cal.certified
    assert [s.rule.threshold for s in cal.walk] == [0.95]
    assert cal.stopped_at is not None and cal.stopped_at.rule.threshold == 0.85
    assert cal.rule.threshold == 0.95
    cert = cal.rule.certification
    assert cert is not None and cert.bound == 0.05 and cert.method == "ltt-paired" and cert.queries == 770
    assert cert.expected_saving == pytest.approx(replay(cal.rule, population).samples_saved)


def test_legacy_calibration_walk_stops_at_the_first_failure() -> None:
    recs = []
    for q, t in enumerate(_crafted(300, 30)):
        values, correct = t.values["majority/class"], t.correct
        assert correct is not None
        recs += [
            ProfilingRecord(f"q{q}", "sc", s + 1, s + 1, 10 * (s + 1), {"m": float(values[s])}, str(correct[s]),
                            bool(correct[s]), bool(correct[-1]))
            for s in range(3)
        ]  # fmt: skip
    choice = calibrate(group_queries(recs)["sc"], algorithm="sc", target_loss=0.05, min_steps=[1])
    assert (choice.threshold, choice.min_step) == (0.95, 1)


def test_too_few_queries_certify_nothing_and_say_why() -> None:
    cal = certify(_crafted(100, 0), target=0.005, family=ONE_CHAIN, method="ltt-paired")
    assert not cal.certified and cal.rule.threshold is None
    assert any("harm-free certify queries are needed" in n for n in cal.notes)
    assert cal.outcome.samples_saved == 0.0
    assert "promise: none" in cal.report()


def test_split_keeps_each_sets_share() -> None:
    trajectories = [_traj([1.0], [True], "a") for _ in range(100)] + [_traj([1.0], [True], "b") for _ in range(50)]
    learn, cert = split_queries(trajectories, 0.3, seed=1)
    assert sum(t.dataset == "a" for t in learn) == 30 and sum(t.dataset == "b" for t in learn) == 15
    assert len(learn) + len(cert) == 150 and not {id(t) for t in learn} & {id(t) for t in cert}
    with pytest.raises(ValueError, match="learn_share"):
        split_queries(trajectories, 1.0, seed=1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="confidence"):
        certify(_crafted(5, 0), confidence=1.0)
    with pytest.raises(ValueError, match="target"):
        certify(_crafted(5, 0), target=2.0)
    with pytest.raises(ValueError, match="no trajectories"):
        certify([])


LADDER = (0.005, 0.01, 0.02, 0.05)


def test_ladder_returns_the_tightest_bound_and_pays_for_trying_several() -> None:
    # 70 harm-free certify queries: enough for 5 pt at delta = 0.05, not at delta / 4.
    safe = _crafted(100, 0)
    assert certify(safe, target=0.05, family=ONE_CHAIN, method="ltt-paired").certified
    assert not certify_ladder(safe, LADDER, family=ONE_CHAIN, method="ltt-paired").certified
    # Three times the queries: 5 pt passes at delta / 4, 2 pt still does not.
    ladder = certify_ladder(_crafted(300, 0), LADDER, family=ONE_CHAIN, method="ltt-paired")
    cert = ladder.rule.certification
    assert ladder.certified and cert is not None
    assert (cert.bound, cert.confidence) == (0.05, 0.95)
    assert "tightest of 4 bounds" in cert.method
