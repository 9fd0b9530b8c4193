"""The upstream pool: least loaded, sticky per query, failing replicas out and back."""

from __future__ import annotations

import pytest

from algorithms.protocol import Completion, GenerateRequest
from dynasor import EngineError, EngineUnavailable
from dynasor.engine.base import Backend, Capacity, EngineRequest
from dynasor.server.upstreams import NoHealthyUpstream, PooledBackend, Replica, UpstreamPool


class FakeBackend(Backend):
    def __init__(self, name: str, *, fail: type[Exception] | None = None, seqs: int | None = 4) -> None:
        self.model = name
        self.fail = fail
        self.seen: list[str] = []
        self.seqs = seqs

    def capacity(self) -> Capacity | None:
        return None if self.seqs is None else Capacity(self.seqs, 1000)

    async def generate(self, request: EngineRequest) -> Completion:
        self.seen.append(request.query_id)
        if self.fail is not None:
            raise self.fail(f"{self.model} is down")
        if request.request.on_text is not None:
            request.request.on_text(f"text from {self.model}")
        return Completion(f"text from {self.model}", 3, 5, "stop")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pool_of(*backends: Backend, clock: Clock | None = None) -> UpstreamPool:
    return UpstreamPool(
        [Replica(f"http://r{i}", b) for i, b in enumerate(backends)], retry_s=10.0, clock=clock or Clock()
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
