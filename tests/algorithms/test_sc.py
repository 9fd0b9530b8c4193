"""Self-consistency on the sim engine: gangs, budget, reports, early exit, votes, aborts."""

from __future__ import annotations

import pytest

from algorithms import make_program
from algorithms.protocol import Completion, TokenLogprob
from algorithms.sc import MEASURES
from dynasor import Budget, ExitReason, Query
from dynasor.allocator import AllocatorConfig, StopRule
from dynasor.engine.base import Backend, EngineRequest
from dynasor.engine.sim import ReplaySource, SyntheticSource
from dynasor.runtime import Runtime
from tests.algorithms.helpers import ScriptedSource, gangs, rules, run_query, vrun

SC_RULE = rules(sc=StopRule("entropy", 0.7, min_samples=4, round_size=2, abstentions="distinct"))


def synthetic(qid: str, difficulty: float, **kwargs: float) -> SyntheticSource:
    source = SyntheticSource(seed=3, **kwargs)  # type: ignore[arg-type]
    source.set_difficulty(qid, difficulty)
    return source


def test_rounds_are_gangs_and_a_report_follows_each():
    run = run_query(synthetic("q", 0.5), "sc", {"max_samples": 7, "samples_per_round": 3})
    assert gangs(run.records()) == [3, 3, 1]
    assert run.result.samples == 7 and run.result.steps == 3
    assert [r["samples"] for r in run.reports] == [3, 6, 7]


@pytest.mark.parametrize("cap", [1, 3, 5])
def test_the_sample_budget_is_respected(cap):
    run = run_query(
        synthetic("q", 0.9), "sc", {"max_samples": 8, "samples_per_round": 2}, budget=Budget(max_samples=cap)
    )
    assert run.result.samples == cap
    assert len(run.records()) == cap


def test_an_easy_query_exits_early_and_a_hard_one_does_not():
    easy = run_query(synthetic("q", 0.0), "sc", {"max_samples": 16}, allocator=SC_RULE)
    hard = run_query(synthetic("q", 1.0), "sc", {"max_samples": 16}, allocator=SC_RULE)
    assert easy.result.exit_reason is ExitReason.CONFIDENT and easy.result.samples == 4
    assert hard.result.exit_reason is ExitReason.BUDGET and hard.result.samples == 16
    assert easy.result.usage.completion_tokens < hard.result.usage.completion_tokens / 2


def test_replayed_traces_run_end_to_end():
    source = ReplaySource("math-qwen25", seed=0)
    run = run_query(source, "sc", {"max_samples": 8}, qid="math-0", allocator=SC_RULE)
    assert run.result.answer == source.reference("math-0")
    assert run.result.exit_reason is ExitReason.CONFIDENT and run.result.samples < 8


@pytest.mark.parametrize("measure", sorted(MEASURES))
def test_each_measure_is_reported_under_its_name(measure):
    run = run_query(synthetic("q", 0.3), "sc", {"max_samples": 4, "measure": measure})
    assert {r["measure"] for r in run.reports} == {measure}
    assert all(0.0 <= r["certaindex"] <= 1.0 for r in run.reports)


def test_equivalent_answers_form_one_cluster():
    script = [("so \\boxed{\\frac{1}{2}}", 10, {}), ("so \\boxed{0.5}", 10, {}), ("so \\boxed{3}", 10, {})]
    run = run_query(ScriptedSource(script), "sc", {"max_samples": 3, "samples_per_round": 3})
    assert run.result.answer == "\\frac{1}{2}"
    assert run.reports[-1]["certaindex"] == pytest.approx(1 - (2 / 3 * 0.405465 + 1 / 3 * 1.098612) / 1.098612, 1e-4)


def test_reward_vote_overrules_the_plain_majority():
    script = [("\\boxed{1}", 10, {"score": 0.1})] * 3 + [("\\boxed{2}", 10, {"score": 0.9})] * 2
    plain = run_query(ScriptedSource(script), "sc", {"max_samples": 5, "samples_per_round": 5})
    weighted = run_query(ScriptedSource(script), "sc", {"max_samples": 5, "samples_per_round": 5, "vote": "reward"})
    assert plain.result.answer == "1"
    assert weighted.result.answer == "2"


def test_stopping_mid_round_aborts_the_round():
    run = run_query(synthetic("q", 1.0, min_tokens=2000, max_tokens=2000), "sc", {"max_samples": 8}, cancel_after=3.0)
    assert run.result.exit_reason is ExitReason.CANCELLED
    aborted = [r for r in run.records() if r.finish_reason == "abort"]
    assert len(aborted) == 2  # the whole gang in flight
    assert all(0 < r.completion_tokens < 2000 for r in aborted)


def test_bad_knobs_are_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="entropy"):
        make_program("sc", {"measure": "vibes"})
    with pytest.raises(ValueError, match="confidence"):
        make_program("sc", {"vote": "loudest"})


class LogprobBackend(Backend):
    """Answers from ``script`` in order, each token with the given logprob."""

    def __init__(self, script: list[tuple[str, float]]) -> None:
        self.script = script
        self.requests: list[EngineRequest] = []

    async def generate(self, request: EngineRequest) -> Completion:
        text, logprob = self.script[len(self.requests) % len(self.script)]
        self.requests.append(request)
        return Completion(text, 5, 3, "stop", logprobs=(TokenLogprob("t", logprob),) * 3)


@pytest.mark.parametrize(("vote", "expected"), [("majority", "1"), ("confidence", "2")])
def test_confidence_vote_weighs_samples_by_their_token_probabilities(vote, expected):
    backend = LogprobBackend([("\\boxed{1}", -3.0)] * 3 + [("\\boxed{2}", -0.1)] * 2)

    async def main():
        runtime = Runtime(backend, allocator=AllocatorConfig({}))
        result = await runtime.run(Query("q?", "sc", {"max_samples": 5, "samples_per_round": 5, "vote": vote}, id="q"))
        await runtime.aclose()
        return result

    assert vrun(main).answer == expected
    assert all(r.request.logprobs == (1 if vote == "confidence" else None) for r in backend.requests)
