from __future__ import annotations

import json

import pytest

from algorithms.protocol import GenerateRequest
from dynasor import ConfigError
from dynasor.engine.base import EngineRequest
from eval.bench import PRESETS, WORKLOADS, Preset, Workload, load_workload


def test_paper_presets_have_the_paper_base_deadlines() -> None:
    assert PRESETS["sc-math"].base_deadline == 240.0
    assert PRESETS["mcts"].base_deadline == 60.0
    assert PRESETS["rebase"].base_deadline == 300.0
    assert set(WORKLOADS["mixed"]) == {"sc-math", "mcts", "rebase"}


def test_queries_depend_on_seed_and_index_only() -> None:
    a, b = load_workload("sc-math"), load_workload("sc-math")
    first = [a.draw(i, seed=5) for i in range(30)]
    assert [q.prompt.id for q in first] == [b.draw(i, seed=5).prompt.id for i in range(30)]
    assert [q.prompt.id for q in first] != [a.draw(i, seed=6).prompt.id for i in range(30)]
    assert len({q.id for q in first}) == 30
    assert all(q.algorithm == "sc" and q.base_deadline == 240.0 for q in first)


def test_knob_overrides_apply() -> None:
    q = load_workload("sc-math").draw(0, seed=0, params={"max_samples": 4})
    assert q.params["max_samples"] == 4
    assert q.params["samples_per_round"] == PRESETS["sc-math"].params["samples_per_round"]


def test_mixed_draws_from_every_preset() -> None:
    mixed = load_workload("mixed")
    seen = {mixed.draw(i, seed=0).preset.name for i in range(60)}
    assert seen == {"sc-math", "mcts", "rebase"}
    assert mixed.needs_scorer


def test_unavailable_algorithm_errors_clearly() -> None:
    workload = Workload("w", [Preset("x", "no-such-algorithm", {}, 10.0, "gsm8k-200", "synthetic")])
    with pytest.raises(ConfigError, match=r"no-such-algorithm.*registered: .*sc"):
        workload.check()
    load_workload("sc-math").check()


def test_replayed_samples_come_from_the_assigned_question() -> None:
    workload = load_workload("sc-math")
    source = workload.source(seed=0)
    queries = [workload.draw(i, seed=0) for i in range(5)]
    for q in queries:
        source.register(q)
    for q in queries:
        request = EngineRequest(f"{q.id}-r", q.id, GenerateRequest(q.prompt.prompt, 2048))
        drafts = [source.draft(request) for _ in range(8)]
        assert {d.meta["trace_id"] for d in drafts} == {q.prompt.id}
        # Eight draws of an eight-sample trace: each recorded sample once.
        assert sorted(d.meta["sample"] for d in drafts) == list(range(8))
        assert all(d.prompt_tokens and d.prompt_tokens > 0 for d in drafts)
        assert source.reference(q.id) == q.prompt.reference


def test_unregistered_query_is_an_error() -> None:
    source = load_workload("sc-math").source(seed=0)
    with pytest.raises(KeyError, match="not registered"):
        source.draft(EngineRequest("r", "ghost", GenerateRequest("hi", 10)))


def test_file_workloads(tmp_path) -> None:
    queries = tmp_path / "mine.jsonl"
    queries.write_text(
        "\n".join(
            json.dumps(row)
            for row in (
                {"prompt": "1+1?", "reference": "2"},
                {"prompt": "2+2?", "reference": "4", "base_deadline": 30},
                {"prompt": "3+3?", "algorithm": "sc", "params": {"max_samples": 2}, "base_deadline": 30},
            )
        )
    )
    w = load_workload(str(queries))
    assert len(w.presets) == 3
    assert sorted(p.base_deadline for p in w.presets) == [30.0, 30.0, 240.0]
    prompts = {w.draw(i, seed=0).prompt.prompt for i in range(40)}
    assert prompts == {"1+1?", "2+2?", "3+3?"}

    traces = tmp_path / "traces.jsonl"
    traces.write_text(json.dumps({"id": "t1", "prompt": "q", "reference": "7", "samples": [{"answer": "7"}]}) + "\n")
    t = load_workload(str(traces))
    assert t.presets[0].content == "replay" and t.draw(0, 0).prompt.record is not None

    with pytest.raises(ConfigError, match="Unknown workload"):
        load_workload(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"no_prompt": 1}\n')
    with pytest.raises(ConfigError, match="not a query line"):
        load_workload(str(bad))


def test_code_workload_grades_by_the_recorded_correctness_of_the_answer() -> None:
    workload = load_workload("sc-code")
    [preset] = workload.presets
    assert preset.algorithm == "sc" and preset.base_deadline == 120.0 and preset.params["max_samples"] <= 100
    assert workload.budget_notes() == []
    source = workload.source(seed=0)
    mixed = 0
    for i in range(40):
        query = workload.draw(i, seed=0)
        source.register(query)
        record = query.prompt.record
        assert record is not None and len(record.samples) == 100
        # A behaviour signature is graded as its first recorded program did on the real tests (the
        # trace set's own majority@N convention; programs with equal signatures can still differ there).
        first: dict[str, bool] = {}
        for sample in record.samples:
            if sample.answer is not None and sample.correct is not None:
                first.setdefault(sample.answer, sample.correct)
        assert {answer: source.grade(query.id, answer) for answer in first} == first
        mixed += len(set(first.values())) == 2
    assert mixed >= 5


def test_a_compressed_trace_file_is_a_workload() -> None:
    from dynasor.engine.traces import bundled_traces

    workload = load_workload(str(bundled_traces("humaneval_codet")))
    assert workload.presets[0].content == "replay" and workload.draw(0, 0).prompt.record is not None
