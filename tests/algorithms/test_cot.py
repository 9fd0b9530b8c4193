"""Dynasor-CoT on the sim engine: probes run alongside chunks, agreeing probes stop the chain."""

from __future__ import annotations

import pytest

from algorithms import make_program
from dynasor import AllocatorConfig, Budget, ExitReason
from dynasor.allocator import StopRule
from dynasor.engine.sim import ReplayChainSource, SyntheticChainSource
from tests.algorithms.helpers import rules, run_query

COT_RULE = rules(cot=StopRule(measure="probe", threshold=1.0))


def chain(qid: str, difficulty: float) -> SyntheticChainSource:
    source = SyntheticChainSource(seed=5, min_tokens=1200, max_tokens=3600)
    source.set_difficulty(qid, difficulty)
    return source


def chain_tokens(source: SyntheticChainSource, qid: str) -> int:
    return next(c.tokens for q, c in source._chains.items() if q == qid)


# Dynasor-CoT's saving-effort levels as (window N, chunk tokens T), as in its reference code; they
# live in the presets file, the one place thresholds and presets live.
REFERENCE_LEVELS = {"mild": (8, 64), "low": (5, 64), "mid": (3, 64), "high": (2, 64), "crazy": (2, 32)}


@pytest.mark.parametrize(("level", "expected"), sorted(REFERENCE_LEVELS.items()))
def test_effort_levels_set_window_and_chunk(level, expected):
    knobs = AllocatorConfig.bundled().knobs_for_effort("cot", level)
    assert knobs is not None
    program = make_program("cot", knobs)
    assert (program.window, program.chunk_tokens) == expected


def test_the_program_holds_no_levels_of_its_own():
    with pytest.raises(ValueError, match="preset"):
        make_program("cot", {"preset": "mid"})


def test_an_easy_chain_exits_early_with_a_closed_answer_block():
    source = chain("q", 0.0)
    run = run_query(source, "cot", {"think_open": "<think>\n"}, allocator=COT_RULE)
    result = run.result
    assert result.exit_reason is ExitReason.CONFIDENT
    assert result.answer == source.reference("q")
    assert result.usage.completion_tokens < chain_tokens(source, "q") / 2
    assert result.output.startswith("<think>\n")
    assert result.output.endswith(f"</think>\n\n**Final Answer**\n\\[ \\boxed{{{result.answer}}} \\]")


def test_a_hard_chain_is_decoded_to_its_end():
    source = chain("q", 1.0)
    run = run_query(source, "cot", {"max_tokens": 8192}, allocator=COT_RULE)
    assert run.result.exit_reason is ExitReason.COMPLETED
    decoded = sum(r.completion_tokens for r in run.records("chunk"))
    assert decoded == chain_tokens(source, "q")
    assert f"\\boxed{{{run.result.answer}}}" in run.result.output


def test_a_report_follows_every_probe_and_probes_stay_short():
    run = run_query(chain("q", 0.6), "cot", {"chunk_tokens": 64, "probe_tokens": 20})
    probes = run.records("probe")
    assert len(run.reports) == len(probes) > 3
    assert all(r.completion_tokens <= 20 for r in probes)
    assert all(r.completion_tokens == 64 for r in run.records("chunk")[:-1])


def test_each_probe_runs_concurrently_with_the_next_chunk():
    run = run_query(chain("q", 0.6), "cot", {"early_exit": False})
    chunks = sorted(run.records("chunk"), key=lambda r: r.submitted)
    probes = sorted(run.records("probe"), key=lambda r: r.submitted)
    for i, probe in enumerate(probes):
        nxt = chunks[i + 1]
        assert probe.submitted == nxt.submitted  # started together
        assert probe.dispatched < nxt.finished and nxt.dispatched < probe.finished  # and overlapping


def test_probing_costs_little_wall_time():
    probed = run_query(chain("q", 0.6), "cot", {"early_exit": False}).result
    plain = run_query(chain("q", 0.6), "cot", {"probes": False}).result
    assert probed.usage.completion_tokens > plain.usage.completion_tokens  # the probes were decoded
    # Sequential probing would add about 20 decode steps to every 64-token chunk (+30%).
    assert probed.finished - probed.arrival < 1.15 * (plain.finished - plain.arrival)


def test_an_agreeing_probe_aborts_the_chunk_in_flight():
    run = run_query(chain("q", 0.0), "cot", {}, allocator=COT_RULE)
    chunks = sorted(run.records("chunk"), key=lambda r: r.submitted)
    assert chunks[-1].finish_reason == "abort"
    assert all(c.finish_reason != "abort" for c in chunks[:-1])


def test_the_program_exits_on_its_own_without_a_stop_rule():
    source = chain("q", 0.0)
    run = run_query(source, "cot", {})
    assert run.result.exit_reason is ExitReason.COMPLETED
    assert run.result.answer == source.reference("q")
    assert run.result.usage.completion_tokens < chain_tokens(source, "q") / 2


def test_the_token_budget_caps_the_chain():
    run = run_query(chain("q", 1.0), "cot", {"max_tokens": 300, "probes": False})
    assert sum(r.completion_tokens for r in run.records("chunk")) == 300
    capped = run_query(chain("q", 1.0), "cot", {"max_tokens": 8192}, budget=Budget(max_tokens=500))
    assert capped.result.usage.completion_tokens <= 500


def test_replayed_chains_run_end_to_end():
    source = ReplayChainSource("math-qwen25", seed=0)
    run = run_query(source, "cot", {"chunk_tokens": 32, "window": 2}, qid="math-0", allocator=COT_RULE)
    assert run.result.answer is not None
    assert run.result.exit_reason in (ExitReason.CONFIDENT, ExitReason.COMPLETED)
    assert len(run.reports) == len(run.records("probe")) >= 1


def test_a_chain_out_of_budget_is_answered_by_a_last_probe():
    run = run_query(chain("q", 1.0), "cot", {"max_tokens": 320})
    chunks, probes = run.records("chunk"), run.records("probe")
    assert sum(r.completion_tokens for r in chunks) == 320
    assert len(probes) == len(chunks) == 5
    assert max(p.submitted for p in probes) > max(c.finished for c in chunks) - 1e-9  # after the last chunk
    assert run.result.answer == run.events[-1]["answer"] is not None
    assert run.result.output.endswith(f"\\boxed{{{run.result.answer}}} \\]")
