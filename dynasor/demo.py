"""The embedded default workload: self-consistency over replayed traces on the sim engine.

Queries arrive as a Poisson stream; each runs self-consistency with Certaindex early exit
under the shipped rule (the calibrated ``sc`` rule of the bundled Certaindex config, or a
config file's), sampling in rounds of the rule's round size. The same queries then run again
with a fixed budget (no early exit). The replay source draws each query's recorded samples in
one seeded order, so the early-exit run's samples are a prefix of the fixed-budget run's: the
comparison is exact.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from certaindex import answers_equal
from dynasor._query import Query, QueryResult
from dynasor.allocator import AllocatorConfig, StopRule, rule_knobs
from dynasor.clock import run as run_clock
from dynasor.engine.sim import ReplaySource, SimBackend
from dynasor.engine.traces import TraceRecord, load_traces
from dynasor.runtime import Runtime
from dynasor.sched.policy import DEFAULT_POLICY

__all__ = ["DemoOutcome", "DemoSettings", "demo_params", "demo_rules", "run_demo", "summarize"]


@dataclass(frozen=True, slots=True)
class DemoSettings:
    traces: str | Path = "math-qwen25"
    profile: str = "h100-llama3-8b"
    policy: str = DEFAULT_POLICY
    rate: float = 2.0
    """Query arrivals per second (Poisson)."""
    max_samples: int = 8
    samples_per_round: int | None = None
    """Samples per round (None: the stop rule's round size)."""
    limit: int | None = None
    seed: int = 0
    config: str | Path | None = None
    """Certaindex config file (None: the bundled rules)."""
    virtual: bool = True


@dataclass(frozen=True, slots=True)
class DemoOutcome:
    record: TraceRecord
    early: QueryResult
    baseline: QueryResult

    @property
    def early_correct(self) -> bool:
        return answers_equal(self.early.answer, self.record.reference)

    @property
    def baseline_correct(self) -> bool:
        return answers_equal(self.baseline.answer, self.record.reference)


def demo_params(settings: DemoSettings, rule: StopRule) -> dict[str, object]:
    """The self-consistency knobs of the demo: the rule's rounds and measure, the settings' budget."""
    params: dict[str, object] = {**rule_knobs("sc", rule), "max_samples": settings.max_samples}
    if settings.samples_per_round is not None:
        params["samples_per_round"] = settings.samples_per_round
    return params


async def _run_all(
    records: Sequence[TraceRecord], settings: DemoSettings, allocator: AllocatorConfig, params: dict[str, object]
) -> list[QueryResult]:
    source = ReplaySource(records, seed=settings.seed)
    arrivals = random.Random(settings.seed)
    async with SimBackend(settings.profile, source) as backend:
        runtime = Runtime(backend, policy=settings.policy, allocator=allocator)

        async def arrive(delay: float, record: TraceRecord) -> QueryResult:
            await asyncio.sleep(delay)
            return await runtime.run(Query(record.prompt, "sc", params, id=record.id))

        delays, clock = [], 0.0
        for _ in records:
            delays.append(clock)
            clock += arrivals.expovariate(settings.rate)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(arrive(d, r)) for d, r in zip(delays, records, strict=True)]
    return [t.result() for t in tasks]


def demo_rules(settings: DemoSettings) -> AllocatorConfig:
    """The stop rules of the early-exit run: the config file's, else the bundled ones."""
    return AllocatorConfig.load(settings.config) if settings.config else AllocatorConfig.bundled()


def run_demo(settings: DemoSettings) -> list[DemoOutcome]:
    """Run the workload with early exit and with a fixed budget; pair the results."""
    records = load_traces(settings.traces)[: settings.limit]
    allocator = demo_rules(settings)
    params = demo_params(settings, allocator.rule_for("sc"))
    early = run_clock(_run_all(records, settings, allocator, params), virtual=settings.virtual)
    baseline = run_clock(_run_all(records, settings, AllocatorConfig(), params), virtual=settings.virtual)
    return [DemoOutcome(r, e, b) for r, e, b in zip(records, early, baseline, strict=True)]


def _p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def summarize(outcomes: Sequence[DemoOutcome]) -> dict[str, float]:
    """Totals of both runs: accuracy, completion tokens, saving, latency."""
    n = len(outcomes)
    early_tokens = sum(o.early.usage.completion_tokens for o in outcomes)
    base_tokens = sum(o.baseline.usage.completion_tokens for o in outcomes)
    return {
        "queries": n,
        "accuracy": sum(o.early_correct for o in outcomes) / n,
        "baseline_accuracy": sum(o.baseline_correct for o in outcomes) / n,
        "tokens": early_tokens,
        "baseline_tokens": base_tokens,
        "tokens_saved": base_tokens - early_tokens,
        "saved_fraction": 1 - early_tokens / base_tokens if base_tokens else 0.0,
        "samples": sum(o.early.samples for o in outcomes),
        "baseline_samples": sum(o.baseline.samples for o in outcomes),
        "latency_mean": statistics.fmean(o.early.latency for o in outcomes),
        "baseline_latency_mean": statistics.fmean(o.baseline.latency for o in outcomes),
        "latency_p90": _p90([o.early.latency for o in outcomes]),
        "baseline_latency_p90": _p90([o.baseline.latency for o in outcomes]),
    }
