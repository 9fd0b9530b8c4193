"""The upstream pool: least loaded, sticky per query, failing replicas out and back."""

from __future__ import annotations

import asyncio

import pytest

from algorithms.protocol import Completion, GenerateRequest
from dynasor import EngineError, EngineUnavailable, StreamBroken
from dynasor.engine.base import Backend, Capacity, EngineRequest
from dynasor.server.upstreams import HealthMonitor, NoHealthyUpstream, PooledBackend, Replica, UpstreamPool


class FakeBackend(Backend):
    def __init__(
        self, name: str, *, fail: type[Exception] | None = None, seqs: int | None = 4, status: int | None = None
    ) -> None:
        self.model = name
        self.fail = fail
        self.status = status
        self.healthy = True
        self.seen: list[str] = []
        self.seqs = seqs

    async def check_health(self) -> None:
        if not self.healthy:
            raise EngineUnavailable(f"{self.model} health check failed")

    def capacity(self) -> Capacity | None:
        return None if self.seqs is None else Capacity(self.seqs, 1000)

    async def generate(self, request: EngineRequest) -> Completion:
        self.seen.append(request.query_id)
        if self.fail is EngineUnavailable:
            raise EngineUnavailable(f"{self.model} is down", status=self.status)
        if self.fail is not None:
            raise self.fail(f"{self.model} is down")
        if request.request.on_text is not None:
            request.request.on_text(f"text from {self.model}")
        return Completion(f"text from {self.model}", 3, 5, "stop")


class CrashingBackend(FakeBackend):
    """Streams a few tokens of every request, then the connection breaks."""

    async def generate(self, request: EngineRequest) -> Completion:
        self.seen.append(request.query_id)
        request.meter.completion_tokens = 7
        raise StreamBroken(f"stream from {self.model} broke after 3 chunks", chunks=3)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pool_of(*backends: Backend, clock: Clock | None = None, eject_after: int = 3) -> UpstreamPool:
    return UpstreamPool(
        [Replica(f"http://r{i}", b) for i, b in enumerate(backends)],
        retry_s=10.0,
        eject_after=eject_after,
        clock=clock or Clock(),
    )


def req(query: str, tag: str = "sample") -> EngineRequest:
    return EngineRequest(f"{query}-r", query, GenerateRequest("p", max_tokens=4, tag=tag))


def test_new_queries_go_to_the_least_loaded_replica():
    pool = pool_of(FakeBackend("a"), FakeBackend("b"), FakeBackend("c"))
    pool.replicas[0].inflight = 2
    order = [pool.bind(f"q{i}").url for i in range(5)]
    # r0 starts with load 2: r1, r2 take the first two, then the three share evenly.
    assert order[:2] == ["http://r1", "http://r2"]
    loads = [r.load for r in pool.replicas]
    assert max(loads) - min(loads) <= 1
    pool.release("q0")
    pool.release("q0")  # releasing twice is harmless
    assert sum(r.queries for r in pool.replicas) == 4


async def test_sub_requests_of_a_query_stick_to_one_replica():
    a, b = FakeBackend("a"), FakeBackend("b")
    backend = PooledBackend(pool_of(a, b))
    backend.pool.bind("q1")
    backend.pool.bind("q2")
    for _ in range(3):
        await backend.generate(req("q1"))
        await backend.generate(req("q2"))
    assert (a.seen, b.seen) == (["q1"] * 3, ["q2"] * 3)


async def test_failing_replica_is_taken_out_and_query_moves():
    clock = Clock()
    down, up = FakeBackend("a", fail=EngineUnavailable), FakeBackend("b")
    backend = PooledBackend(pool_of(down, up, clock=clock))
    backend.pool.bind("q")  # least loaded: the first replica
    completion = await backend.generate(req("q"))
    assert completion.text == "text from b"
    assert not backend.pool.replicas[0].up(clock.now)
    await backend.generate(req("q"))
    assert down.seen == ["q"]  # not asked again while out
    clock.now = 10.0  # the pause is over: tried again
    assert backend.pool.replicas[0].up(clock.now)
    assert backend.pool.pick() is backend.pool.replicas[0]


async def test_all_replicas_down_raises_the_engine_error_then_no_healthy_upstream():
    clock = Clock()
    backend = PooledBackend(pool_of(FakeBackend("a", fail=EngineUnavailable), clock=clock))
    with pytest.raises(EngineUnavailable, match="a is down"):
        await backend.generate(req("q"))
    clock.now = 4.0
    with pytest.raises(NoHealthyUpstream) as info:
        backend.pool.pick()
    assert info.value.retry_after == pytest.approx(6.0)


async def test_other_engine_errors_do_not_take_a_replica_out():
    backend = PooledBackend(pool_of(FakeBackend("a", fail=EngineError), FakeBackend("b")))
    with pytest.raises(EngineError):
        await backend.generate(req("q"))
    assert all(r.up(0.0) for r in backend.pool.replicas)


async def test_taps_see_text_of_the_tapped_query_only():
    backend = PooledBackend(pool_of(FakeBackend("a")))
    seen: list[tuple[str, str]] = []
    backend.taps["q1"] = lambda r, text: seen.append((r.query_id, text))
    await backend.generate(req("q1"))
    await backend.generate(req("q2"))
    assert seen == [("q1", "text from a")]


def test_capacity_sums_known_replicas():
    assert PooledBackend(pool_of(FakeBackend("a"), FakeBackend("b"))).capacity() == Capacity(8, 2000)
    assert PooledBackend(pool_of(FakeBackend("a"), FakeBackend("b", seqs=None))).capacity() is None


async def test_a_replica_answering_errors_is_taken_out_only_after_repeated_failures():
    clock = Clock()
    bad, good = FakeBackend("a", fail=EngineUnavailable, status=500), FakeBackend("b")
    backend = PooledBackend(pool_of(bad, good, clock=clock, eject_after=3))
    pool = backend.pool
    for i in range(2):
        pool.bind(f"q{i}")  # r0 is least loaded for the first
        pool.release(f"q{i}")
        completion = await backend.generate(req(f"q{i}"))
        assert completion.text == "text from b"  # moved over for this query
        assert pool.replicas[0].up(clock.now), "taken out after a single failure"
    pool.replicas[1].queries += 10  # make r0 the least loaded again
    await backend.generate(req("q3"))
    assert not pool.replicas[0].up(clock.now)
    assert pool.replicas[0].down_reason == "failing" and pool.replicas[0].failures == 3


async def test_the_last_replica_is_never_taken_out_for_answering_errors():
    clock = Clock()
    backend = PooledBackend(pool_of(FakeBackend("a", fail=EngineUnavailable, status=500), clock=clock, eject_after=1))
    for i in range(5):
        with pytest.raises(EngineUnavailable, match="a is down"):
            await backend.generate(req(f"q{i}"))
    replica = backend.pool.replicas[0]
    assert replica.up(clock.now) and replica.failures == 5
    assert backend.pool.pick() is replica  # still serving other clients


async def test_probes_take_an_unreachable_replica_out_and_bring_it_back():
    clock = Clock()
    a, b = FakeBackend("a"), FakeBackend("b")
    pool = pool_of(a, b, clock=clock)
    monitor = HealthMonitor(pool, interval_s=1.0)
    a.healthy = False
    await monitor.probe_all()
    assert [r.up(clock.now) for r in pool.replicas] == [False, True]
    assert pool.replicas[0].last_error == "a health check failed"
    a.healthy = True
    await monitor.probe_all()  # back at once, not after retry_s
    assert [r.up(clock.now) for r in pool.replicas] == [True, True]


async def test_a_probe_does_not_end_a_pause_for_failing():
    clock = Clock()
    pool = pool_of(FakeBackend("a"), FakeBackend("b"), clock=clock, eject_after=1)
    assert pool.mark_failed(pool.replicas[0], "HTTP 500")
    await HealthMonitor(pool, interval_s=1.0).probe_all()  # /health is fine, requests are not
    assert not pool.replicas[0].up(clock.now)
    clock.now = 10.0
    assert pool.replicas[0].up(clock.now)


async def test_monitor_probes_in_the_background_until_closed():
    a = FakeBackend("a")
    pool = pool_of(a)
    monitor = HealthMonitor(pool, interval_s=0.01)
    async with monitor.running():
        assert monitor.probes == 1  # one round before serving starts
        a.healthy = False
        for _ in range(200):
            if not pool.replicas[0].up(pool.clock()):
                break
            await asyncio.sleep(0.01)
        assert not pool.replicas[0].up(pool.clock())
    rounds = monitor.probes
    await asyncio.sleep(0.05)
    assert monitor.probes == rounds  # stopped with the block


async def test_logprobs_are_asked_for_the_queries_that_need_them():
    seen: list[int | None] = []

    class Recording(FakeBackend):
        async def generate(self, request: EngineRequest) -> Completion:
            seen.append(request.request.logprobs)
            return await super().generate(request)

    backend = PooledBackend(pool_of(Recording("a")))
    backend.logprobs["q1"] = 0
    await backend.generate(req("q1"))
    await backend.generate(req("q2"))
    assert seen == [0, None]


async def test_a_stream_broken_part_way_starts_again_on_another_replica():
    clock = Clock()
    crashing, alive = CrashingBackend("a"), FakeBackend("b")
    backend = PooledBackend(pool_of(crashing, alive, clock=clock))
    backend.pool.bind("q")
    request = req("q")
    completion = await backend.generate(request)
    assert completion.text == "text from b" and (crashing.seen, alive.seen) == (["q"], ["q"])
    broken = backend.pool.replicas[0]
    assert (broken.resent, broken.tokens_lost) == (1, 7)
    assert request.meter.completion_tokens == 0  # the lost stream's tokens are not the new one's
    assert broken.down_reason == "unreachable" and backend.pool.replica_for("q") is backend.pool.replicas[1]


async def test_a_broken_stream_whose_text_was_relayed_is_not_sent_again():
    crashing, alive = CrashingBackend("a"), FakeBackend("b")
    backend = PooledBackend(pool_of(crashing, alive))
    backend.pool.bind("q")
    backend.taps["q"] = lambda r, text: None
    with pytest.raises(StreamBroken, match="broke after 3 chunks"):
        await backend.generate(req("q"))
    assert alive.seen == [] and backend.pool.replicas[0].resent == 0
    assert backend.pool.replicas[0].down_reason == "unreachable"  # it did break, though


async def test_a_broken_stream_with_no_replica_left_raises_it():
    backend = PooledBackend(pool_of(CrashingBackend("a")))
    with pytest.raises(StreamBroken):
        await backend.generate(req("q"))
    assert (backend.pool.replicas[0].resent, backend.pool.replicas[0].tokens_lost) == (0, 7)


def test_the_requests_of_a_gang_move_to_one_replica():
    pool = pool_of(FakeBackend("a"), FakeBackend("b"), FakeBackend("c"))
    failed, first, other = pool.replicas
    assert pool.bind("q") is failed
    assert pool.rebind("q", exclude=[failed]) is first
    first.inflight = 5  # now the most loaded, yet the gang's next failed request joins it there
    assert pool.rebind("q", exclude=[failed]) is first and first.queries == 1
    assert pool.rebind("q", exclude=[failed, first]) is other  # unless that one failed it too
    assert [r.queries for r in pool.replicas] == [0, 0, 1]
