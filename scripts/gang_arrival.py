"""How a reasoning query's gang reaches a real engine, and whether sending it another way would be faster.

Against a real OpenAI-compatible engine (vLLM first); every figure is labelled with its URL and model.

1. **Send times.** One ``sc`` gang of ``--samples`` requests through the runtime and the OpenAI
   backend (the proxy's own path), each request stamped as the HTTP client sends it: how far apart the
   proxy puts them.
2. **In the engine.** vLLM's ``/metrics`` polled every ``--poll`` seconds while such a gang runs:
   how long one request runs alone (``running + waiting == 1``) before the others are in.
3. **A/B.** The same gang sent (a) as ``--samples`` requests at once, as the proxy sends them, and
   (b) as one request with ``n = --samples``, alternately, ``--trials`` times each, with a fresh
   prompt of ``--words`` words every time (no prefix cached from an earlier trial): median latency.

    python scripts/gang_arrival.py --engine http://127.0.0.1:8041 --model smollm2
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import time
from typing import Any

import aiohttp
import httpx

from algorithms.protocol import GenerateRequest
from dynasor import Query
from dynasor.engine.base import EngineRequest
from dynasor.engine.openai import OpenAIBackend
from dynasor.runtime import Runtime

WORDS = ("apple", "stone", "river", "cloud", "seven", "green", "table", "north")


def prompt(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + f" ({rng.random():.6f}) What is 2 + 2?"


def metric(text: str, name: str) -> float:
    pattern = re.compile(re.escape(name) + r"(\{[^}]*\})? (\S+)$")
    return sum(float(m.group(2)) for line in text.splitlines() if (m := pattern.match(line)))


async def send_times(args: argparse.Namespace, rng: random.Random) -> list[float]:
    """Milliseconds from the first request of a gang to each of the others, as sent."""
    stamps: list[float] = []

    async def stamp(session: object, context: object, params: aiohttp.TraceRequestStartParams) -> None:
        """The moment each generation request is handed to the network."""
        if params.url.path.endswith("/completions"):
            stamps.append(time.perf_counter())

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(stamp)
    runtime = Runtime(OpenAIBackend(args.engine, args.model, trace_configs=[trace]))
    spreads = []
    for _ in range(args.trials):
        stamps.clear()
        params = {"max_samples": args.samples, "samples_per_round": args.samples, "max_tokens": args.tokens}
        await runtime.run(Query([{"role": "user", "content": prompt(rng, args.words)}], "sc", params))
        spreads.append((max(stamps) - min(stamps)) * 1e3)
    await runtime.aclose()
    return spreads


async def alone_in_engine(args: argparse.Namespace, rng: random.Random) -> list[float]:
    """Seconds during which exactly one of the gang's requests is in the engine, per trial."""
    out = []
    async with OpenAIBackend(args.engine, args.model) as backend, httpx.AsyncClient(timeout=30) as http:
        for t in range(args.trials):
            text = prompt(rng, args.words)
            requests = [
                EngineRequest(f"g{t}-{i}", f"g{t}", GenerateRequest([{"role": "user", "content": text}], args.tokens))
                for i in range(args.samples)
            ]
            gang = asyncio.gather(*(backend.generate(r) for r in requests))
            alone, last = 0.0, time.monotonic()
            while not gang.done():
                page = (await http.get(f"{args.engine}/metrics")).text
                now = time.monotonic()
                if metric(page, "vllm:num_requests_running") + metric(page, "vllm:num_requests_waiting") == 1:
                    alone += now - last
                last = now
                await asyncio.sleep(args.poll)
            await gang
            out.append(alone)
    return out


async def a_b(args: argparse.Namespace, rng: random.Random) -> dict[str, list[float]]:
    url = f"{args.engine}/v1/chat/completions"
    limits = httpx.Limits(max_keepalive_connections=args.samples * 2)
    times: dict[str, list[float]] = {"separate": [], "one request, n": []}
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def separate(messages: list[Any]) -> None:
            body = {"model": args.model, "messages": messages, "max_tokens": args.tokens, "temperature": 0.7}
            await asyncio.gather(*(client.post(url, json=body) for _ in range(args.samples)))

        async def together(messages: list[Any]) -> None:
            body = {"model": args.model, "messages": messages, "max_tokens": args.tokens, "n": args.samples}
            await client.post(url, json=body)

        await separate([{"role": "user", "content": "hi"}])  # warm connections
        for trial in range(args.trials):
            order = [("separate", separate), ("one request, n", together)]
            for name, send in order if trial % 2 == 0 else order[::-1]:
                messages = [{"role": "user", "content": prompt(rng, args.words)}]
                started = time.monotonic()
                await send(messages)
                times[name].append(time.monotonic() - started)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="http://127.0.0.1:8011")
    ap.add_argument("--model", default=None, help="Served model (default: the first listed).")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--words", type=int, default=600, help="Prompt length (600 words: about 660 tokens).")
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--poll", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.engine = args.engine.rstrip("/").removesuffix("/v1")
    args.model = args.model or httpx.get(f"{args.engine}/v1/models", timeout=30).json()["data"][0]["id"]
    rng = random.Random(args.seed)
    label = f"real engine at {args.engine} (model {args.model}), gangs of {args.samples}, prompts of {args.words} words"
    print(f"# {label}")
    spreads = asyncio.run(send_times(args, rng))
    print(
        f"1. gang sent within (ms, first to last request): median {statistics.median(spreads):.1f}, "
        f"max {max(spreads):.1f}  {[round(s, 1) for s in spreads]}"
    )
    alone = asyncio.run(alone_in_engine(args, rng))
    print(
        f"2. one request alone in the engine (s): median {statistics.median(alone):.2f}  {[round(a, 2) for a in alone]}"
    )
    times = asyncio.run(a_b(args, rng))
    for name, values in times.items():
        print(f"3. {name:15s} median {statistics.median(values):.2f} s  {[round(v, 2) for v in values]}")


if __name__ == "__main__":
    main()
