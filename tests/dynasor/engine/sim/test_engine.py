"""The simulated engine: timing against the cost model, batching, abort, preemption, priority."""

from __future__ import annotations

import asyncio

import pytest

from algorithms.protocol import GenerateRequest
from dynasor.clock import run
from dynasor.engine.base import EngineRequest
from dynasor.engine.sim import (
    CostProfile,
    FixedSource,
    ReplaySource,
    SimBackend,
    SimEngine,
    SyntheticSource,
    load_profile,
    profile_names,
    prompt_blocks,
)

PROFILE = CostProfile(
    "test",
    step_base_s=0.01,
    step_per_seq_s=0.001,
    step_per_context_token_s=1e-5,
    prefill_per_token_s=1e-4,
    max_num_seqs=4,
    kv_tokens=10_000,
)


def reference_time(profile: CostProfile, prompt: int, tokens: int) -> float:
    """Step-by-step sum for one sequence alone: the oracle for the closed form."""
    total, context = 0.0, prompt
    for i in range(tokens):
        total += profile.step_time(1, context, prompt if i == 0 else 0)
        context += 1
    return total


def test_single_sequence_matches_step_by_step_cost() -> None:
    async def main() -> float:
        engine = SimEngine(PROFILE)
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await engine.run(100, 50) == 50
        await engine.aclose()
        return loop.time() - start

    assert run(main()) == pytest.approx(reference_time(PROFILE, 100, 50), rel=1e-6)


def test_batch_shares_iterations() -> None:
    async def main() -> tuple[float, int]:
        engine = SimEngine(PROFILE)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(engine.run(10, 20) for _ in range(4)))
        elapsed = loop.time() - start
        await engine.aclose()
        return elapsed, engine.iterations_run

    elapsed, iterations = run(main())
    assert iterations == 20  # four sequences decode side by side
    alone = reference_time(PROFILE, 10, 20)
    assert alone < elapsed < 4 * alone


def test_max_num_seqs_queues_the_rest() -> None:
    async def main() -> list[float]:
        engine = SimEngine(PROFILE)
        loop = asyncio.get_running_loop()

        async def one() -> float:
            await engine.run(10, 10)
            return loop.time()

        ends = await asyncio.gather(*(one() for _ in range(6)))
        await engine.aclose()
        return ends

    ends = sorted(run(main()))
    assert ends[3] == pytest.approx(ends[0])  # first four together
    assert ends[4] > ends[3]


def test_abort_stops_generation() -> None:
    async def main() -> tuple[int, int, int]:
        engine = SimEngine(PROFILE)
        long = asyncio.create_task(engine.run(10, 1000))
        other = asyncio.create_task(engine.run(10, 300))
        await asyncio.sleep(1.0)
        long.cancel()
        await asyncio.sleep(0)
        at_abort = engine.tokens_generated
        await other
        after = engine.tokens_generated
        await engine.aclose()
        return at_abort, after, engine.iterations_run

    at_abort, after, iterations = run(main())
    both = at_abort // 2  # iterations in which both sequences decoded
    assert 0 < both < 300
    # After the abort only the other sequence generates: one token per iteration, to 300.
    assert after == at_abort + (300 - both)
    assert iterations == 300


def test_kv_pressure_preempts_worst_priority() -> None:
    profile = CostProfile("tight", 0.01, 0.0, 0.0, 0.0, max_num_seqs=8, kv_tokens=300)

    async def main() -> tuple[int, list[int]]:
        engine = SimEngine(profile)
        seqs = [engine.submit(50, 100, priority=p) for p in range(3)]
        done = await asyncio.gather(*(s.done for s in seqs))  # type: ignore[misc]
        await engine.aclose()
        return engine.preemptions, done

    preemptions, done = run(main())
    assert done == [100, 100, 100]
    assert preemptions >= 1


def test_priority_orders_admission() -> None:
    profile = CostProfile("one", 0.01, 0.0, 0.0, 0.0, max_num_seqs=1, kv_tokens=10_000)

    async def main() -> list[int]:
        engine = SimEngine(profile)
        loop = asyncio.get_running_loop()
        order: list[int] = []

        async def one(priority: int) -> None:
            await engine.run(5, 10, priority)
            order.append(priority)

        blocker = asyncio.create_task(one(0))
        await asyncio.sleep(0.001)
        await asyncio.gather(*(one(p) for p in (5, 3, 9, 1)), blocker)
        assert loop.time() > 0
        await engine.aclose()
        return order

    assert run(main()) == [0, 1, 3, 5, 9]


def test_backend_truncates_at_max_tokens_and_stop() -> None:
    async def main() -> None:
        async with SimBackend(PROFILE, FixedSource(100)) as backend:
            c = await backend.generate(EngineRequest("r", "q", GenerateRequest("hi", max_tokens=40)))
            assert (c.completion_tokens, c.finish_reason) == (40, "length")
        source = ReplaySource("math-qwen25")
        async with SimBackend(PROFILE, source) as backend:
            record = source.records[0]
            req = GenerateRequest(record.prompt, max_tokens=4096, stop=("\n\n",))
            c = await backend.generate(EngineRequest("r", record.id, req))
            assert "\n\n" not in c.text and c.finish_reason == "stop"
            assert c.completion_tokens < max(s.tokens for s in record.samples)

    run(main())


def test_replay_draws_without_replacement_and_deterministically() -> None:
    def draws(seed: int) -> list[int]:
        source = ReplaySource("math-qwen25", seed=seed)
        req = EngineRequest("r", "math-0", GenerateRequest("x", 10))
        return [source.draft(req).meta["sample"] for _ in range(8)]

    assert sorted(draws(0)) == list(range(8))
    assert draws(0) == draws(0)
    assert draws(0) != draws(1)
    # A twin of the run that recorded the samples sees them in recorded order.
    in_order = ReplaySource("math-qwen25", in_order=True)
    req = EngineRequest("r", "math-0", GenerateRequest("x", 10))
    assert [in_order.draft(req).meta["sample"] for _ in range(8)] == list(range(8))


def test_synthetic_difficulty_moves_accuracy_and_length() -> None:
    source = SyntheticSource(seed=3)
    source.set_difficulty("easy", 0.0)
    source.set_difficulty("hard", 1.0)

    def stats(query: str) -> tuple[float, float]:
        drafts = [source.draft(EngineRequest(str(i), query, GenerateRequest("x", 10))) for i in range(300)]
        return sum(d.meta["correct"] for d in drafts) / 300, sum(d.tokens for d in drafts) / 300

    easy_acc, easy_len = stats("easy")
    hard_acc, hard_len = stats("hard")
    assert easy_acc > 0.95 > 0.4 > hard_acc
    assert easy_len < hard_len


def test_bundled_profiles_load() -> None:
    assert {"h100-llama3-8b", "cpu-tiny"} <= set(profile_names())
    assert load_profile("h100-llama3-8b").max_num_seqs == 256
    with pytest.raises(ValueError, match="Unknown cost profile"):
        load_profile("nope")


def test_aborted_before_its_first_iteration_costs_no_prefill() -> None:
    profile = CostProfile("p", 0.01, 0.0, 0.0, 0.001, max_num_seqs=8, kv_tokens=1000)

    async def main() -> tuple[float, int]:
        engine = SimEngine(profile)
        first = engine.submit(500, 10)
        await asyncio.sleep(0.1)  # inside its 0.51 s prefill iteration
        engine.abort(first)
        await asyncio.sleep(1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        second = engine.submit(1, 1)
        await second.done  # type: ignore[misc]
        await engine.aclose()
        return loop.time() - start, engine.prompt_tokens_prefilled

    took, prefilled = run(main())
    assert took == pytest.approx(0.011, abs=1e-5)
    assert prefilled == 1


def test_a_preempted_sequence_is_not_readmitted_into_a_full_cache() -> None:
    profile = CostProfile("p", 0.01, 0.0, 0.0, 0.001, max_num_seqs=8, kv_tokens=100)

    async def main() -> tuple[int, int]:
        engine = SimEngine(profile)
        a, b = engine.submit(50, 30), engine.submit(29, 30)
        await asyncio.gather(a.done, b.done)  # type: ignore[arg-type]
        await engine.aclose()
        return engine.preemptions, engine.prompt_tokens_prefilled

    preemptions, prefilled = run(main())
    assert preemptions == 1
    assert prefilled == 50 + 29 + (29 + 10)  # b re-prefills once, with the 10 tokens it had made


def test_profiles_must_cost_time() -> None:
    with pytest.raises(ValueError, match="must take time"):
        CostProfile("free", 0.0, 0.0, 0.0, 0.0, max_num_seqs=1, kv_tokens=10)
    with pytest.raises(ValueError, match=">= 0"):
        CostProfile("neg", 0.01, -1.0, 0.0, 0.0, max_num_seqs=1, kv_tokens=10)


def test_samples_of_one_prompt_share_its_cached_blocks() -> None:
    # Block size 16: a 100-token prompt has 6 full blocks (96 tokens) that can be shared.
    blocks = prompt_blocks("w" * 400, 100, 16)
    assert len(blocks) == 6 and blocks == prompt_blocks("w" * 400 + "tail", 100, 16)
    assert prompt_blocks("v" + "w" * 399, 100, 16)[0] != blocks[0]

    async def main(caching: bool) -> tuple[int, int, int]:
        engine = SimEngine(PROFILE, prefix_caching=caching)
        first = engine.submit(100, 10, blocks=blocks)
        await first.done  # type: ignore[misc]
        # Its blocks stay cached after it finished: the next samples find them.
        rest = [engine.submit(100, 10, blocks=blocks) for _ in range(3)]
        await asyncio.gather(*(s.done for s in rest))  # type: ignore[misc]
        await engine.aclose()
        return engine.prompt_tokens_prefilled, engine.prefix_hit_tokens, engine.tokens_generated

    assert run(main(True)) == (100 + 3 * 4, 3 * 96, 40)
    assert run(main(False)) == (400, 0, 40)


def test_shared_blocks_are_stored_once_so_more_samples_fit() -> None:
    # 4 sequences of a 96-token prompt (6 blocks) and 20 new tokens: 4 x 116 = 464 tokens without
    # sharing, 96 + 4 x 20 = 176 with it; the cache holds 300.
    profile = CostProfile("kv", 0.01, 0.0, 0.0, 0.0, max_num_seqs=8, kv_tokens=300)
    blocks = prompt_blocks("p" * 400, 96, 16)

    async def main(caching: bool) -> tuple[int, int]:
        engine = SimEngine(profile, prefix_caching=caching)
        seqs = [engine.submit(96, 20, blocks=blocks) for _ in range(4)]
        await asyncio.gather(*(s.done for s in seqs))  # type: ignore[misc]
        await engine.aclose()
        return engine.iterations_run, engine.preemptions

    assert run(main(True)) == (20, 0)  # all four decode side by side
    iterations, _ = run(main(False))
    assert iterations > 20


def test_unheld_cached_blocks_are_evicted_least_recently_used_first() -> None:
    profile = CostProfile("kv", 0.01, 0.0, 0.0, 0.0, max_num_seqs=8, kv_tokens=200, block_size=16)
    a, b = prompt_blocks("a" * 400, 96, 16), prompt_blocks("b" * 400, 96, 16)

    async def main() -> list[int]:
        engine = SimEngine(profile)
        hits = []
        for blocks in (a, b, a, b):  # 96-token prompts, 2 tokens each: both prompts fit the cache
            before = engine.prefix_hit_tokens
            await engine.run(96, 2, blocks=blocks)
            hits.append(engine.prefix_hit_tokens - before)
        # A 48-token prompt making 40 tokens needs memory: the least recently used prompt (a) goes.
        await engine.run(48, 40, blocks=prompt_blocks("c" * 200, 48, 16))
        for blocks in (b, a):
            before = engine.prefix_hit_tokens
            await engine.run(96, 2, blocks=blocks)
            hits.append(engine.prefix_hit_tokens - before)
        await engine.aclose()
        return hits

    assert run(main()) == [0, 0, 95, 95, 95, 0]
