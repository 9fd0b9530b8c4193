"""Soak test of ``dynasor serve``: many clients for minutes, with disconnects and a replica killed and restarted.

Starts the proxy as its own process in front of either

- ``--upstream sim``: the simulated engine (figures labelled *simulated*, with its cost profile), or
- ``--upstream fake``: ``--replicas`` local fake OpenAI servers of this script (figures labelled
  *fake upstream*), which stream ``max_tokens`` pieces ``--token-delay`` seconds apart and count
  the streams they open, finish, and see closed early (an abort, to an engine). One replica is
  killed (SIGKILL) at ``--kill-at`` of the run and restarted on the same port at ``--restart-at``.

``--clients`` clients send requests back to back for ``--duration`` seconds, a mix of plain
(chat and completions, streamed or not) and reasoning requests (``sc``, streamed or not); a
share ``--disconnect-share`` of them leave mid-request. Every request is classified:

``ok``         a complete answer (a stream ended with ``[DONE]`` and no error event)
``rejected``   429 with ``Retry-After`` (admission control, as designed)
``failed``     an answer in OpenAI's error shape (status >= 500, or an error event then ``[DONE]``):
               what a client gets when a replica dies under its request
``lost``       anything else: a dropped connection, a stream cut without ``[DONE]``, a malformed answer
``hung``       no answer within ``--hang-after`` seconds
``left``       the client disconnected on purpose

The proxy's resident memory is sampled every ``--rss-every`` seconds. After the load, the script
waits for the proxy to drain and reads its metrics and the upstreams' counters: reasoning queries
cancelled by a disconnect, their sub-requests (each must have been aborted in the engine), and
what is still running anywhere (must be nothing).

    python scripts/soak_proxy.py --upstream fake --clients 200 --duration 600 --out soak-fake.json
    python scripts/soak_proxy.py --upstream sim --clients 200 --duration 600 --out soak-sim.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PROMPTS = ["What is 12 + 30?", "What is 6 times 7?", "What is 2 to the power 10?", "What is 99 - 57?"]
KINDS = ("chat", "chat-stream", "completions", "completions-stream", "reasoning", "reasoning-stream")


# -- the fake upstream -------------------------------------------------------------------------


def fake_app(token_delay: float) -> Any:
    """An OpenAI-shaped server streaming ``max_tokens`` pieces; counts streams opened, finished, closed early."""
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    stats = {"requests": 0, "opened": 0, "finished": 0, "closed_early": 0}

    async def answer(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ClientDisconnect:  # the proxy aborted the request before sending all of it
            return Response(status_code=499)
        stats["requests"] += 1
        n = int(body.get("max_tokens") or 16)
        chat = request.url.path.endswith("chat/completions")
        if not body.get("stream"):
            await asyncio.sleep(token_delay * n)
            text = " 42" * (n - 1) + " \\boxed{42}"
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
            return JSONResponse(
                {"id": "x", "object": "completion", "model": "fake", "choices": [choice], "usage": usage}
            )

        async def chunks() -> Any:
            stats["opened"] += 1
            done = False
            try:
                for i in range(n):
                    await asyncio.sleep(token_delay)
                    piece = " 42" if i < n - 1 else " \\boxed{42}"
                    choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if i == n - 1 else None}
                    choice.update({"delta": {"content": piece}} if chat else {"text": piece})
                    usage = {"prompt_tokens": 10, "completion_tokens": i + 1, "total_tokens": 11 + i}
                    data = {"id": "x", "object": "chunk", "model": "fake", "choices": [choice], "usage": usage}
                    yield f"data: {json.dumps(data)}\n\n".encode()
                yield b"data: [DONE]\n\n"
                done = True
            finally:
                stats["finished" if done else "closed_early"] += 1

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def stats_route(request: Request) -> Response:
        return JSONResponse(stats)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", answer, methods=["POST"]),
            Route("/v1/completions", answer, methods=["POST"]),
            Route("/v1/models", models),
            Route("/stats", stats_route),
            Route("/health", lambda r: Response()),
        ]
    )


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], path: str = "/health", timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s")


def start_fake(port: int, token_delay: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(port), "--token-delay", str(token_delay)])
    wait_up(f"http://127.0.0.1:{port}", proc)
    return proc


def rss_mib(pid: int, field: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus metric's series whose labels include ``labels``."""
    total = 0.0
    pattern = re.compile(re.escape(name) + r"(\{[^}]*\})? (\S+)$")
    for line in text.splitlines():
        m = pattern.match(line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


# -- clients -----------------------------------------------------------------------------------


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    """A few examples of each bad outcome, for the report."""

    killed: str | None = None
    """The killed replica's URL: a failure naming it happened because it died."""
    failed_by_kill: int = 0

    def add(self, kind: str, outcome: str, seconds: float, note: str = "") -> None:
        self.outcomes[outcome] += 1
        if outcome == "failed" and self.killed is not None and self.killed in note:
            self.failed_by_kill += 1
        self.by_kind.setdefault(kind, Counter())[outcome] += 1
        if outcome == "ok":
            self.latencies.setdefault(kind, []).append(seconds)
        elif outcome in ("lost", "hung", "failed") and sum(s.startswith(outcome) for s in self.samples) < 5:
            self.samples.append(f"{outcome} {kind}: {note[:200]}")


def request_body(kind: str, rng: random.Random, tokens: int) -> tuple[str, dict[str, Any]]:
    stream = kind.endswith("stream")
    body: dict[str, Any] = {"model": "fake", "max_tokens": tokens, "stream": stream}
    prompt = rng.choice(PROMPTS)
    if kind.startswith("completions"):
        body["prompt"] = prompt
        return "/v1/completions", body
    body["messages"] = [{"role": "user", "content": prompt}]
    if kind.startswith("reasoning"):
        body["dynasor"] = {"algorithm": "sc", "max_samples": 4, "samples_per_round": 2}
    return "/v1/chat/completions", body


async def one(client: httpx.AsyncClient, url: str, path: str, body: dict[str, Any]) -> tuple[str, str]:
    """Send one request; its outcome and a note."""
    if not body["stream"]:
        r = await client.post(url + path, json=body)
        if r.status_code == 429 and "retry-after" in r.headers:
            return "rejected", ""
        try:
            data = r.json()
        except ValueError:
            return "lost", f"HTTP {r.status_code}, not JSON: {r.text[:100]}"
        if r.status_code >= 400:
            ok = isinstance(data, dict) and isinstance(data.get("error"), dict) and data["error"].get("message")
            return ("failed" if ok and r.status_code >= 500 else "lost"), f"HTTP {r.status_code}: {r.text[:160]}"
        return ("ok", "") if data.get("choices") else ("lost", f"no choices: {r.text[:100]}")
    async with client.stream("POST", url + path, json=body) as r:
        if r.status_code >= 400:
            text = (await r.aread()).decode(errors="replace")
            if r.status_code == 429 and "retry-after" in r.headers:
                return "rejected", ""
            return ("failed" if r.status_code >= 500 and '"error"' in text else "lost"), f"HTTP {r.status_code}: {text}"
        error, done = "", False
        async for line in r.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith('data: {"error"'):
                error = line
    if not done:
        return "lost", "stream ended without [DONE]"
    return ("failed", error) if error else ("ok", "")


async def load(
    args: argparse.Namespace, url: str, events: list[tuple[float, str]], killed: str | None
) -> tuple[Tally, float, int]:
    tally = Tally(killed=killed)
    rng = random.Random(args.seed)
    started = time.monotonic()
    end = started + args.duration
    sent = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.monotonic() < end:
            kind = rng.choice(KINDS[4:]) if rng.random() < args.reasoning_share else rng.choice(KINDS[:4])
            path, body = request_body(kind, rng, args.tokens)
            leave = rng.random() < args.disconnect_share
            limit = rng.uniform(0.02, args.leave_within) if leave else args.hang_after
            sent += 1
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(limit):
                    outcome, note = await one(client, url, path, body)
            except TimeoutError:
                outcome, note = ("left", "") if leave else ("hung", f"no answer in {args.hang_after:.0f} s")
            except (httpx.HTTPError, OSError) as exc:
                outcome, note = "lost", f"{type(exc).__name__}: {exc}"
            tally.add(kind, outcome, time.perf_counter() - t0, note)
            if outcome == "rejected":
                await asyncio.sleep(0.5)

    limits = httpx.Limits(max_connections=args.clients * 2, max_keepalive_connections=args.clients * 2)
    client = httpx.AsyncClient(timeout=httpx.Timeout(args.hang_after + 30), limits=limits)
    async with client, asyncio.TaskGroup() as group:
        for _ in range(args.clients):
            group.create_task(client_loop(client))
    return tally, time.monotonic() - started, sent


# -- the run -----------------------------------------------------------------------------------


async def monitor(
    args: argparse.Namespace,
    pid: int,
    fakes: list[subprocess.Popen[bytes]],
    ports: list[int],
    rss: list[tuple[float, float]],
    events: list[tuple[float, str]],
    killed_stats: list[dict[str, Any]],
) -> None:
    """Samples the proxy's RSS; kills and restarts the last replica on schedule (fake upstream)."""
    started = time.monotonic()
    kill_at = args.kill_at * args.duration
    restart_at = args.restart_at * args.duration
    killed = restarted = args.upstream != "fake" or len(fakes) < 2
    next_rss = 0.0
    while (elapsed := time.monotonic() - started) < args.duration:
        if elapsed >= next_rss:
            value = rss_mib(pid)
            if value is not None:
                rss.append((elapsed, value))
            next_rss += args.rss_every
        if not killed and elapsed >= kill_at:
            async with httpx.AsyncClient() as client:
                killed_stats.append((await client.get(f"http://127.0.0.1:{ports[-1]}/stats")).json())
            fakes[-1].send_signal(signal.SIGKILL)
            fakes[-1].wait()
            events.append((elapsed, f"replica {ports[-1]} killed"))
            killed = True
        if killed and not restarted and elapsed >= restart_at:
            fakes[-1] = await asyncio.to_thread(start_fake, ports[-1], args.token_delay)
            events.append((time.monotonic() - started, f"replica {ports[-1]} restarted"))
            restarted = True
        await asyncio.sleep(0.5)


async def drained(url: str, timeout: float = 60.0) -> str:
    """The proxy's metrics once nothing runs in it any more (or after ``timeout``)."""
    end = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            text = (await client.get(url + "/metrics")).text
            busy = sum(
                metric(text, name)
                for name in ("dynasor_active_queries", "dynasor_subrequests_running", "dynasor_passthrough_inflight")
            )
            if busy == 0 or time.monotonic() > end:
                return text
            await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    fakes: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        if args.upstream == "fake":
            ports = [free_port() for _ in range(args.replicas)]
            fakes = [start_fake(port, args.token_delay) for port in ports]
            upstreams = [f"http://127.0.0.1:{port}" for port in ports]
            source = (
                f"fake upstream ({args.replicas} local replicas of this script, {1e3 * args.token_delay:g} ms per "
                f"token, one killed at {args.kill_at:.0%} of the run and restarted at {args.restart_at:.0%})"
            )
        else:
            upstreams = [args.upstream]
            profile = args.upstream.partition(":")[2] or "h100-llama3-8b"
            source = f"simulated (sim engine, cost profile {profile}, synthetic answers)"
        port = free_port()
        exe = shutil.which("dynasor")
        cmd = [exe] if exe else [sys.executable, "-c", "from dynasor_cli import main; main()"]
        cmd += ["serve", "--port", str(port), "--log-level", "warning", "--health-interval", "1"]
        for upstream in upstreams:
            cmd += ["--upstream", upstream]
        proxy_proc = subprocess.Popen(cmd, env=os.environ | {"PYTHONUNBUFFERED": "1"})
        procs.append(proxy_proc)
        url = f"http://127.0.0.1:{port}"
        wait_up(url, proxy_proc)
        print(f"# {source}; proxy pid {proxy_proc.pid} on {url}; {args.clients} clients for {args.duration:.0f} s")
        rss: list[tuple[float, float]] = []
        events: list[tuple[float, str]] = []
        killed_stats: list[dict[str, Any]] = []
        watcher = asyncio.create_task(monitor(args, proxy_proc.pid, fakes, ports, rss, events, killed_stats))
        killed = f"127.0.0.1:{ports[-1]}" if len(ports) > 1 else None
        tally, wall, sent = await load(args, url, events, killed)
        await watcher
        metrics_text = await drained(url)
        stats = []
        async with httpx.AsyncClient(timeout=10) as client:
            for p in ports:
                stats.append((await client.get(f"http://127.0.0.1:{p}/stats")).json())
        return report(args, source, tally, wall, sent, rss, events, metrics_text, stats, killed_stats, proxy_proc.pid)
    finally:
        for proc in [*procs, *fakes]:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(
    args: argparse.Namespace,
    source: str,
    tally: Tally,
    wall: float,
    sent: int,
    rss: list[tuple[float, float]],
    events: list[tuple[float, str]],
    metrics_text: str,
    stats: list[dict[str, Any]],
    killed_stats: list[dict[str, Any]],
    pid: int,
) -> dict[str, Any]:
    first = next((v for t, v in rss if t >= min(60.0, args.duration / 10)), rss[0][1] if rss else float("nan"))
    last = rss[-1][1] if rss else float("nan")
    cancelled = metric(metrics_text, "dynasor_queries_total", exit_reason="cancelled")
    sub = {
        finish: metric(metrics_text, "dynasor_subrequests_total", exit_reason="cancelled", finish_reason=finish)
        for finish in ("abort", "stop", "length", "error")
    }
    still = {
        "active queries": metric(metrics_text, "dynasor_active_queries"),
        "sub-requests running": metric(metrics_text, "dynasor_subrequests_running"),
        "pass-through in flight": metric(metrics_text, "dynasor_passthrough_inflight"),
    }
    if args.upstream != "fake":
        still["sim engine sequences"] = metric(metrics_text, "dynasor_sim_engine_sequences")
    else:
        still["upstream streams open"] = sum(s["opened"] - s["finished"] - s["closed_early"] for s in stats)
    upstream_aborts = sum(s["closed_early"] for s in stats + killed_stats) if stats else None
    out = {
        "source": source,
        "clients": args.clients,
        "seconds": round(wall, 1),
        "requests": sent,
        "outcomes": dict(tally.outcomes),
        "failed_naming_the_killed_replica": tally.failed_by_kill,
        "by_kind": {k: dict(v) for k, v in tally.by_kind.items()},
        "latency_ms": {
            k: {"n": len(v), "p50": round(pct(v, 0.5) * 1e3, 1), "p99": round(pct(v, 0.99) * 1e3, 1)}
            for k, v in sorted(tally.latencies.items())
        },
        "rss_mib": {"minute_1": round(first, 1), "end": round(last, 1), "peak": rss_mib(pid, "VmHWM")},
        "rss_ratio_end_to_minute_1": round(last / first, 3) if rss else None,
        "rss_samples": [(round(t), round(v, 1)) for t, v in rss],
        "events": [(round(t, 1), e) for t, e in events],
        "disconnected_reasoning_queries": cancelled,
        "their_subrequests": sub,
        "still_running_after_drain": still,
        "upstream_streams_closed_early": upstream_aborts,
        "examples": tally.samples,
    }
    print(f"\n## Soak ({source}): {args.clients} clients, {wall:.0f} s, {sent} requests")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.outcomes.items())))
    if tally.killed is not None:
        print(f"  failed naming the killed replica ({tally.killed}): {tally.failed_by_kill}")
    for kind, counts in sorted(tally.by_kind.items()):
        lat = out["latency_ms"].get(kind, {})
        print(f"  {kind:19s} {dict(counts)}  p50 {lat.get('p50')} ms  p99 {lat.get('p99')} ms")
    print(
        f"RSS: {first:.0f} MiB at minute 1, {last:.0f} MiB at the end (x{last / first:.3f}); samples every "
        f"{args.rss_every:.0f} s"
    )
    print(
        f"reasoning queries cancelled by their client: {cancelled:.0f}; their sub-requests: "
        + ", ".join(f"{k} {v:.0f}" for k, v in sub.items())
    )
    print("after drain, still running: " + ", ".join(f"{k} {v:.0f}" for k, v in still.items()))
    if upstream_aborts is not None:
        print(f"streams the upstreams saw closed early (aborted): {upstream_aborts}")
    for t, e in events:
        print(f"  at {t:.0f} s: {e}")
    for line in tally.samples:
        print("  example:", line)
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", default="fake", help="'fake' (local replicas of this script) or 'sim[:PROFILE]'.")
    ap.add_argument("--replicas", type=int, default=2, help="Fake upstream replicas (one is killed and restarted).")
    ap.add_argument(
        "--token-delay", type=float, default=0.01, help="Seconds between a fake upstream's pieces (0.01: 100 tokens/s)."
    )
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--reasoning-share", type=float, default=0.2)
    ap.add_argument("--disconnect-share", type=float, default=0.1, help="Requests whose client leaves mid-way.")
    ap.add_argument("--leave-within", type=float, default=0.6, help="A leaving client leaves within this many s.")
    ap.add_argument("--tokens", type=int, default=32, help="max_tokens of every request.")
    ap.add_argument("--kill-at", type=float, default=0.3, help="Fraction of the run at which a replica is killed.")
    ap.add_argument("--restart-at", type=float, default=0.5, help="Fraction of the run at which it is restarted.")
    ap.add_argument("--hang-after", type=float, default=120.0, help="A request slower than this counts as hung.")
    ap.add_argument("--rss-every", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON here.")
    ap.add_argument("--serve-fake", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve_fake is not None:
        import uvicorn

        uvicorn.run(
            fake_app(args.token_delay), host="127.0.0.1", port=args.serve_fake, log_level="error", access_log=False
        )
        return
    if args.upstream != "fake" and not args.upstream.startswith("sim"):
        raise SystemExit("--upstream is 'fake' or 'sim[:PROFILE]'")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the proxy and the replicas on the way out
    out = asyncio.run(run(args))
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
