"""Best-of-N and reward-weighted majority on the sim engine."""

from __future__ import annotations

import pytest

from algorithms import make_program
from dynasor import ExitReason
from dynasor.allocator import StopRule
from dynasor.engine.sim import ReplaySource, SyntheticSource
from dynasor.scorers import ReplayScorer
from tests.algorithms.helpers import ScriptedSource, gangs, rules, run_query

SCRIPT = [
    ("a \\boxed{1}", 10, {"score": 0.30}),
    ("b \\boxed{1}", 10, {"score": 0.35}),
    ("c \\boxed{1}", 10, {"score": 0.40}),
    ("d \\boxed{2}", 10, {"score": 0.95}),
    ("e \\boxed{3}", 10, {"score": 0.50}),
    ("f \\boxed{3}", 10, {"score": 0.50}),
]


def test_best_of_n_returns_the_highest_reward_sample():
    run = run_query(ScriptedSource(SCRIPT), "bon", {"max_samples": 6, "samples_per_round": 3})
    assert run.result.answer == "2" and run.result.output == "d \\boxed{2}"
    assert gangs(run.records()) == [3, 3]
    assert [r["certaindex"] for r in run.reports] == [pytest.approx(0.40), pytest.approx(0.95)]


def test_weighted_majority_sums_rewards_per_answer():
    run = run_query(ScriptedSource(SCRIPT), "bon", {"max_samples": 6, "vote": "reward"})
    # 1: 1.05, 3: 1.00, 2: 0.95
    assert run.result.answer == "1"
    assert run.result.output == "c \\boxed{1}"  # the best sample of the winning answer


def test_agreement_measures_can_drive_the_stop_rule():
    run = run_query(ScriptedSource(SCRIPT), "bon", {"max_samples": 6, "samples_per_round": 2, "measure": "beta"})
    assert {r["measure"] for r in run.reports} == {"beta"}


def test_a_confident_reward_stops_early():
    source = SyntheticSource(seed=0)
    source.set_difficulty("q", 0.0)
    rule = rules(bon=StopRule(measure="reward_max", threshold=0.8))
    run = run_query(source, "bon", {"max_samples": 16, "samples_per_round": 4}, allocator=rule)
    assert run.result.exit_reason is ExitReason.CONFIDENT and run.result.samples < 16
    assert run.result.answer == source.reference("q")


def test_replayed_rewards_pick_the_answer():
    source = ReplaySource("math-qwen25", seed=0)
    run = run_query(source, "bon", {"max_samples": 8, "reward_scale": "sigmoid"}, qid="math-0", scorer=ReplayScorer())
    assert run.result.answer == source.reference("math-0")
    assert run.result.samples == 8


def test_bad_knobs_are_rejected():
    with pytest.raises(ValueError, match="reward_max"):
        make_program("bon", {"measure": "vibes"})
