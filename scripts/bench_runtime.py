"""Benchmark the runtime's hot paths; prints figures, asserts nothing.

1. Gang scheduler cost per dispatch with 1k / 10k / 100k sub-requests queued: each
   operation submits one gang and dispatches one (the queue stays full), for every policy.
2. Simulated tokens per wall second: (a) the sim engine alone, (b) the whole runtime
   (self-consistency queries, scheduler, allocator) on the sim engine, in virtual time.

    python scripts/bench_runtime.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from algorithms.protocol import GenerateRequest
from dynasor import Query
from dynasor.allocator import AllocatorConfig
from dynasor.clock import run
from dynasor.engine.base import Capacity
from dynasor.engine.sim import SimBackend, SimEngine, SyntheticSource, load_profile
from dynasor.runtime import Runtime
from dynasor.sched import POLICIES, Gang, GangScheduler, QueryStats, make_policy

REQUEST = GenerateRequest("benchmark prompt", 512)


def dispatch_cost(policy_name: str, queued: int, operations: int) -> float:
    """Microseconds per submit + dispatch with ``queued`` requests waiting."""
    rng = random.Random(0)
    scheduler = GangScheduler(SimBackend(), make_policy(policy_name), Capacity(max_seqs=1), clock=lambda: 0.0)
    queries = [QueryStats(f"q{i}", rng.random() * 100, max_samples=rng.randint(1, 64)) for i in range(1000)]

    def new_gang() -> Gang:
        query = rng.choice(queries)
        query.attained_tokens = rng.randint(0, 10_000)
        query.certaindex = rng.random()
        return Gang(query, [REQUEST], rng.random() * 100, [600])

    scheduler.running_seqs = 1  # full: submissions queue up
    for _ in range(queued):
        scheduler.submit(new_gang())
    gangs = [new_gang() for _ in range(operations)]
    start = time.perf_counter()
    for gang in gangs:
        scheduler.submit(gang)
        scheduler.running_seqs = 0  # one slot frees ...
        scheduler.schedule()  # ... and exactly one gang is dispatched into it
    elapsed = time.perf_counter() - start
    assert len(scheduler) == queued
    return elapsed / operations * 1e6


async def engine_alone(sequences: int) -> int:
    engine = SimEngine(load_profile("h100-llama3-8b"))
    rng = random.Random(0)

    async def one(i: int) -> None:
        await asyncio.sleep(i * 0.01)
        await engine.run(200, rng.randint(100, 2000))

    async with asyncio.TaskGroup() as group:
        for i in range(sequences):
            group.create_task(one(i))
    await engine.aclose()
    return engine.tokens_generated


async def whole_runtime(queries: int) -> tuple[int, float]:
    backend = SimBackend("h100-llama3-8b", SyntheticSource(seed=0))
    config = AllocatorConfig.bundled()
    runtime = Runtime(backend, policy="dynasor", allocator=config)

    async def one(i: int) -> None:
        await asyncio.sleep(i * 0.25)
        await runtime.run(Query("q", "sc", {"max_samples": 16, "samples_per_round": 4}, id=f"q{i}"))

    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.TaskGroup() as group:
        for i in range(queries):
            group.create_task(one(i))
    await runtime.aclose()
    return backend.engine.tokens_generated, loop.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    print("Gang scheduler: microseconds per submit + dispatch (one request per gang)")
    print(f"{'policy':>12} " + " ".join(f"{n:>10,}" for n in sizes))
    for name in POLICIES:
        cells = [dispatch_cost(name, n, 20_000) for n in sizes]
        print(f"{name:>12} " + " ".join(f"{c:>10.2f}" for c in cells))

    sequences = 2_000 if args.quick else 10_000
    start = time.perf_counter()
    tokens = run(engine_alone(sequences))
    wall = time.perf_counter() - start
    print(
        f"\nSim engine alone (simulated, h100-llama3-8b, virtual time): {tokens:,} tokens in {wall:.2f} s wall "
        f"= {tokens / wall:,.0f} simulated tokens/s"
    )

    queries = 300 if args.quick else 1_500
    start = time.perf_counter()
    tokens, virtual = run(whole_runtime(queries))
    wall = time.perf_counter() - start
    print(
        f"Runtime + SC on the sim engine (simulated, h100-llama3-8b, virtual time): {queries} queries, "
        f"{tokens:,} tokens, {virtual:,.0f} s simulated in {wall:.2f} s wall = {tokens / wall:,.0f} tokens/s"
    )


if __name__ == "__main__":
    main()
