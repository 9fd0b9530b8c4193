"""The runtime end to end on the sim engine and a scripted backend, in virtual time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from algorithms.protocol import Context, GenerateRequest, Program
from certaindex import Certainty
from dynasor import Budget, ConfigError, EngineError, ExitReason, Query, QueryResult, QueueFull
from dynasor.allocator import AllocatorConfig, StopRule
from dynasor.clock import run
from dynasor.engine.base import Capacity
from dynasor.engine.sim import CostProfile, FixedSource, ReplaySource, SimBackend, SyntheticSource
from dynasor.runtime import Runtime
from tests.dynasor.fakes import FakeBackend

SC_STOP = AllocatorConfig({"sc": StopRule("entropy", 0.7, min_samples=4, round_size=2, abstentions="distinct")})
NO_STOP = AllocatorConfig()
PROFILE = CostProfile("test", 0.01, 0.001, 1e-6, 1e-5, max_num_seqs=64, kv_tokens=1_000_000)


@dataclass
class Scripted(Program):
    """Reports the given certaindex series, one gang of ``width`` per step."""

    series: list[float]
    width: int = 2
    max_tokens: int = 100
    seen: list[int] = field(default_factory=list)

    async def run(self, ctx: Context) -> None:
        for value in self.series:
            done = await ctx.gather([GenerateRequest("q", self.max_tokens)] * self.width)
            self.seen.append(len(done))
            ctx.report(Certainty(value, "entropy"))

    def answer(self) -> str | None:
        return "42" if self.seen else None


def check_usage(result: QueryResult) -> None:
    assert result.usage.completion_tokens == sum(r.completion_tokens for r in result.requests)
    assert result.usage.prompt_tokens == sum(r.prompt_tokens for r in result.requests)
    assert result.samples == sum(r.finish_reason not in ("abort", "error") for r in result.requests)


def replay_runtime(policy: str = "dynasor", allocator: AllocatorConfig = SC_STOP, seed: int = 0) -> Runtime:
    return Runtime(SimBackend(PROFILE, ReplaySource("math-qwen25", seed=seed)), policy=policy, allocator=allocator)


def test_sc_on_replay_stops_confident_and_usage_adds_up() -> None:
    async def main() -> list[QueryResult]:
        runtime = replay_runtime()
        ids = [f"math-{i}" for i in range(20)]
        results = await asyncio.gather(*(runtime.run(Query("", "sc", {"max_samples": 8}, id=i)) for i in ids))
        await runtime.aclose()
        return results

    results = run(main())
    reasons = {r.exit_reason for r in results}
    assert ExitReason.CONFIDENT in reasons
    for r in results:
        check_usage(r)
        assert r.samples <= 8 and r.samples % 2 == 0
        assert [p.step for p in r.trajectory] == list(range(1, r.steps + 1))
        if r.exit_reason is ExitReason.CONFIDENT:
            assert r.certaindex is not None and r.certaindex >= 0.7 and r.steps >= 2
            assert r.usage.tokens_saved and r.usage.tokens_saved > 0


def test_fixed_budget_runs_every_sample() -> None:
    async def main() -> QueryResult:
        runtime = replay_runtime(allocator=NO_STOP)
        result = await runtime.run(Query("", "sc", {"max_samples": 8}, id="math-3"))
        await runtime.aclose()
        return result

    result = run(main())
    assert (result.exit_reason, result.samples, result.steps) == (ExitReason.BUDGET, 8, 4)


def test_same_seed_same_results() -> None:
    def once(seed: int) -> list[dict[str, object]]:
        async def main() -> list[QueryResult]:
            runtime = Runtime(SimBackend(PROFILE, SyntheticSource(seed=seed)), allocator=SC_STOP)

            async def arrive(i: int) -> QueryResult:
                await asyncio.sleep(i * 0.05)
                return await runtime.run(Query("p", "sc", {"max_samples": 16}, id=f"q{i}"))

            results = await asyncio.gather(*(arrive(i) for i in range(40)))
            await runtime.aclose()
            return results

        return [r.to_dict(requests=True) for r in run(main())]

    assert once(7) == once(7)
    assert once(7) != once(8)


def test_stop_aborts_in_flight_sub_requests() -> None:
    @dataclass
    class ProbeWhileDecoding(Program):
        """A long gang in the background; a short step reports certainty 1 meanwhile."""

        async def run(self, ctx: Context) -> None:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(ctx.gather([GenerateRequest("long", 10_000, tag="long")] * 3))
                await ctx.generate(GenerateRequest("short", 50, tag="short"))
                ctx.report(Certainty(1.0, "entropy"))

        def answer(self) -> str | None:
            return "7"

    async def main() -> tuple[QueryResult, int, int]:
        backend = SimBackend(PROFILE, FixedSource(5000))
        runtime = Runtime(backend, allocator=AllocatorConfig({"p": StopRule("entropy", 0.5)}))
        result = await runtime.run(Query("x", "p"), ProbeWhileDecoding())
        after_stop = backend.engine.tokens_generated
        await asyncio.sleep(100)  # the engine would have finished the long requests by now
        return result, after_stop, backend.engine.tokens_generated

    result, after_stop, later = run(main())
    assert result.exit_reason is ExitReason.CONFIDENT and result.answer == "7"
    assert later == after_stop  # aborted requests generate nothing afterwards
    long = [r for r in result.requests if r.tag == "long"]
    assert [r.finish_reason for r in long] == ["abort"] * 3
    assert all(0 < r.completion_tokens < 5000 for r in long)
    check_usage(result)


@dataclass
class BusyProgram(Program):
    """Keeps the engine busy: a long gang running, another waiting for room, short steps reporting."""

    certainty: float

    async def run(self, ctx: Context) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ctx.gather([GenerateRequest("long", 10_000, tag="long")] * 2))
            tg.create_task(ctx.gather([GenerateRequest("queued", 10_000, tag="queued")] * 2))
            while True:
                await ctx.generate(GenerateRequest("short", 50, tag="short"))
                ctx.report(Certainty(self.certainty, "entropy"))

    def answer(self) -> str | None:
        return "7"


@pytest.mark.parametrize("how", ["confident", "budget", "deadline", "cancel by id", "caller cancels"])
def test_nothing_outlives_a_stopped_query(how: str) -> None:
    """However a query stops, its tasks have ended and the engine holds none of its requests."""

    async def main() -> tuple[QueryResult | None, set[str], int, tuple[int, int], Runtime]:
        backend = SimBackend(PROFILE, FixedSource(5000))
        # Room for the long gang and one short request: the second long gang waits in the queue.
        runtime = Runtime(backend, allocator=AllocatorConfig({"p": StopRule("entropy", 0.5)}), capacity=Capacity(3))
        query = Query(
            "x",
            "p",
            budget=Budget(max_steps=3) if how == "budget" else Budget(),
            deadline=3.0 if how == "deadline" else None,
            id="q",
        )
        task = asyncio.create_task(runtime.run(query, BusyProgram(1.0 if how == "confident" else 0.0)))
        await asyncio.sleep(0.2)
        assert runtime.scheduler.running_seqs == 3 and len(runtime.scheduler) == 1  # all three kinds in flight
        await asyncio.sleep(2.0)
        if how == "cancel by id":
            runtime.cancel("q")
        elif how == "caller cancels":
            task.cancel()
        result: QueryResult | None = None
        try:
            result = await task
        except asyncio.CancelledError:
            assert how == "caller cancels"
        others = {t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        engine = backend.engine
        return (
            result,
            others,
            engine.running + engine.waiting,
            (runtime.scheduler.running_seqs, len(runtime.scheduler)),
            runtime,
        )

    result, others, in_engine, in_scheduler, runtime = run(main())
    assert others <= {"sim-engine"}  # the engine's own loop; no task of the query
    assert in_engine == 0 and in_scheduler == (0, 0) and runtime.active == 0
    if result is not None:
        expected = {"confident": "confident", "budget": "budget", "deadline": "deadline"}.get(how, "cancelled")
        assert result.exit_reason == expected
        long = [r for r in result.requests if r.tag == "long"]
        assert [r.finish_reason for r in long] == ["abort"] * 2
        assert not any(r.tag == "queued" for r in result.requests)  # withdrawn before it ran
        check_usage(result)


def test_budget_caps_trim_gangs() -> None:
    async def main() -> tuple[QueryResult, QueryResult]:
        runtime = Runtime(FakeBackend(), allocator=NO_STOP)
        by_samples = await runtime.run(Query("x", "s", budget=Budget(max_samples=5)), Scripted([0.1] * 10, width=2))
        by_tokens = await runtime.run(
            Query("x", "s", budget=Budget(max_tokens=35)), Scripted([0.1] * 10, width=2, max_tokens=100)
        )
        return by_samples, by_tokens

    by_samples, by_tokens = run(main())
    assert by_samples.samples == 5 and by_samples.exit_reason is ExitReason.BUDGET
    assert by_tokens.usage.completion_tokens <= 35 + 10  # the fake backend ignores max_tokens: one gang over
    assert by_tokens.exit_reason is ExitReason.BUDGET


def test_deadline_ends_the_query_with_best_answer() -> None:
    async def main() -> QueryResult:
        runtime = Runtime(FakeBackend(duration=lambda r: 3.0), allocator=NO_STOP)
        return await runtime.run(Query("x", "s", deadline=7.0), Scripted([0.1] * 10))

    result = run(main())
    assert result.exit_reason is ExitReason.DEADLINE
    assert result.answer == "42" and result.latency <= 7.0 + 1e-9


def test_hopeless_stop() -> None:
    config = AllocatorConfig({"s": StopRule("entropy", 0.9, hopeless_threshold=0.2, hopeless_after=4)})

    async def main() -> QueryResult:
        return await Runtime(FakeBackend(), allocator=config).run(Query("x", "s"), Scripted([0.1, 0.1, 0.1]))

    result = run(main())
    assert (result.exit_reason, result.steps) == (ExitReason.HOPELESS, 2)


def test_engine_error_keeps_best_answer() -> None:
    calls = 0

    def flaky(request: object) -> float:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise EngineError("upstream 500", status=500)
        return 1.0

    async def main() -> QueryResult:
        return await Runtime(FakeBackend(duration=flaky), allocator=NO_STOP).run(Query("x", "s"), Scripted([0.1] * 3))

    result = run(main())
    assert result.exit_reason is ExitReason.ERROR and "upstream 500" in (result.error or "")
    assert result.answer == "42"


def test_cancel_by_id_and_by_caller() -> None:
    async def main() -> tuple[QueryResult, list[bool]]:
        backend = FakeBackend(duration=lambda r: 10.0)
        runtime = Runtime(backend, allocator=NO_STOP)
        task = asyncio.create_task(runtime.run(Query("x", "s", id="a"), Scripted([0.1] * 3)))
        await asyncio.sleep(1)
        assert runtime.cancel("a") and not runtime.cancel("zzz")
        by_id = await task
        caller = asyncio.create_task(runtime.run(Query("x", "s", id="b"), Scripted([0.1] * 3)))
        await asyncio.sleep(1)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert runtime.active == 0
        return by_id, [c.cancelled for c in backend.calls]

    by_id, cancelled = run(main())
    assert by_id.exit_reason is ExitReason.CANCELLED
    assert cancelled == [True] * 4


def test_admission_limits_and_bad_algorithms() -> None:
    async def main() -> None:
        runtime = Runtime(FakeBackend(duration=lambda r: 5.0), max_active=1)
        first = asyncio.create_task(runtime.run(Query("x", "s"), Scripted([0.1])))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await runtime.run(Query("x", "s"), Scripted([0.1]))
        await first
        with pytest.raises(ConfigError, match="Unknown algorithm"):
            await runtime.run(Query("x", "nope"))
        with pytest.raises(ConfigError, match="Unknown parameter"):
            await runtime.run(Query("x", "sc", {"samples": 3}))

    run(main())


def test_queue_time_counts_waiting_for_capacity() -> None:
    async def main() -> list[QueryResult]:
        runtime = Runtime(
            FakeBackend(duration=lambda r: 2.0), policy="query-fcfs", allocator=NO_STOP, capacity=Capacity(max_seqs=2)
        )
        return await asyncio.gather(*(runtime.run(Query("x", "s", id=f"q{i}"), Scripted([0.1])) for i in range(2)))

    first, second = run(main())
    assert first.queue_time == pytest.approx(0.0)
    assert second.queue_time == pytest.approx(2.0)
    assert second.run_time == pytest.approx(2.0)


def test_aging_bounds_the_wait_of_a_long_query() -> None:
    """Short queries keep arriving; the long one still finishes under dynasor, not under pure SJF."""

    def long_query_latency(aging: float) -> float | None:
        async def main() -> float | None:
            from dynasor.sched import DynasorPolicy

            runtime = Runtime(
                FakeBackend(duration=lambda r: 1.0),
                policy=DynasorPolicy(aging=aging),
                allocator=NO_STOP,
                capacity=Capacity(max_seqs=1),
            )
            long_query = Query("x", "s", id="long", budget=Budget(max_samples=20))
            long = asyncio.create_task(runtime.run(long_query, Scripted([0.0] * 20, width=1)))

            arrivals: set[asyncio.Task[QueryResult]] = set()

            async def shorts() -> None:
                for i in range(400):
                    short = Query("x", "s", id=f"s{i}", budget=Budget(max_samples=1))
                    arrivals.add(asyncio.create_task(runtime.run(short, Scripted([0.0], width=1))))
                    await asyncio.sleep(0.9)  # arrivals outpace what one slot can serve

            feeder = asyncio.create_task(shorts())
            done, _ = await asyncio.wait({long}, timeout=300)
            feeder.cancel()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()
            return long.result().latency if done else None

        return run(main())

    with_aging = long_query_latency(aging=50.0)
    assert with_aging is not None and with_aging < 120
    assert long_query_latency(aging=0.0) is None


def test_deadline_guard_ignores_the_wait_before_dispatch() -> None:
    """A query that queued for most of its deadline still runs steps that fit in what is left."""

    async def main() -> QueryResult:
        guard = AllocatorConfig({"s": StopRule()}, deadline_guard=True)
        backend = FakeBackend(duration=lambda r: 30.0 if r.query_id == "first" else 1.0)
        runtime = Runtime(backend, policy="query-fcfs", allocator=guard, capacity=Capacity(max_seqs=1))
        blocker = asyncio.create_task(runtime.run(Query("x", "s", id="first"), Scripted([0.0], width=1)))
        await asyncio.sleep(0.1)
        late = await runtime.run(Query("x", "s", id="late", deadline=40.0), Scripted([0.0] * 5, width=1))
        await blocker
        return late

    late = run(main())
    assert late.queue_time == pytest.approx(29.9)
    assert late.steps == 5 and late.exit_reason is ExitReason.COMPLETED


def test_demotion_still_honours_the_step_cap() -> None:
    config = AllocatorConfig(
        {"s": StopRule("entropy", 0.9, hopeless_threshold=0.5, hopeless_after=1, hopeless_action="demote")}
    )

    async def main() -> QueryResult:
        runtime = Runtime(FakeBackend(), allocator=config)
        return await runtime.run(Query("x", "s", budget=Budget(max_steps=1)), Scripted([0.1] * 5))

    result = run(main())
    assert (result.steps, result.exit_reason) == (1, ExitReason.BUDGET)
