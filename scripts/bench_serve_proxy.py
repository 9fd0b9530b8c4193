"""vLLM's own serving benchmark, direct to the engine and through ``dynasor serve``, side by side.

Runs ``vllm bench serve`` (from the engine venv that ``scripts/vllm_setup.sh`` builds) against a
real vLLM server and against a ``dynasor serve`` proxy in front of the same server, alternating
direct and proxied runs (``--rounds`` pairs, the order flipped every round so drift in the
machine's load falls on both). Plain requests pass through the proxy, so the difference is the
proxy's own cost as vLLM's standard client sees it: time to first token, time per output token,
end-to-end latency and throughput. Prints a table (medians over rounds, and proxy / direct ratios)
and writes every run's JSON to ``--out``.

    python scripts/bench_serve_proxy.py --upstream http://127.0.0.1:8011 --model smollm2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import start_proxy  # a sibling script, not a package

ENGINE_HOME = Path(os.environ.get("DYNASOR_ENGINE_HOME", Path.home() / ".cache" / "dynasor"))

# The figures compared, as vLLM's result JSON names them, and whether bigger is better.
METRICS: dict[str, bool] = {
    "request_throughput": True,
    "output_throughput": True,
    "median_ttft_ms": False,
    "p99_ttft_ms": False,
    "median_tpot_ms": False,
    "median_e2el_ms": False,
    "p99_e2el_ms": False,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="base URL of a running vLLM server")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--tokenizer", help="tokenizer path (default: the engine home's models/MODEL)")
    p.add_argument("--vllm", type=Path, default=ENGINE_HOME / "vllm-env" / "bin" / "vllm", help="vllm executable")
    p.add_argument("--num-prompts", type=int, default=40)
    p.add_argument("--input-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--request-rate", default="inf", help="requests/s, or inf (all at once)")
    p.add_argument("--max-concurrency", type=int, help="cap on requests in flight (default: none)")
    p.add_argument("--rounds", type=int, default=2, help="direct/proxy pairs to run")
    p.add_argument("--out", type=Path, default=Path("bench_serve_proxy"), help="directory for the runs' JSON")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.num_prompts < 1:
        p.error("--rounds and --num-prompts must be at least 1")
    if args.tokenizer is None:
        args.tokenizer = str(ENGINE_HOME / "models" / args.model)
    if not args.vllm.exists():
        p.error(f"no vllm executable at {args.vllm}: run scripts/vllm_setup.sh, or pass --vllm")
    return args


def bench_serve(args: argparse.Namespace, base_url: str, name: str) -> dict[str, Any]:
    """One ``vllm bench serve`` run against ``base_url``; its result JSON."""
    cmd = [str(args.vllm), "bench", "serve", "--backend", "openai", "--base-url", base_url]
    cmd += ["--model", args.model, "--tokenizer", args.tokenizer, "--dataset-name", "random"]
    cmd += ["--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len), "--ignore-eos"]
    cmd += ["--num-prompts", str(args.num_prompts), "--request-rate", str(args.request_rate), "--seed", "0"]
    cmd += ["--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99"]
    if args.max_concurrency:
        cmd += ["--max-concurrency", str(args.max_concurrency)]
    cmd += ["--save-result", "--result-dir", str(args.out), "--result-filename", f"{name}.json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"vllm bench serve against {base_url} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads((args.out / f"{name}.json").read_text())
    if result.get("completed") != args.num_prompts:
        raise RuntimeError(f"{name}: {result.get('completed')} of {args.num_prompts} requests completed")
    return result


def passthrough_count(proxy: str) -> float:
    """Requests the proxy relayed, from its Prometheus metrics (proof the proxied arm went through it)."""
    text = httpx.get(f"{proxy}/metrics", timeout=30).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "dynasor_passthrough_latency_seconds_count"
    )


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per metric: the median over rounds of each arm, and proxy / direct."""
    table: dict[str, dict[str, float]] = {}
    for metric in METRICS:
        direct = statistics.median(r[metric] for r in runs["direct"])
        proxy = statistics.median(r[metric] for r in runs["proxy"])
        table[metric] = {"direct": direct, "proxy": proxy, "ratio": proxy / direct if direct else float("nan")}
    return table


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    upstream = args.upstream.rstrip("/").removesuffix("/v1")
    procs: list[subprocess.Popen[bytes]] = []
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "proxy": []}
    started = time.monotonic()
    try:
        proxy, _ = start_proxy(upstream, args.num_prompts, procs)
        targets = {"direct": upstream, "proxy": proxy}
        for i in range(args.rounds):
            order = ["direct", "proxy"] if i % 2 == 0 else ["proxy", "direct"]
            for arm in order:
                runs[arm].append(bench_serve(args, targets[arm], f"{arm}-{i}"))
                print(f"round {i + 1}/{args.rounds} {arm}: {runs[arm][-1]['request_throughput']:.2f} req/s", flush=True)
        proxied = passthrough_count(proxy)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    table = summarize(runs)
    source = (
        f"real engine (vLLM at {upstream}, model {args.model}); vllm bench serve, random dataset, "
        f"{args.input_len} input / {args.output_len} output tokens (ignore_eos), {args.num_prompts} prompts "
        f"at rate {args.request_rate}, seed 0; median of {args.rounds} runs per arm, alternating"
    )
    print(f"\n{source}")
    print(f"{'metric':<20} {'direct':>10} {'proxy':>10} {'proxy/direct':>13}")
    for metric, row in table.items():
        print(f"{metric:<20} {row['direct']:>10.2f} {row['proxy']:>10.2f} {row['ratio']:>13.3f}")
    print(f"wall time {time.monotonic() - started:.0f} s")
    print(f"requests the proxy relayed: {proxied:.0f}")
    summary = {
        "source": source,
        "table": table,
        "proxied_requests": proxied,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
