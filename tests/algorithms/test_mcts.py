"""MCTS on the sim engine: UCT, gangs of rollouts, reward backup, tree certaindex, budget, aborts."""

from __future__ import annotations

import pytest

from algorithms import make_program
from algorithms._tree import Node
from algorithms.mcts import MonteCarloTreeSearch
from dynasor import Budget, ConfigError, ExitReason, Query
from dynasor.allocator import StopRule
from dynasor.engine.sim import ReplayStepSource, SimBackend, SyntheticStepSource
from dynasor.runtime import Runtime
from dynasor.scorers import ReplayScorer
from tests.algorithms.helpers import gangs, rules, run_query, vrun

MCTS_RULE = rules(mcts=StopRule("mcts", 0.6, min_samples=5))


def steps(seed: int, difficulty: float, **kwargs: float) -> SyntheticStepSource:
    source = SyntheticStepSource(seed=seed, **kwargs)  # type: ignore[arg-type]
    source.set_difficulty("q", difficulty)
    return source


def test_each_expansion_is_one_gang_of_width_rollouts_and_a_report_follows():
    run = run_query(steps(0, 0.5), "mcts", {"iterations": 5, "width": 3})
    sizes = gangs(run.records())
    assert sizes[0] == 3 and all(1 <= s <= 3 for s in sizes)
    assert len(run.reports) == 5 == run.result.steps
    assert {r.tag for r in run.records()} == {"rollout"}


def test_step_mode_samples_one_step_per_request():
    run = run_query(steps(0, 0.5), "mcts", {"iterations": 4, "width": 2, "rollout": False})
    assert {r.tag for r in run.records()} == {"expand"}
    assert gangs(run.records()) == [2] * 4
    assert run.result.samples == 8


@pytest.mark.parametrize("cap", [2, 5])
def test_the_sample_budget_is_respected(cap):
    run = run_query(steps(1, 0.8), "mcts", {"iterations": 6, "width": 4}, budget=Budget(max_samples=cap))
    assert run.result.samples == cap
    assert run.result.exit_reason is ExitReason.BUDGET


def test_easy_queries_exit_early_and_hard_ones_do_not():
    easy = [run_query(steps(seed, 0.0), "mcts", {}, allocator=MCTS_RULE).result for seed in range(5)]
    hard = [run_query(steps(seed, 1.0), "mcts", {}, allocator=MCTS_RULE).result for seed in range(5)]
    # Seeded, so deterministic; most easy queries stop at the first step the rule allows (past 4 samples).
    first_allowed = [next(p.step for p in r.trajectory if p.samples >= 5) for r in easy]
    stopped = [r.exit_reason is ExitReason.CONFIDENT and r.steps == f for r, f in zip(easy, first_allowed, strict=True)]
    assert sum(stopped) >= 3
    assert all(r.exit_reason is not ExitReason.CONFIDENT and r.steps == 6 for r in hard)
    mean = lambda results: sum(r.usage.completion_tokens for r in results) / len(results)  # noqa: E731
    assert mean(easy) < mean(hard) / 2


def test_rewards_are_backed_up_to_the_root():
    program = MonteCarloTreeSearch()
    leaf = Node(parent=program.root, depth=1)
    program.root.children.append(leaf)
    deeper = Node(parent=leaf, depth=2)
    leaf.children.append(deeper)
    program.backup(deeper, 0.8)
    program.backup(leaf, 0.2)
    assert (program.root.visits, program.root.value) == (2, pytest.approx(1.0))
    assert (leaf.visits, leaf.value) == (2, pytest.approx(1.0))
    assert (deeper.visits, deeper.value) == (1, pytest.approx(0.8))


def test_selection_prefers_the_better_child_and_explores_the_unvisited():
    program = MonteCarloTreeSearch(width=2, exploration=0.1)
    good, bad = Node(parent=program.root, depth=1), Node(parent=program.root, depth=1)
    program.root.children += [good, bad]
    program.backup(good, 0.9)
    program.backup(bad, 0.1)
    assert program.select() is good  # good has room for children: expansion happens there
    fresh = Node(parent=program.root, depth=1)
    program.root.children.append(fresh)
    assert program.select() is fresh


def test_replayed_steps_with_recorded_scores_run_end_to_end():
    source = ReplayStepSource("math-qwen25", seed=0)
    run = run_query(
        source, "mcts", {"reward_scale": "sigmoid"}, qid="math-0", scorer=ReplayScorer(), allocator=MCTS_RULE
    )
    assert run.result.answer == source.reference("math-0")
    assert run.result.exit_reason is ExitReason.CONFIDENT


def test_a_missing_scorer_is_refused_before_anything_runs():

    async def main():
        backend = SimBackend(source=steps(0, 0.5))
        runtime = Runtime(backend, allocator=rules())
        with pytest.raises(ConfigError, match="mcts needs a reward scorer"):
            await runtime.run(Query("q?", "mcts", id="q"))
        await runtime.aclose()
        return backend.engine.tokens_generated

    assert vrun(main) == 0  # no sample was drawn


def test_stopping_mid_expansion_aborts_the_rollouts():
    run = run_query(steps(0, 1.0, step_tokens=400), "mcts", {}, cancel_after=2.0)
    assert run.result.exit_reason is ExitReason.CANCELLED
    assert [r.finish_reason for r in run.records()].count("abort") >= 1


def test_bad_knobs_are_rejected():
    with pytest.raises(ValueError, match="vote"):
        make_program("mcts", {"vote": "loudest"})
    with pytest.raises(ValueError):
        make_program("mcts", {"width": 0})
