"""The gang scheduler: atomic gangs, strict policy order, capacity, withdrawal."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algorithms.protocol import Completion, GenerateRequest
from dynasor import EngineError
from dynasor.clock import run
from dynasor.engine.base import Capacity, EngineRequest
from dynasor.sched import Gang, GangScheduler, QueryStats, make_policy
from tests.dynasor.fakes import FakeBackend


def make_gang(name: str, size: int, submitted: float = 0.0, arrival: float = 0.0) -> Gang:
    return Gang(QueryStats(name, arrival=arrival), [GenerateRequest(name, 8)] * size, submitted, [10] * size)


def test_head_that_does_not_fit_blocks_the_rest() -> None:
    sched = GangScheduler(FakeBackend(), make_policy("query-fcfs"), Capacity(max_seqs=4), clock=lambda: 0.0)
    running = make_gang("running", 3, arrival=0)
    big = make_gang("big", 2, arrival=1)
    small = make_gang("small", 1, arrival=2)
    for g in (running, big, small):
        sched.submit(g)
    first = sched.schedule()
    assert first.gangs == (running,)
    assert sched.running_seqs == 3
    # "small" would fit, but "big" is ahead of it in policy order and does not.
    assert sched.schedule().gangs == ()
    assert big.dispatched is None and small.dispatched is None


def test_oversized_gang_runs_alone() -> None:
    sched = GangScheduler(FakeBackend(), make_policy("query-fcfs"), Capacity(max_seqs=2), clock=lambda: 0.0)
    huge = make_gang("huge", 5)
    sched.submit(huge)
    assert sched.schedule().gangs == (huge,)
    sched.submit(make_gang("next", 1, arrival=1))
    assert sched.schedule().gangs == ()


def test_withdrawn_gang_is_skipped() -> None:
    sched = GangScheduler(FakeBackend(), make_policy("query-fcfs"), Capacity(max_seqs=2), clock=lambda: 0.0)
    a, b = make_gang("a", 1, arrival=0), make_gang("b", 1, arrival=1)
    sched.submit(a)
    sched.submit(b)
    sched.withdraw(a)
    assert len(sched) == 1
    assert sched.schedule().gangs == (b,)
    assert a.dispatched is None


def test_kv_capacity_is_respected() -> None:
    sched = GangScheduler(FakeBackend(), make_policy("query-fcfs"), Capacity(8, max_kv_tokens=25), clock=lambda: 0.0)
    a, b = make_gang("a", 2, arrival=0), make_gang("b", 1, arrival=1)  # 20 and 10 KV tokens
    sched.submit(a)
    sched.submit(b)
    assert sched.schedule().gangs == (a,)


def test_priorities_follow_dispatch_order() -> None:
    sched = GangScheduler(FakeBackend(), make_policy("las"), Capacity(max_seqs=8), clock=lambda: 0.0)
    heavy = Gang(QueryStats("h", 0.0, attained_tokens=900), [GenerateRequest("h", 8)], 0.0, [1])
    light = Gang(QueryStats("l", 5.0, attained_tokens=10), [GenerateRequest("l", 8)], 0.0, [1])
    sched.submit(heavy)
    sched.submit(light)
    sched.schedule()
    assert light.priority < heavy.priority


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=25),
    max_seqs=st.integers(1, 8),
    policy=st.sampled_from(["query-fcfs", "las", "dynasor"]),
    durations=st.lists(st.floats(0.1, 5.0), min_size=1, max_size=10),
)
def test_gangs_are_never_half_dispatched(sizes: list[int], max_seqs: int, policy: str, durations: list[float]) -> None:
    """Every request of a gang starts at the same instant; capacity holds except for a lone big gang."""
    backend = FakeBackend(duration=lambda r: durations[int(r.id.rsplit("-", 1)[1]) % len(durations)])
    sched = GangScheduler(backend, make_policy(policy), Capacity(max_seqs=max_seqs))
    starts: dict[int, set[float]] = defaultdict(set)
    over_capacity: list[int] = []

    async def query(i: int, size: int) -> None:
        await asyncio.sleep(i * 0.3)
        stats = QueryStats(f"q{i}", asyncio.get_running_loop().time())

        def dispatched(gang: Gang) -> None:
            if sched.running_seqs > max_seqs and sched.running_seqs != len(gang.requests):
                over_capacity.append(i)

        for _ in range(2):
            before = len(backend.calls)
            await sched.run_gang(stats, [GenerateRequest(f"q{i}", 8)] * size, on_dispatch=dispatched)
            starts[i * 10 + _] = {c.started for c in backend.calls[before:] if c.request.query_id == f"q{i}"}

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            for i, size in enumerate(sizes):
                tg.create_task(query(i, size))

    run(main())
    assert over_capacity == []
    assert all(len(s) == 1 for s in starts.values())
    assert sched.running_seqs == 0 and len(sched) == 0


def test_cancelling_a_waiting_gang_withdraws_it() -> None:
    backend = FakeBackend(duration=lambda r: 10.0)
    sched = GangScheduler(backend, make_policy("query-fcfs"), Capacity(max_seqs=1))

    async def main() -> None:
        first = asyncio.create_task(sched.run_gang(QueryStats("a", 0.0), [GenerateRequest("a", 8)]))
        await asyncio.sleep(0)
        second = asyncio.create_task(sched.run_gang(QueryStats("b", 1.0), [GenerateRequest("b", 8)]))
        await asyncio.sleep(1)
        assert len(sched) == 1
        second.cancel()
        await asyncio.sleep(0)
        assert len(sched) == 0
        await first

    run(main())
    assert [c.request.query_id for c in backend.calls] == ["a"]


def test_withdrawing_the_blocking_head_lets_the_next_gang_run() -> None:
    backend = FakeBackend(duration=lambda r: 100.0 if r.query_id == "long" else 1.0)
    sched = GangScheduler(backend, make_policy("query-fcfs"), Capacity(max_seqs=4))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        long = asyncio.create_task(sched.run_gang(QueryStats("long", 0.0), [GenerateRequest("l", 8)] * 2))
        await asyncio.sleep(0)
        big = asyncio.create_task(sched.run_gang(QueryStats("big", 1.0), [GenerateRequest("b", 8)] * 4))
        await asyncio.sleep(0)
        small = asyncio.create_task(sched.run_gang(QueryStats("small", 2.0), [GenerateRequest("s", 8)] * 2))
        await asyncio.sleep(1)
        big.cancel()  # the head that blocked "small" leaves
        await small
        finished = loop.time()
        await long
        return finished

    assert run(main()) == pytest.approx(2.0)


def test_split_gangs_surface_the_engine_error_itself() -> None:
    def fail(request: object) -> float:
        raise EngineError("boom", status=500)

    sched = GangScheduler(FakeBackend(duration=fail), make_policy("fcfs"), Capacity(max_seqs=8))

    async def main() -> None:
        await sched.run_gang(QueryStats("q", 0.0), [GenerateRequest("x", 8)] * 3)

    with pytest.raises(EngineError, match="boom"):
        run(main())


@pytest.mark.parametrize("policy", ["fcfs", "query-fcfs"])
def test_a_cancelled_gang_aborts_its_requests_in_order_whatever_the_task_set_order(monkeypatch, policy) -> None:
    # A task group cancels its children in the order of a set of tasks, which follows memory
    # addresses: a simulated run would then depend on the process it ran in (``--jobs``).
    def abort_newest_first(self: asyncio.TaskGroup) -> None:
        self._aborting = True  # type: ignore[attr-defined]
        for task in sorted(self._tasks, key=lambda t: int(t.get_name().rpartition("-")[2]), reverse=True):  # type: ignore[attr-defined]
            if not task.done():
                task.cancel()

    monkeypatch.setattr(asyncio.TaskGroup, "_abort", abort_newest_first)
    aborted: list[str] = []

    class Recording(FakeBackend):
        async def generate(self, request: EngineRequest) -> Completion:
            try:
                return await super().generate(request)
            except asyncio.CancelledError:
                aborted.append(str(request.request.prompt))
                raise

    sched = GangScheduler(Recording(duration=lambda r: 10.0), make_policy(policy), Capacity(max_seqs=8))
    prompts = [f"r{i}" for i in range(6)]

    async def main() -> None:
        gang = asyncio.create_task(sched.run_gang(QueryStats("q", 0.0), [GenerateRequest(p, 8) for p in prompts]))
        await asyncio.sleep(1)
        gang.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gang

    run(main())
    assert aborted == prompts
    assert sched.running_seqs == 0


@pytest.mark.parametrize("aging", [0.0, 50.0])
def test_aging_lets_a_long_query_finish_under_a_steady_stream_of_short_ones(aging: float) -> None:
    # One sequence at a time; a short query (one 50-token request, 0.5 s) arrives every 0.4 s, so
    # short work always waits. The long query (2 x 1000 tokens predicted) ranks behind every
    # short one until it has waited (2000 - 50) / aging seconds.
    backend = FakeBackend(duration=lambda r: 5.0 if r.query_id == "long" else 0.5)
    sched = GangScheduler(backend, make_policy(f"dynasor:aging={aging}"), Capacity(max_seqs=1))
    horizon = 200.0

    async def main() -> float | None:
        loop = asyncio.get_running_loop()

        async def short(i: int) -> None:
            await asyncio.sleep(0.4 * i)
            stats = QueryStats(f"s{i}", loop.time(), max_samples=1)
            await sched.run_gang(stats, [GenerateRequest("short", 50)])

        async def long() -> float:
            stats = QueryStats("long", loop.time(), max_samples=2)
            await sched.run_gang(stats, [GenerateRequest("long", 1000)] * 2)
            return loop.time()

        shorts = [asyncio.create_task(short(i)) for i in range(int(horizon / 0.4))]
        await asyncio.sleep(0.25)  # a short query is running: the long one has to queue
        waiting = asyncio.create_task(long())
        try:
            return await asyncio.wait_for(waiting, horizon)
        except TimeoutError:
            return None
        finally:
            for task in shorts:
                task.cancel()
            await asyncio.gather(*shorts, return_exceptions=True)

    finished = run(main())
    if aging == 0:
        assert finished is None  # pure shortest-first starves it
    else:
        assert finished is not None and finished < 0.25 + (2000 - 50) / aging + 20


def test_dynasor_gives_up_on_a_gang_that_cannot_make_its_deadline() -> None:
    def gang(name: str, deadline: float | None, arrival: float) -> Gang:
        stats = QueryStats(name, arrival=arrival, deadline=deadline, max_samples=2, prior_request_tokens=100.0)
        return Gang(stats, [GenerateRequest(name, 500)] * 2, arrival, [10, 10])

    # At 0.02 s a token, a 100-token request takes 2 s: "late" has 1 s left, "timely" 10 s.
    late, timely, free = gang("late", 1.0, 0.0), gang("timely", 10.0, 1.0), gang("free", None, 2.0)
    for policy, dispatched in (("dynasor", (timely, free)), ("dynasor:give_up=0", (late, timely, free))):
        sched = GangScheduler(FakeBackend(), make_policy(policy), Capacity(max_seqs=8), clock=lambda: 0.0)
        sched.token_time = 0.02
        for g in (late, timely, free):
            g.dispatched, g.withdrawn = None, False
            sched.submit(g)
        assert sched.schedule().gangs == dispatched
        assert sched.given_up == 3 - len(dispatched) and len(sched) == 0
    plain = GangScheduler(FakeBackend(), make_policy("query-fcfs"), Capacity(max_seqs=8), clock=lambda: 0.0)
    plain.token_time = 0.02
    late.dispatched = None
    plain.submit(late)
    assert plain.schedule().gangs == (late,)  # plain policies never give up
