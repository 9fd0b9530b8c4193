"""Run one benchmark point: a workload at one rate, one SLO scale, under one policy.

The same coroutine drives the simulated engine in virtual time (``looptime``: an hour of
traffic in seconds of wall time, deterministic for a seed) and a live engine in real time
(``upstream`` set: the OpenAI-compatible backend). Queries are launched at their arrival
times with a deadline of ``slo_scale * base_deadline``; the runtime cuts a query at its
deadline for every policy (its best answer so far is kept, and the miss is counted), so
that no policy spends capacity on queries that have already missed.

Early exit (Certaindex stopping) is a switch of its own (``RunConfig.early_exit``): by default
(``"both"``) a benchmark runs every policy with and without it, the 2x2 ablation that separates
what scheduling and early exit each contribute; ``"all"`` gives it to every policy (scheduling
alone is compared), ``"none"`` to none, and policy names to those only (``"dynasor"``: the
paper's comparison of the full system against plain schedulers). Early exit means the stop
rules everyone else uses (the allocator's bundled defaults, or ``RunConfig.allocator``) plus
the program's own early exit; without it a program runs its full budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from certaindex import canonical_key
from dynasor import Budget, ConfigError, ExitReason, Query, QueryResult, clock
from dynasor.allocator import AllocatorConfig
from dynasor.engine.base import Backend, Capacity, Scorer
from dynasor.runtime import Runtime
from dynasor.sched import policy_name
from eval.bench._arrivals import Arrivals, PoissonArrivals
from eval.bench._metrics import QueryOutcome
from eval.bench._record import RecordingBackend, merge_traces
from eval.bench._workloads import Workload, WorkloadQuery

if TYPE_CHECKING:
    from eval.bench._failure import ReplicaFailure
    from eval.bench._fleet import Fleet

__all__ = ["EARLY_EXIT_CHOICES", "PointRun", "PointSpec", "RunConfig", "arm_label", "run_point", "run_points"]

# Slack when comparing a finish time with its deadline: the runtime's timeout fires at the
# deadline itself, and a query that finished exactly then did not miss it.
_DEADLINE_EPS = 1e-6

EARLY_EXIT_CHOICES = ("both", "all", "none")
"""``RunConfig.early_exit`` values besides policy names: every policy with and without, with, without."""

# Sequences the scheduler keeps in flight on a live engine unless told otherwise.
_LIVE_MAX_SEQS = 16


def arm_label(policy: str, early_exit: bool) -> str:
    """How an arm (a policy, with or without early exit) is named in results: ``fcfs``, ``dynasor+exit``."""
    return f"{policy}+exit" if early_exit else policy


@dataclass(frozen=True)
class RunConfig:
    """Everything shared by the points of one benchmark."""

    workload: Workload
    duration: float = 3600.0
    """Seconds of measured arrivals: the queries scored are those arriving in ``[0, duration)``."""
    keep_load: bool = True
    """Arrivals go on after ``duration`` (unscored) until every scored query has finished, so no scored
    query is served by an engine that has stopped receiving work. False: the run drains, and a rate
    above what the engine sustains still passes when the backlog clears within a deadline."""
    seed: int = 0
    arrivals: Arrivals = field(default_factory=PoissonArrivals)
    engine_profile: str = "h100-llama3-8b"
    upstream: str | None = None
    """Base URL of a live engine; None: the simulated engine in virtual time."""
    model: str | None = None
    """Served model name on the live engine (None: the first it lists)."""
    max_seqs: int | None = None
    """Sequences the scheduler keeps in flight (None: the engine's own limit; 16 on a live engine).
    Below the engine's limit, gangs wait in the scheduler, where the policy orders them."""
    prefix_caching: bool = True
    """The simulated engine's automatic prefix caching (on, as in vLLM)."""
    early_exit: str = "both"
    """Who gets Certaindex early exit: ``both`` (every policy with and without: the ablation),
    ``all``, ``none``, or policies by name, comma-separated."""
    allocator: AllocatorConfig | None = None
    """Stop rules where early exit applies (None: the bundled defaults)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Knob overrides for every query's algorithm."""
    request_timeout: float = 600.0
    record_traces: str | None = None
    """Write every completed sample to this trace file (replay it with ``Workload.with_recorded``)."""
    replicas: int | None = None
    """Simulated engines behind the proxy's upstream pool (one scheduler over their summed capacity,
    query affinity, least loaded first; ``eval.bench._fleet``); ``max_seqs`` then caps the sum.
    None: one engine without a pool, as before."""
    replica_failure: ReplicaFailure | None = None
    """One replica goes down for good at a time into the run (with ``replicas``)."""
    memory_step: int = 0
    """With ``replicas``: sample this process's RSS each time the queries in flight reach a new
    multiple of this many (0: no sampling)."""

    @property
    def mode(self) -> str:
        return "real engine" if self.upstream else "simulated"

    def early_exit_for(self, policy: str) -> bool:
        """Whether ``policy`` (a name, or a spec with knobs) runs with early exit; with ``both``
        a benchmark runs it both ways, and a single point without its own switch runs with it."""
        if self.early_exit in EARLY_EXIT_CHOICES:
            return self.early_exit != "none"
        return policy_name(policy) in {name.strip() for name in self.early_exit.split(",")}

    def arms(self, policies: Sequence[str]) -> list[tuple[str, bool]]:
        """``(policy, early exit)`` pairs a benchmark of ``policies`` runs, in order."""
        if self.early_exit == "both":
            return [(policy, early) for policy in policies for early in (False, True)]
        return [(policy, self.early_exit_for(policy)) for policy in policies]


@dataclass(frozen=True)
class PointSpec:
    policy: str
    rate: float
    slo_scale: float
    early_exit: bool | None = None
    """Whether this point runs with early exit (None: as ``RunConfig.early_exit`` says for the policy)."""

    def early_exit_in(self, config: RunConfig) -> bool:
        return config.early_exit_for(self.policy) if self.early_exit is None else self.early_exit

    @property
    def arm(self) -> str:
        return arm_label(self.policy, bool(self.early_exit))


@dataclass
class PointRun:
    """What one point produced: per-query outcomes plus engine counters."""

    spec: PointSpec
    outcomes: list[QueryOutcome]
    wall_s: float
    loop_s: float
    engine: dict[str, float] = field(default_factory=dict)
    fleet: Fleet | None = field(default=None, repr=False)
    """The replicas and their pool, when the point ran on several (``RunConfig.replicas``)."""


def _allocator_for(early_exit: bool, config: RunConfig) -> AllocatorConfig:
    if early_exit:
        return config.allocator or AllocatorConfig.bundled()
    # No early stop and no deadline guard: the baseline runs its full budget.
    return AllocatorConfig(deadline_guard=False)


def _backend(config: RunConfig) -> tuple[Backend, Scorer | None, Capacity | None, Any]:
    if config.upstream:
        from dynasor.engine.openai import OpenAIBackend

        backend = OpenAIBackend(config.upstream, config.model, read_timeout=config.request_timeout, seed=config.seed)
        return backend, None, Capacity(max_seqs=config.max_seqs or _LIVE_MAX_SEQS), None
    from dynasor.engine.sim import SimBackend
    from dynasor.scorers import SyntheticScorer

    source = config.workload.source(config.seed)
    # The engine keeps its profile's limits; the scheduler may keep fewer sequences in flight.
    sim = SimBackend(config.engine_profile, source, seed=config.seed, prefix_caching=config.prefix_caching)
    engine = sim.capacity()
    capacity = None if config.max_seqs is None else replace(engine, max_seqs=config.max_seqs)
    # Reward programs read the simulated reward the source drafted with each completion.
    scorer = SyntheticScorer(seed=config.seed)
    return sim, scorer, capacity, source


def _fleet(config: RunConfig) -> Fleet:
    from eval.bench._fleet import Fleet

    if config.upstream:
        raise ConfigError("replicas are simulated engines; drop --upstream (a live proxy takes repeated --upstream)")
    return Fleet(
        config.engine_profile,
        config.workload.source(config.seed),
        config.replicas or 1,
        seed=config.seed,
        prefix_caching=config.prefix_caching,
        failure=config.replica_failure,
        rss_step=config.memory_step,
    )


def _is_correct(answer: str | None, reference: str | None) -> bool | None:
    if reference is None:
        return None
    if answer is None:
        return False
    return canonical_key(answer) == canonical_key(reference)


async def run_point(config: RunConfig, spec: PointSpec) -> PointRun:
    """Send the workload's queries at their arrival times and collect every outcome."""
    config.workload.check()
    if config.upstream and config.workload.needs_scorer:
        raise ConfigError(
            f"workload {config.workload.name!r} needs a reward model, and a live-engine run has none "
            "configured: use sc-math or cot with --upstream"
        )
    loop = asyncio.get_running_loop()
    wall0, start = time.perf_counter(), loop.time()
    horizon = config.duration
    if config.keep_load:
        horizon += spec.slo_scale * max(p.base_deadline for p in config.workload.presets)
    times = config.arrivals.times(spec.rate, horizon, config.seed)
    scored = int((times < config.duration).sum())
    fleet: Fleet | None = None
    if config.replicas is None:
        backend, scorer, capacity, source = _backend(config)
    else:
        fleet = _fleet(config)
        backend, scorer, capacity, source = fleet.backend, fleet.scorer, fleet.capacity(config.max_seqs), fleet.source
    recorder = None
    if config.record_traces:
        backend = recorder = RecordingBackend(backend)
    early = spec.early_exit_in(config)
    runtime = Runtime(
        backend, policy=spec.policy, allocator=_allocator_for(early, config), capacity=capacity, scorer=scorer
    )
    queries = [config.workload.draw(i, config.seed, config.params, early_exit=early) for i in range(len(times))]
    outcomes: list[QueryOutcome] = []
    load: list[asyncio.Task[None]] = []

    async def one(query: WorkloadQuery, at: float, index: int) -> None:
        await asyncio.sleep(max(0.0, start + at - loop.time()))
        if source is not None:
            source.register(query)
        deadline = spec.slo_scale * query.base_deadline
        run = runtime.run(Query(query.prompt.prompt, query.algorithm, query.params, Budget(), deadline, id=query.id))
        result = await (run if fleet is None else fleet.serve(query.id, run))
        if source is not None:
            correct = source.grade(query.id, result.answer)
        else:
            correct = _is_correct(result.answer, query.prompt.reference)
        if index < scored:
            outcomes.append(_outcome(query, result, deadline, correct, start))
            if len(outcomes) == scored:
                for task in load:  # the scored queries are done: the load after them is not needed
                    task.cancel()

    try:
        if fleet is not None:
            await fleet.start()
        async with asyncio.TaskGroup() as tg:
            for index, (query, at) in enumerate(zip(queries, times, strict=True)):
                task = tg.create_task(one(query, float(at), index))
                if index >= scored:
                    load.append(task)
    finally:
        if fleet is not None:
            await fleet.stop()
        engine = fleet.counters() if fleet is not None else _engine_counters(recorder.inner if recorder else backend)
        await runtime.aclose()
        if recorder is not None and config.record_traces:
            asked = {q.id: q for q in queries}
            merge_traces(
                config.record_traces,
                {
                    qid: {
                        "prompt": asked[qid].prompt.prompt,
                        "reference": asked[qid].prompt.reference,
                        "samples": samples,
                    }
                    for qid, samples in recorder.samples.items()
                },
            )
    outcomes.sort(key=lambda o: o.arrival)
    return PointRun(spec, outcomes, time.perf_counter() - wall0, loop.time() - start, engine, fleet)


def _outcome(
    query: WorkloadQuery, result: QueryResult, deadline: float, correct: bool | None, start: float
) -> QueryOutcome:
    missed = result.exit_reason in (ExitReason.DEADLINE, ExitReason.ERROR)
    return QueryOutcome(
        id=query.id,
        preset=query.preset.name,
        arrival=result.arrival - start,
        latency=result.latency,
        deadline=deadline,
        attained=not missed and result.latency <= deadline + _DEADLINE_EPS,
        correct=correct,
        completion_tokens=result.usage.completion_tokens,
        samples=result.samples,
        queue_time=result.queue_time,
        exit_reason=str(result.exit_reason),
    )


def _engine_counters(backend: Backend) -> dict[str, float]:
    engine = getattr(backend, "engine", None)
    if engine is None:
        return {}
    source = getattr(backend, "source", None)
    return {
        "samples_replayed_twice": float(getattr(source, "replayed_twice", 0)),
        "tokens_generated": float(engine.tokens_generated),
        "prompt_tokens_prefilled": float(engine.prompt_tokens_prefilled),
        "prefix_hit_tokens": float(engine.prefix_hit_tokens),
        "busy_time_s": float(engine.busy_time),
        "preemptions": float(engine.preemptions),
    }


def run_points(
    config: RunConfig,
    specs: Sequence[PointSpec],
    *,
    on_point: Callable[[PointRun], None] | None = None,
) -> list[PointRun]:
    """Run points one after another, each on a fresh engine and event loop.

    Simulated runs use a virtual clock starting at 0, so a point's figures depend only on
    the config and the point, never on wall time or on the points before it.
    """
    runs = []
    for spec in specs:
        run = clock.run(run_point(config, spec), virtual=not config.upstream)
        runs.append(run)
        if on_point is not None:
            on_point(run)
    return runs
