"""Load and overhead benchmark of ``dynasor serve`` (loopback only, bounded in count and time).

Starts the proxy as its own process in front of an upstream, then:

1. **Overhead**, side by side: the same plain requests sent alternately to the upstream
   directly and through the proxy, one at a time (no queueing in the way). Reports p50/p99
   latency of each, the p50 of the paired difference (proxy minus direct, pairs run back to
   back), and the streaming throughput ratio (chunks per second through the proxy over
   direct, per pair, median) of short streams (``--stream-tokens``, where the per-request cost
   weighs) and of long ones (``--long-stream-tokens``: the relay's own throughput).
2. **Reasoning CPU**: ``sc`` queries of 8 samples, 8 at a time; the proxy process's CPU time
   (user + system) per sub-request it ran, as measured and without the proxy's idle background
   work. ``--stream-interval N`` starts the proxy asking N tokens per streamed chunk.
3. **Load**: ``--clients`` concurrent clients for ``--duration`` seconds (and at most
   ``--max-requests``), mixing plain requests (chat and completions, streamed or not) with
   reasoning requests (``sc``). Every request has a client-side limit (``--hang-after``): one
   that exceeds it counts as *hung*, one that fails (connection error, 5xx, malformed
   answer) as *lost*. Reports p50/p99 latency per kind and the proxy's peak RSS (VmHWM).

``--upstream URL`` measures against a real engine (e.g. the vLLM CPU server of
``scripts/vllm_server.sh``); ``--upstream fake`` starts a local fake OpenAI server that answers
instantly (streams ``max_tokens`` chunks), which isolates the proxy's own cost. Every figure
printed names which of the two it came from.

    python scripts/bench_proxy.py --upstream http://127.0.0.1:8011 --duration 120 --clients 8
    python scripts/bench_proxy.py --upstream fake --duration 60 --clients 32
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PROMPT = [{"role": "user", "content": "What is 12 + 30? Put the answer in \\boxed{}."}]


# -- the fake upstream ---------------------------------------------------------------------


def fake_app() -> Any:
    """An OpenAI-shaped server that answers at once: the proxy's cost is all that is left."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def answer(request: Request) -> Response:
        body = json.loads(await request.body())
        n = int(body.get("max_tokens") or 16)
        chat = request.url.path.endswith("chat/completions")
        if body.get("stream"):
            # Tokens per chunk, as vLLM's per-request stream_interval (the first chunk goes alone).
            every = max(1, int(body.get("stream_interval") or 1))
            cuts = [0, 1, *range(1 + every, n, every), n] if n > 1 else [0, n]

            async def chunks():
                for start, end in itertools.pairwise(cuts):
                    piece = " 42" * (end - start) if end < n else " 42" * (end - start - 1) + " \\boxed{42}"
                    choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
                    choice["finish_reason"] = "length" if end == n else None
                    data = {"id": "x", "object": "chunk", "created": 0, "model": "fake", "choices": [choice]}
                    yield f"data: {json.dumps(data)}\n\n".encode()
                usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
                yield f"data: {json.dumps({'id': 'x', 'choices': [], 'usage': usage})}\n\n".encode()
                yield b"data: [DONE]\n\n"

            return StreamingResponse(chunks(), media_type="text/event-stream")
        text = " 42" * (n - 1) + " \\boxed{42}"
        choice = {"index": 0, "message": {"role": "assistant", "content": text}} if chat else {"index": 0, "text": text}
        choice["finish_reason"] = "length"
        usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
        return JSONResponse({"id": "x", "object": "completion", "model": "fake", "choices": [choice], "usage": usage})

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", answer, methods=["POST"]),
            Route("/v1/completions", answer, methods=["POST"]),
            Route("/v1/models", models),
            Route("/health", lambda r: Response()),
        ]
    )


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s")


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM: the process's peak resident set size."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- measurements ----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed_plain(client: httpx.AsyncClient, base: str, model: str, max_tokens: int) -> float:
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0}
    t0 = time.perf_counter()
    r = await client.post(f"{base}/v1/chat/completions", json=body)
    r.raise_for_status()
    r.json()["choices"][0]["message"]
    return time.perf_counter() - t0


async def timed_stream(client: httpx.AsyncClient, base: str, model: str, max_tokens: int) -> tuple[float, int]:
    """Seconds from the request to [DONE], and the content chunks received."""
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    chunks = 0
    async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"choices":[]' not in line.replace(" ", ""):
                chunks += 1
    return time.perf_counter() - t0, chunks


async def stream_rates(
    client: httpx.AsyncClient, direct: str, proxy: str, model: str, pairs: int, tokens: int
) -> dict[str, float]:
    """Chunks per second from request to ``[DONE]``, direct and through the proxy, alternating."""
    ratios, d_rate, p_rate = [], [], []
    for i in range(pairs):
        order = (direct, proxy) if i % 2 == 0 else (proxy, direct)
        rate = {}
        for base in order:
            seconds, chunks = await timed_stream(client, base, model, tokens)
            rate[base] = chunks / seconds
        d_rate.append(rate[direct])
        p_rate.append(rate[proxy])
        ratios.append(rate[proxy] / rate[direct])
    return {
        "direct_chunks_per_s_p50": pct(d_rate, 0.5),
        "proxy_chunks_per_s_p50": pct(p_rate, 0.5),
        "ratio_p50": statistics.median(ratios) if ratios else float("nan"),
    }


async def overhead(
    direct: str,
    proxy: str,
    model: str,
    pairs: int,
    stream_pairs: int,
    stream_tokens: int,
    long_pairs: int = 0,
    long_tokens: int = 1024,
) -> dict:
    async with httpx.AsyncClient(timeout=120) as client:
        for base in (direct, proxy):  # warm connections and caches
            await timed_plain(client, base, model, 2)
        d_lat, p_lat, diffs = [], [], []
        for i in range(pairs):
            order = (direct, proxy) if i % 2 == 0 else (proxy, direct)
            got = {}
            for base in order:
                got[base] = await timed_plain(client, base, model, 2)
            if (i + 1) % 10 == 0:
                print(f"  {i + 1}/{pairs} pairs", flush=True)
            d_lat.append(got[direct])
            p_lat.append(got[proxy])
            diffs.append(got[proxy] - got[direct])
        short = await stream_rates(client, direct, proxy, model, stream_pairs, stream_tokens)
        # A long stream: the relay's own throughput, with the per-request cost spread thin.
        long = await stream_rates(client, direct, proxy, model, long_pairs, long_tokens) if long_pairs else None
    figures = {
        "pairs": pairs,
        "direct_p50_ms": pct(d_lat, 0.5) * 1e3,
        "direct_p99_ms": pct(d_lat, 0.99) * 1e3,
        "proxy_p50_ms": pct(p_lat, 0.5) * 1e3,
        "proxy_p99_ms": pct(p_lat, 0.99) * 1e3,
        "added_p50_ms": pct(diffs, 0.5) * 1e3,
        "stream_pairs": stream_pairs,
        "stream_tokens": stream_tokens,
        "direct_stream_chunks_per_s_p50": short["direct_chunks_per_s_p50"],
        "proxy_stream_chunks_per_s_p50": short["proxy_chunks_per_s_p50"],
        "stream_throughput_ratio_p50": short["ratio_p50"],
    }
    if long is not None:
        figures |= {"long_stream_pairs": long_pairs, "long_stream_tokens": long_tokens}
        figures |= {f"long_stream_{k}": v for k, v in long.items()}
    return figures


@dataclass
class LoadStats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    hung: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def one_request(client: httpx.AsyncClient, proxy: str, model: str, kind: str, tokens: int) -> None:
    chat = kind.startswith(("chat", "reasoning"))
    stream = kind.endswith("stream")
    body: dict[str, Any] = {"model": model, "max_tokens": tokens, "stream": stream}
    if chat:
        body["messages"] = PROMPT
    else:
        body["prompt"] = PROMPT[0]["content"]
    if kind.startswith("reasoning"):
        body["dynasor"] = {"algorithm": "sc", "max_samples": 4, "samples_per_round": 2}
    path = "/v1/chat/completions" if chat else "/v1/completions"
    if stream:
        done = False
        async with client.stream("POST", proxy + path, json=body) as r:
            if r.status_code >= 400:
                await r.aread()
                raise httpx.HTTPStatusError(r.text[:200], request=r.request, response=r)
            async for line in r.aiter_lines():
                done = done or line.strip() == "data: [DONE]"
        if not done:
            raise ValueError("stream ended without [DONE]")
    else:
        r = await client.post(proxy + path, json=body)
        if r.status_code >= 400:
            raise httpx.HTTPStatusError(r.text[:200], request=r.request, response=r)
        if not r.json().get("choices"):
            raise ValueError("answer without choices")


async def load(
    proxy: str,
    model: str,
    clients: int,
    duration: float,
    max_requests: int,
    reasoning_share: float,
    tokens: int,
    hang_after: float,
    seed: int,
) -> tuple[LoadStats, float, int]:
    stats = LoadStats()
    rng = random.Random(seed)
    plain = ["chat", "chat-stream", "completions", "completions-stream"]
    budget = {"left": max_requests}
    end = time.monotonic() + duration
    started = time.monotonic()

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < end and budget["left"] > 0:
            budget["left"] -= 1
            kind = (
                rng.choice(["reasoning", "reasoning-stream"]) if rng.random() < reasoning_share else rng.choice(plain)
            )
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(hang_after):
                    await one_request(client, proxy, model, kind, tokens)
            except TimeoutError:
                stats.hung[kind] = stats.hung.get(kind, 0) + 1
                continue
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 429:  # admission control working as designed
                    stats.rejected[kind] = stats.rejected.get(kind, 0) + 1
                    await asyncio.sleep(0.5)
                    continue
                stats.lost[kind] = stats.lost.get(kind, 0) + 1
                stats.errors.append(f"{kind}: HTTP {exc.response.status_code} {str(exc)[:160]}")
                continue
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                stats.lost[kind] = stats.lost.get(kind, 0) + 1
                stats.errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:160]}")
                continue
            stats.latencies.setdefault(kind, []).append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    client = httpx.AsyncClient(timeout=httpx.Timeout(hang_after + 5), limits=limits)
    async with client, asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(worker(client))
    return stats, time.monotonic() - started, max_requests - budget["left"]


def proxy_cpu_s(pid: int) -> float:
    """The process's CPU time so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def reasoning_cpu(
    proxy: str, pid: int, model: str, queries: int, tokens: int, idle_s: float = 10.0
) -> dict[str, Any]:
    """The proxy's CPU per reasoning sub-request: ``queries`` sc queries of 8 samples (one round,
    so each runs all 8), 8 at a time; CPU of the proxy process over the sub-requests it ran.

    The proxy's background work (health probes, timers) is measured first, idle for ``idle_s``,
    and also reported taken out: against a real engine the phase lasts minutes, and that work
    would otherwise be charged to the sub-requests."""
    body = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": tokens,
        "dynasor": {"algorithm": "sc", "max_samples": 8, "samples_per_round": 8},
    }
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=120) as client:

        async def one() -> int:
            async with gate:
                r = await client.post(f"{proxy}/v1/chat/completions", json=body)
                r.raise_for_status()
                return int(r.json()["usage"]["dynasor"]["samples"])

        await asyncio.gather(*(one() for _ in range(8)))  # warm connections
        idle0 = proxy_cpu_s(pid)
        await asyncio.sleep(idle_s)
        idle_share = (proxy_cpu_s(pid) - idle0) / idle_s if idle_s > 0 else 0.0
        cpu0, t0 = proxy_cpu_s(pid), time.monotonic()
        subrequests = sum(await asyncio.gather(*(one() for _ in range(queries))))
        cpu, wall = proxy_cpu_s(pid) - cpu0, time.monotonic() - t0
    return {
        "queries": queries,
        "subrequests": subrequests,
        "tokens_per_subrequest": tokens,
        "proxy_cpu_s": cpu,
        "cpu_ms_per_subrequest": 1e3 * cpu / subrequests,
        "idle_cpu_share": idle_share,
        "cpu_ms_per_subrequest_net": 1e3 * max(0.0, cpu - idle_share * wall) / subrequests,
        "seconds": wall,
    }


# -- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", default="fake", help="Engine base URL, or 'fake' for the instant fake upstream.")
    ap.add_argument("--model", default=None, help="Model name (default: the first the upstream lists).")
    ap.add_argument("--pairs", type=int, default=200, help="Direct/proxy pairs of plain requests (overhead).")
    ap.add_argument("--stream-pairs", type=int, default=20, help="Direct/proxy pairs of streams (throughput).")
    ap.add_argument("--stream-tokens", type=int, default=64)
    ap.add_argument(
        "--long-stream-pairs", type=int, default=10, help="Direct/proxy pairs of long streams (relay throughput)."
    )
    ap.add_argument("--long-stream-tokens", type=int, default=1024)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=120.0, help="Seconds of the load phase (at most 600).")
    ap.add_argument("--max-requests", type=int, default=5000, help="Cap on requests of the load phase.")
    ap.add_argument("--reasoning-share", type=float, default=0.2)
    ap.add_argument(
        "--reasoning-queries", type=int, default=200, help="sc queries (8 samples) of the proxy-CPU phase (0: skip)."
    )
    ap.add_argument(
        "--reasoning-tokens", type=int, default=None, help="max_tokens of each sample (default: --stream-tokens)."
    )
    ap.add_argument(
        "--stream-interval",
        type=int,
        default=None,
        help="Passed to `dynasor serve --stream-interval`: tokens per chunk asked for reasoning sub-requests.",
    )
    ap.add_argument(
        "--idle-seconds", type=float, default=10.0, help="Idle time measuring the proxy's background CPU first."
    )
    ap.add_argument("--tokens", type=int, default=16, help="max_tokens of load-phase requests.")
    ap.add_argument("--hang-after", type=float, default=120.0, help="A request slower than this counts as hung.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON here.")
    ap.add_argument("--serve-fake", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args()


def start_upstream(args: argparse.Namespace, procs: list[subprocess.Popen[bytes]]) -> tuple[str, str, str]:
    """The upstream's URL, its model and how to label figures measured against it."""
    if args.upstream == "fake":
        port = free_port()
        fake = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(port)])
        procs.append(fake)
        upstream = f"http://127.0.0.1:{port}"
        wait_healthy(upstream, fake)
        source = "fake upstream (local instant OpenAI server, this script)"
    else:
        upstream = args.upstream.rstrip("/").removesuffix("/v1")
        source = f"real engine at {upstream}"
    model = args.model or httpx.get(f"{upstream}/v1/models", timeout=30).json()["data"][0]["id"]
    if args.upstream != "fake":
        source += f" (model {model})"
    return upstream, model, source


def start_proxy(
    upstream: str, clients: int, procs: list[subprocess.Popen[bytes]], stream_interval: int | None = None
) -> tuple[str, int]:
    """``dynasor serve`` in front of ``upstream``, healthy; its URL and pid."""
    port = free_port()
    exe = shutil.which("dynasor")
    cmd = [exe] if exe else [sys.executable, "-c", "from dynasor_cli import main; main()"]
    cmd += ["serve", "--upstream", upstream, "--port", str(port), "--log-level", "warning"]
    cmd += ["--max-queries", str(max(clients * 2, 8))]
    if stream_interval is not None:
        cmd += ["--stream-interval", str(stream_interval)]
    proxy_proc = subprocess.Popen(cmd, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    procs.append(proxy_proc)
    proxy = f"http://127.0.0.1:{port}"
    wait_healthy(proxy, proxy_proc)
    return proxy, proxy_proc.pid


def print_overhead(over: dict[str, Any], source: str, seconds: float) -> None:
    print(f"\n## Overhead, side by side ({source}), {seconds:.0f} s")
    head = f"plain, {over['pairs']} pairs:"
    print(f"{head:17s}direct p50 {over['direct_p50_ms']:.2f} ms  p99 {over['direct_p99_ms']:.2f} ms")
    print(f"                 proxy  p50 {over['proxy_p50_ms']:.2f} ms  p99 {over['proxy_p99_ms']:.2f} ms")
    print(f"                 added at p50 (paired): {over['added_p50_ms']:.2f} ms")
    print(
        f"streams, {over['stream_pairs']} pairs of {over['stream_tokens']} tokens: direct "
        f"{over['direct_stream_chunks_per_s_p50']:.0f} chunks/s, proxy {over['proxy_stream_chunks_per_s_p50']:.0f}"
        f" chunks/s, ratio p50 {over['stream_throughput_ratio_p50']:.3f}"
    )
    if "long_stream_pairs" in over:
        print(
            f"long streams, {over['long_stream_pairs']} pairs of {over['long_stream_tokens']} tokens: direct "
            f"{over['long_stream_direct_chunks_per_s_p50']:.0f} chunks/s, proxy "
            f"{over['long_stream_proxy_chunks_per_s_p50']:.0f} chunks/s, ratio p50 "
            f"{over['long_stream_ratio_p50']:.3f}"
        )


def print_load(
    stats: LoadStats, source: str, args: argparse.Namespace, wall: float, sent: int, rss: float | None
) -> None:
    lost, hung = sum(stats.lost.values()), sum(stats.hung.values())
    print(f"\n## Load ({source}): {args.clients} clients, {wall:.0f} s, {sent} requests")
    print(f"lost {lost}, hung {hung} (> {args.hang_after:.0f} s), rejected with 429: {sum(stats.rejected.values())}")
    every = [x for v in stats.latencies.values() for x in v]
    print(f"all:        n={len(every):5d}  p50 {pct(every, 0.5) * 1e3:8.1f} ms  p99 {pct(every, 0.99) * 1e3:8.1f} ms")
    for kind in sorted(stats.latencies):
        v = stats.latencies[kind]
        print(f"{kind:18s} n={len(v):5d}  p50 {pct(v, 0.5) * 1e3:8.1f} ms  p99 {pct(v, 0.99) * 1e3:8.1f} ms")
    print(f"proxy peak RSS (VmHWM): {rss:.0f} MiB" if rss is not None else "proxy peak RSS: unknown")
    for line in stats.errors[:10]:
        print("  error:", line)


def report(
    source: str, over: dict[str, Any], stats: LoadStats, clients: int, wall: float, sent: int, rss: float | None
) -> dict[str, Any]:
    """Every figure, for ``--out``."""
    return {
        "source": source,
        "overhead": over,
        "load": {
            "clients": clients,
            "seconds": wall,
            "requests": sent,
            "lost": stats.lost,
            "hung": stats.hung,
            "rejected": stats.rejected,
            "latency_ms": {
                k: {"n": len(v), "p50": pct(v, 0.5) * 1e3, "p99": pct(v, 0.99) * 1e3}
                for k, v in stats.latencies.items()
            },
            "proxy_peak_rss_mib": rss,
        },
    }


def main() -> None:
    args = parse_args()
    if args.serve_fake is not None:
        import uvicorn

        uvicorn.run(fake_app(), host="127.0.0.1", port=args.serve_fake, log_level="warning", access_log=False)
        return
    procs: list[subprocess.Popen[bytes]] = []
    try:
        upstream, model, source = start_upstream(args, procs)
        proxy, pid = start_proxy(upstream, args.clients, procs, args.stream_interval)
        print(f"# upstream: {source}; proxy pid {pid} on {proxy}; {os.cpu_count()} CPUs shared by all")
        t0 = time.monotonic()
        over = asyncio.run(
            overhead(
                upstream,
                proxy,
                model,
                args.pairs,
                args.stream_pairs,
                args.stream_tokens,
                args.long_stream_pairs,
                args.long_stream_tokens,
            )
        )
        print_overhead(over, source, time.monotonic() - t0)
        cpu = None
        if args.reasoning_queries > 0:
            tokens = args.reasoning_tokens or args.stream_tokens
            cpu = asyncio.run(reasoning_cpu(proxy, pid, model, args.reasoning_queries, tokens, args.idle_seconds))
            interval = f", {args.stream_interval} tokens per chunk asked" if args.stream_interval else ""
            print(
                f"\n## Reasoning ({source}): {cpu['queries']} sc queries, {cpu['subrequests']} sub-requests of "
                f"{cpu['tokens_per_subrequest']} tokens{interval}, {cpu['seconds']:.0f} s: proxy CPU "
                f"{cpu['cpu_ms_per_subrequest']:.2f} ms per sub-request, "
                f"{cpu['cpu_ms_per_subrequest_net']:.2f} ms without the proxy's background work "
                f"({100 * cpu['idle_cpu_share']:.2f}% of a core when idle)"
            )
            cpu["stream_interval"] = args.stream_interval
        stats, wall, sent = asyncio.run(
            load(
                proxy,
                model,
                args.clients,
                min(args.duration, 600.0),
                args.max_requests,
                args.reasoning_share,
                args.tokens,
                args.hang_after,
                args.seed,
            )
        )
        rss = peak_rss_mib(pid)
        print_load(stats, source, args, wall, sent, rss)
        if args.out is not None:
            figures = report(source, over, stats, args.clients, wall, sent, rss) | {"reasoning_cpu": cpu}
            args.out.write_text(json.dumps(figures, indent=2))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
