"""How far the sim engine's ``cpu-tiny`` profile is from the real server, on a fixed workload.

    python scripts/sim_vs_real.py --url http://127.0.0.1:8011 [--out result.json]

Workload (fixed by ``--seed``): ``--queries`` queries, each a gang of ``--n`` samples of one
prompt (about 100 tokens, different per query), every sample generating an exact length drawn
uniformly from ``[--min-tokens, --max-tokens]`` (``ignore_eos``). Two arrival patterns:
``burst`` (all at t = 0, throughput-bound) and ``poisson`` (rate ``--rate`` queries/s).

The same requests run on the real server through the ``openai`` backend (real engine) and on
:class:`~dynasor.engine.sim.SimEngine` with the ``cpu-tiny`` profile in virtual time
(simulated), with the prompt lengths the real server reported. Printed per pattern: mean and
p90 query latency (arrival to last sample done), the mean absolute relative error of the
simulated latency per query, and throughput (completion tokens / makespan) with its error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algorithms.protocol import GenerateRequest
from dynasor.clock import run as run_clock
from dynasor.engine.base import EngineRequest
from dynasor.engine.openai import OpenAIBackend
from dynasor.engine.sim import SimEngine, load_profile

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
]


@dataclass(frozen=True)
class Query:
    id: int
    arrival: float
    prompt: str
    lengths: tuple[int, ...]


def workload(args: argparse.Namespace, pattern: str) -> list[Query]:
    rng = random.Random(f"{args.seed}-{pattern}")
    t, out = 0.0, []
    for i in range(args.queries):
        if pattern == "poisson" and i:
            t += rng.expovariate(args.rate)
        prompt = f"Query {i}: " + " ".join(rng.choice(WORDS) for _ in range(90))
        lengths = tuple(rng.randint(args.min_tokens, args.max_tokens) for _ in range(args.n))
        out.append(Query(i, t, prompt, lengths))
    return out


async def run_real(url: str, model: str | None, queries: list[Query]) -> tuple[list[float], float, list[list[int]]]:
    """Per-query latency, throughput, and the prompt tokens the server counted per sample."""
    async with OpenAIBackend(url, model=model, read_timeout=600) as backend:
        await backend.generate(EngineRequest("warm", "warm", GenerateRequest("warm up", max_tokens=4)))
        t0 = time.monotonic()
        prompt_tokens: list[list[int]] = [[] for _ in queries]
        latency = [0.0] * len(queries)
        total = 0

        async def one(q: Query) -> None:
            nonlocal total
            await asyncio.sleep(max(0.0, q.arrival - (time.monotonic() - t0)))
            start = time.monotonic()
            reqs = [
                EngineRequest(
                    f"q{q.id}-{j}", f"q{q.id}", GenerateRequest(q.prompt, max_tokens=n, extra={"ignore_eos": True})
                )
                for j, n in enumerate(q.lengths)
            ]
            async with asyncio.TaskGroup() as group:
                running = [group.create_task(backend.generate(r)) for r in reqs]
            done = [task.result() for task in running]
            latency[q.id] = time.monotonic() - start
            prompt_tokens[q.id] = [c.prompt_tokens for c in done]
            total += sum(c.completion_tokens for c in done)

        async with asyncio.TaskGroup() as group:
            for q in queries:
                group.create_task(one(q))
        makespan = time.monotonic() - t0
    return latency, total / makespan, prompt_tokens


def run_sim(profile: str, queries: list[Query], prompt_tokens: list[list[int]]) -> tuple[list[float], float]:
    async def main() -> tuple[list[float], float]:
        engine = SimEngine(load_profile(profile))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        latency = [0.0] * len(queries)

        async def one(q: Query) -> None:
            await asyncio.sleep(q.arrival)
            start = loop.time()
            async with asyncio.TaskGroup() as group:
                for p, n in zip(prompt_tokens[q.id], q.lengths, strict=True):
                    group.create_task(engine.run(p, n))
            latency[q.id] = loop.time() - start

        async with asyncio.TaskGroup() as group:
            for q in queries:
                group.create_task(one(q))
        makespan = loop.time() - t0
        await engine.aclose()
        return latency, sum(sum(q.lengths) for q in queries) / makespan

    return run_clock(main(), virtual=True)


def compare(real: list[float], sim: list[float], real_tput: float, sim_tput: float) -> dict[str, float]:
    r, s = np.array(real), np.array(sim)
    return {
        "real_mean_latency_s": float(r.mean()),
        "sim_mean_latency_s": float(s.mean()),
        "real_p90_latency_s": float(np.quantile(r, 0.9)),
        "sim_p90_latency_s": float(np.quantile(s, 0.9)),
        "latency_mean_abs_rel_error": float(np.mean(np.abs(s - r) / r)),
        "mean_latency_rel_error": float((s.mean() - r.mean()) / r.mean()),
        "real_throughput_tok_s": real_tput,
        "sim_throughput_tok_s": sim_tput,
        "throughput_rel_error": (sim_tput - real_tput) / real_tput,
    }


async def real_all(
    args: argparse.Namespace, patterns: list[str]
) -> dict[str, tuple[list[float], float, list[list[int]]]]:
    return {p: await run_real(args.url, args.model, workload(args, p)) for p in patterns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8011")
    parser.add_argument("--model", default=None)
    parser.add_argument("--profile", default="cpu-tiny")
    parser.add_argument("--queries", type=int, default=24)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--min-tokens", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rate", type=float, default=1.0, help="poisson arrivals, queries/s")
    parser.add_argument("--patterns", default="burst,poisson")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    patterns = args.patterns.split(",")

    real = asyncio.run(real_all(args, patterns))
    report = {"workload": vars(args), "results": {}}
    print(f"real engine: {args.url} (model {args.model or 'first listed'}); simulated: profile {args.profile}")
    for p in patterns:
        latency, tput, prompt_tokens = real[p]
        sim_latency, sim_tput = run_sim(args.profile, workload(args, p), prompt_tokens)
        row = compare(latency, sim_latency, tput, sim_tput)
        report["results"][p] = row
        print(
            f"{p:8s} latency mean real {row['real_mean_latency_s']:6.2f}s sim {row['sim_mean_latency_s']:6.2f}s "
            f"({row['mean_latency_rel_error']:+.0%}); p90 real {row['real_p90_latency_s']:6.2f}s "
            f"sim {row['sim_p90_latency_s']:6.2f}s; per-query |error| {row['latency_mean_abs_rel_error']:.0%}; "
            f"throughput real {row['real_throughput_tok_s']:6.0f} tok/s sim {row['sim_throughput_tok_s']:6.0f} tok/s "
            f"({row['throughput_rel_error']:+.0%})"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
