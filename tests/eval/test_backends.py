"""``--backend sim`` and ``replay:``: the content fits the program, as the online benchmark gives it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynasor import ConfigError
from dynasor.engine.sim import (
    ReplayChainSource,
    ReplaySource,
    ReplayStepSource,
    SimBackend,
    SyntheticChainSource,
    SyntheticSource,
    SyntheticStepSource,
)
from eval import EvalConfig, parse_backend, run_eval
from eval.bench import PRESETS


@pytest.mark.parametrize(
    ("algorithm", "synthetic", "replayed"),
    [
        ("sc", SyntheticSource, ReplaySource),
        ("bon", SyntheticSource, ReplaySource),
        ("cot", SyntheticChainSource, ReplayChainSource),
        ("mcts", SyntheticStepSource, ReplayStepSource),
        ("rebase", SyntheticStepSource, ReplayStepSource),
    ],
)
def test_the_simulated_content_is_the_kind_the_program_reads(algorithm: str, synthetic: type, replayed: type) -> None:
    sim = parse_backend("sim", algorithm=algorithm).make()
    assert isinstance(sim, SimBackend) and type(sim.source) is synthetic
    replay = parse_backend("replay:math-qwen25", algorithm=algorithm).make()
    assert isinstance(replay, SimBackend) and type(replay.source) is replayed
    assert type(parse_backend("sim", algorithm=algorithm).synthetic) is synthetic


def test_the_benchmark_and_eval_draw_the_same_content_for_cot() -> None:
    assert PRESETS["cot"].content == "chain"
    assert type(parse_backend("sim", algorithm="cot").make().source) is SyntheticChainSource  # type: ignore[attr-defined]


def test_an_algorithm_without_simulated_content_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"no content model for algorithm 'my-loop'.*chain for cot"):
        parse_backend("sim", algorithm="my-loop")
    parse_backend("http://127.0.0.1:1", algorithm="my-loop")  # a real engine runs anything


def test_cot_over_the_simulated_engine_continues_its_chain(tmp_path: Path) -> None:
    config = EvalConfig(dataset="math500", algorithm="cot", backend="sim", limit=12, out=tmp_path)
    run_eval(config)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    # The chain is one text continued chunk by chunk (no sample glued onto another), whose
    # answer is graded against the question the synthetic chain answers.
    assert all("Let us" not in row["output"] for row in rows)
    assert all(row["reference"] is not None for row in rows)
    assert all(row["tokens"] <= 4096 + 6 * row["samples"] for row in rows)
    assert sum(row["correct"] for row in rows) >= 4
    assert {row["exit_reason"] for row in rows} & {"confident", "completed"}
