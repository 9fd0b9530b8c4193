"""REBASE on the sim engine: reward-balanced widths, one gang per depth, tree certaindex."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from algorithms import make_program
from algorithms.rebase import RewardBalancedSearch, balance
from dynasor import Budget, ExitReason, Query
from dynasor.allocator import StopRule
from dynasor.engine.sim import ReplayStepSource, SimBackend, SyntheticStepSource
from dynasor.runtime import Runtime
from dynasor.scorers import ReplayScorer, SyntheticScorer
from tests.algorithms.helpers import gangs, rules, run_query, vrun

REBASE_RULE = rules(rebase=StopRule("rebase", 0.8, min_samples=9))


def steps(seed: int, difficulty: float) -> SyntheticStepSource:
    source = SyntheticStepSource(seed=seed)
    source.set_difficulty("q", difficulty)
    return source


@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=12),
    st.integers(0, 40),
    st.floats(0.05, 5),
)
def test_balance_hands_out_exactly_the_budget(rewards, budget, temperature):
    shares = balance(rewards, budget, temperature)
    assert len(shares) == len(rewards)
    assert sum(shares) == budget and min(shares) >= 0


@given(st.lists(st.floats(0, 1), min_size=2, max_size=8), st.integers(1, 40))
def test_balance_never_gives_a_better_node_less(rewards, budget):
    shares = balance(rewards, budget, 0.2)
    for i in range(len(rewards)):
        for j in range(len(rewards)):
            if rewards[i] > rewards[j]:
                assert shares[i] >= shares[j]


def test_low_temperature_concentrates_and_high_temperature_spreads():
    assert balance([0.9, 0.5, 0.1], 6, 0.01) == [6, 0, 0]
    assert balance([0.9, 0.5, 0.1], 6, 100.0) == [2, 2, 2]


def test_each_depth_is_one_gang_within_the_width():
    run = run_query(steps(0, 0.8), "rebase", {"width": 6})
    sizes = gangs(run.records())
    assert sizes[0] == 6 and all(1 <= s <= 6 for s in sizes)
    assert len(run.reports) == len(sizes) == run.result.steps
    assert sum(sizes) == run.result.samples


def test_finished_paths_shrink_the_next_gangs():

    program = RewardBalancedSearch(width=6)

    async def main():
        runtime = Runtime(SimBackend(source=steps(2, 0.6)), allocator=rules(), scorer=SyntheticScorer())
        await runtime.run(Query("q?", "rebase", id="q"), program)
        await runtime.aclose()

    vrun(main)
    finished_before = 0
    for depth, size in enumerate(program.gang_sizes, start=1):
        assert size == 6 - finished_before
        finished_before = sum(1 for n in program.finished() if n.depth <= depth)
    assert len(program.finished()) == 6


@pytest.mark.parametrize("cap", [4, 9])
def test_the_sample_budget_is_respected(cap):
    run = run_query(steps(1, 0.9), "rebase", {"width": 6}, budget=Budget(max_samples=cap))
    assert run.result.samples == cap


def test_easy_queries_exit_early_and_hard_ones_do_not():
    easy = [run_query(steps(seed, 0.0), "rebase", {}, allocator=REBASE_RULE).result for seed in range(4)]
    hard = [run_query(steps(seed, 1.0), "rebase", {}, allocator=REBASE_RULE).result for seed in (1, 2, 3)]
    assert sum(r.exit_reason is ExitReason.CONFIDENT and r.steps <= 3 for r in easy) >= 3
    assert all(r.exit_reason is ExitReason.COMPLETED and r.steps == 7 for r in hard)


def test_replayed_steps_run_end_to_end():
    source = ReplayStepSource("math-qwen25", seed=0)
    run = run_query(source, "rebase", {"reward_scale": "sigmoid"}, qid="math-0", scorer=ReplayScorer())
    assert run.result.answer == source.reference("math-0")
    assert run.result.exit_reason is ExitReason.COMPLETED


def test_stopping_mid_depth_aborts_the_gang():
    run = run_query(steps(0, 1.0), "rebase", {"width": 8}, cancel_after=0.3)
    assert run.result.exit_reason is ExitReason.CANCELLED
    assert [r.finish_reason for r in run.records()].count("abort") >= 1


def test_bad_knobs_are_rejected():
    with pytest.raises(ValueError, match="balance_temperature"):
        make_program("rebase", {"balance_temperature": 0})
