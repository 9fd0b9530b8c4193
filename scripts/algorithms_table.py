"""Tokens and accuracy of each reasoning program with and without early exit.

Every workload is a replay of recorded traces or a simulation, and each printed line says
which. Runs in virtual time on the simulated engine (cost profile ``h100-llama3-8b``; the
profile changes latencies only, not tokens or accuracy), one query at a time, deterministic
for ``--seed``.

    python scripts/algorithms_table.py            # Markdown lines, as in docs/algorithms.md
    python scripts/algorithms_table.py --queries 50 --seed 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from certaindex import answers_equal
from dynasor import Query
from dynasor.allocator import AllocatorConfig, StopRule
from dynasor.clock import run
from dynasor.engine.base import Scorer
from dynasor.engine.sim import (
    ReplayChainSource,
    ReplaySource,
    ReplayStepSource,
    SimBackend,
    Source,
    SyntheticChainSource,
    SyntheticStepSource,
)
from dynasor.engine.traces import load_traces
from dynasor.runtime import Runtime
from dynasor.scorers import ReplayScorer, SyntheticScorer

PROFILE = "h100-llama3-8b"
TRACES = "math-qwen25"


@dataclass(frozen=True)
class Workload:
    algorithm: str
    label: str
    """How the figures were obtained (replay or simulated, and of what)."""
    source: Callable[[int], Source]
    scorer: Callable[[], Scorer]
    params: dict[str, Any]
    """Knobs with early exit."""
    baseline: dict[str, Any]
    """Knob changes for the run without early exit."""
    rule: StopRule | None
    rule_text: str


@dataclass
class Outcome:
    tokens: int = 0
    correct: int = 0
    queries: int = 0


def workloads() -> list[Workload]:
    replay_scorer = lambda: ReplayScorer()  # noqa: E731
    synthetic_scorer = lambda: SyntheticScorer(seed=0)  # noqa: E731
    sigmoid = {"reward_scale": "sigmoid"}  # the trace's reward model gives logits
    return [
        Workload(
            "sc",
            f"replay, {TRACES} traces, up to 8 samples in rounds of 2",
            lambda seed: ReplaySource(TRACES, seed=seed),
            synthetic_scorer,
            {"max_samples": 8, "samples_per_round": 2},
            {},
            StopRule("entropy", 0.7, min_samples=4, round_size=2, abstentions="distinct"),
            "entropy >= 0.7 from round 2",
        ),
        Workload(
            "bon",
            f"replay, {TRACES} traces with their recorded reward-model scores, up to 8 samples in rounds of 2",
            lambda seed: ReplaySource(TRACES, seed=seed),
            replay_scorer,
            {"max_samples": 8, "samples_per_round": 2, **sigmoid},
            {},
            StopRule("reward_max", 0.98),
            "best sigmoid(reward) >= 0.98",
        ),
        Workload(
            "cot",
            "simulated chains (synthetic source, 400-4000 tokens), probe every 64 tokens",
            lambda seed: SyntheticChainSource(seed=seed),
            synthetic_scorer,
            {"window": 3, "chunk_tokens": 64, "max_tokens": 8192},
            {"probes": False},
            StopRule("probe", 1.0),
            "3 agreeing probes (preset mid)",
        ),
        Workload(
            "cot",
            f"replay, {TRACES} chains (one sample per query), probes derived from the recorded text",
            lambda seed: ReplayChainSource(TRACES, seed=seed),
            synthetic_scorer,
            {"window": 3, "chunk_tokens": 64, "max_tokens": 8192},
            {"probes": False},
            StopRule("probe", 1.0),
            "3 agreeing probes every 64 tokens (preset mid)",
        ),
        Workload(
            "mcts",
            "simulated step trees (synthetic source, synthetic process rewards), 6 iterations x 4 rollouts",
            lambda seed: SyntheticStepSource(seed=seed),
            synthetic_scorer,
            {"iterations": 6, "width": 4},
            {},
            StopRule("mcts", 0.6, min_samples=5),
            "tree certaindex >= 0.6 past the first expansion",
        ),
        Workload(
            "mcts",
            f"replay, {TRACES} samples spliced at blank lines, recorded rewards, 6 iterations x 4 rollouts",
            lambda seed: ReplayStepSource(TRACES, seed=seed),
            replay_scorer,
            {"iterations": 6, "width": 4, **sigmoid},
            {},
            StopRule("mcts", 0.6, min_samples=5),
            "tree certaindex >= 0.6 past the first expansion",
        ),
        Workload(
            "rebase",
            "simulated step trees (synthetic source, synthetic process rewards), width 8",
            lambda seed: SyntheticStepSource(seed=seed),
            synthetic_scorer,
            {"width": 8},
            {},
            StopRule("rebase", 0.8, min_samples=9),
            "tree certaindex >= 0.8 past the first depth",
        ),
    ]


async def measure(workload: Workload, queries: list[str], seed: int, early: bool) -> Outcome:
    source = workload.source(seed)
    rules = {workload.algorithm: workload.rule} if early and workload.rule is not None else {}
    runtime = Runtime(SimBackend(PROFILE, source), allocator=AllocatorConfig(rules), scorer=workload.scorer())
    params = workload.params if early else {**workload.params, **workload.baseline}
    outcome = Outcome()
    for qid in queries:
        prompt = f"Question {qid}"
        result = await runtime.run(Query(prompt, workload.algorithm, params, id=qid))
        reference = source.reference(qid)
        outcome.tokens += result.usage.completion_tokens
        outcome.correct += int(reference is not None and answers_equal(result.answer, reference))
        outcome.queries += 1
    await runtime.aclose()
    return outcome


def line(workload: Workload, base: Outcome, early: Outcome) -> str:
    saved = 1 - early.tokens / base.tokens if base.tokens else 0.0
    return (
        f"- **{workload.algorithm}** ({workload.label}; {base.queries} queries): "
        f"without early exit {base.tokens / base.queries:,.0f} tokens/query, "
        f"{100 * base.correct / base.queries:.1f}% correct; "
        f"with early exit ({workload.rule_text}) {early.tokens / early.queries:,.0f} tokens/query "
        f"({100 * abs(saved):.0f}% {'fewer' if saved >= 0 else 'more'}), "
        f"{100 * early.correct / early.queries:.1f}% correct."
    )


async def main(n: int, seed: int) -> None:
    trace_ids = [r.id for r in load_traces(TRACES)][:n]
    synthetic_ids = [f"s{i}" for i in range(n)]
    for workload in workloads():
        replay = "replay" in workload.label
        queries = trace_ids if replay else synthetic_ids
        start = time.perf_counter()
        base = await measure(workload, queries, seed, early=False)
        early = await measure(workload, queries, seed, early=True)
        print(line(workload, base, early), flush=True)
        print(f"  <!-- {time.perf_counter() - start:.1f} s wall, seed {seed}, profile {PROFILE} -->", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=100, help="queries per workload (at most 100 for replay)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(main(args.queries, args.seed))
