from __future__ import annotations

import json

from algorithms.protocol import GenerateRequest
from dynasor.engine.base import EngineRequest
from eval.bench import PointSpec, RunConfig, load_workload, run_points


def test_recorded_samples_replay_as_the_same_questions(tmp_path) -> None:
    path = tmp_path / "recorded.jsonl"
    workload = load_workload("sc-math")
    params = {"max_samples": 4, "samples_per_round": 2}
    config = RunConfig(workload, duration=20.0, seed=2, params=params, record_traces=str(path))
    [run] = run_points(config, [PointSpec("fcfs", 1.0, 1.0, early_exit=False)])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["id"] for r in rows} == {o.id for o in run.outcomes}
    assert all(len(r["samples"]) == 4 for r in rows)  # fcfs without early exit: the whole budget
    tokens = {r["id"]: sum(s["tokens"] for s in r["samples"]) for r in rows}
    assert tokens == {o.id: o.completion_tokens for o in run.outcomes}

    # A second run merges its samples into the same questions.
    run_points(config, [PointSpec("fcfs", 1.0, 1.0, early_exit=False)])
    again = {json.loads(line)["id"]: json.loads(line) for line in path.read_text().splitlines()}
    assert all(len(r["samples"]) == 8 for r in again.values())

    # The twin: query i asks the recorded question and gets the recorded texts back.
    twin = workload.with_recorded(path)
    source = twin.source(seed=2)
    query = twin.draw(0, seed=2, params=params)
    source.register(query)
    request = EngineRequest("r", query.id, GenerateRequest(query.prompt.prompt, 2048))
    recorded_texts = {s["text"] for s in again[query.id]["samples"]}
    assert source.draft(request).text in recorded_texts
    assert source.reference(query.id) == again[query.id]["reference"]
