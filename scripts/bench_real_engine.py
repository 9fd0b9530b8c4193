"""Scheduling on a live engine where requests queue, and how well the simulated twin predicts it.

    python scripts/bench_real_engine.py --url http://127.0.0.1:8051 --model smollm2 [--out DIR]

1. ``real engine``: ``sc-math`` queries (short samples, so a CPU engine serves them) arrive at
   ``--rate`` for ``--duration`` seconds against the live server; the scheduler keeps at most
   ``--max-seqs`` sequences in flight, so at this rate gangs wait in its queue and the policy
   decides who goes next. ``fcfs`` and ``dynasor`` run one after the other, both with the same
   early exit (scheduling alone), and every completed sample is recorded, per policy.
2. ``simulated``: each policy's twin replays its samples (same questions, answers, lengths and
   order) on the sim engine with the ``--profile`` cost profile, same seed, same scheduler capacity.

Printed: per policy, attainment, p50/p90 latency, queueing time and tokens per query for both,
and how far the simulated p90 latency is from the real one. Everything is written to
``--out/comparison.json``.

``--twin-of DIR`` skips the live runs: it takes the real rows and recorded samples of an earlier
run's ``--out`` DIR and runs only the twins, so one live run can be checked against several cost
profiles (each fitted at another time, or under another load).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eval.bench import PointRun, PointSpec, QueryOutcome, RunConfig, load_workload, run_points, summarize

KNOBS: dict[str, Any] = {
    "max_samples": 6,
    "samples_per_round": 2,
    "max_tokens": 48,
    "instruction": "Give only the final answer, in \\boxed{}.",
}


def _row(run: PointRun, duration: float) -> dict[str, Any]:
    m = summarize(run.outcomes, duration)
    queue = sorted(o.queue_time for o in run.outcomes)
    return {
        "queries": m.queries,
        "attainment": m.attainment,
        "latency_p50_s": m.latency_p50,
        "latency_p90_s": m.latency_p90,
        "queue_time_mean_s": sum(queue) / len(queue) if queue else None,
        "queued_share": sum(q > 0.5 for q in queue) / len(queue) if queue else None,
        "tokens_per_query": m.tokens_per_query,
        "exit_reasons": m.exit_reasons,
    }


def _write_queries(path: Path, outcomes: Iterable[QueryOutcome]) -> None:
    """Every query's outcome, one JSON line each: where the twin and the engine part, query by query."""
    with path.open("w") as f:
        for outcome in sorted(outcomes, key=lambda o: o.arrival):
            f.write(json.dumps(dataclasses.asdict(outcome)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8051")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--profile", default="cpu-tiny")
    parser.add_argument("--rate", type=float, default=0.25, help="queries/s")
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of arrivals per policy")
    parser.add_argument("--slo-scale", type=float, default=0.25, help="deadline = scale x 240 s")
    parser.add_argument("--max-seqs", type=int, default=4, help="sequences the scheduler keeps in flight")
    parser.add_argument("--policies", default="fcfs,dynasor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/real-engine")
    parser.add_argument("--twin-of", default=None, help="an earlier run's --out: replay its samples, no live runs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    earlier = Path(args.twin_of) if args.twin_of else None
    policies = args.policies.split(",")
    common = {
        "duration": args.duration,
        "seed": args.seed,
        "max_seqs": args.max_seqs,
        "early_exit": "all",
        "params": KNOBS,
    }
    real_label = f"real engine ({args.url}, model {args.model})"
    sim_label = f"simulated (profile {args.profile})"
    report: dict[str, Any] = {"config": vars(args) | {"knobs": KNOBS}, "real": {}, "simulated": {}}
    if earlier is not None:
        recorded = json.loads((earlier / "comparison.json").read_text())
        same = ("rate", "duration", "slo_scale", "max_seqs", "seed")
        if any(recorded["config"][k] != getattr(args, k) for k in same):
            raise SystemExit(f"--twin-of {earlier}: give the rate, duration, SLO scale, capacity and seed it ran with")
        real_label = f"real engine ({recorded['config']['url']}, model {recorded['config']['model']})"
    for policy in policies:
        # Each policy's own samples, so that its twin replays exactly what it was served.
        if earlier is not None:
            samples = earlier / f"samples-{policy}.jsonl"
            report["real"][policy] = recorded["real"][policy]
        else:
            samples = out / f"samples-{policy}.jsonl"
            samples.unlink(missing_ok=True)
            live = RunConfig(
                load_workload("sc-math"), upstream=args.url, model=args.model, record_traces=str(samples), **common
            )
            start = time.perf_counter()
            [run] = run_points(live, [PointSpec(policy, args.rate, args.slo_scale, True)])
            report["real"][policy] = _row(run, args.duration) | {"wall_s": time.perf_counter() - start}
            _write_queries(out / f"queries-{policy}-real.jsonl", run.outcomes)
            print(f"[{real_label}] {policy}: {json.dumps(report['real'][policy])}", flush=True)
        twin = RunConfig(load_workload("sc-math").with_recorded(samples), engine_profile=args.profile, **common)
        [run] = run_points(twin, [PointSpec(policy, args.rate, args.slo_scale, True)])
        report["simulated"][policy] = _row(run, args.duration)
        _write_queries(out / f"queries-{policy}-simulated.jsonl", run.outcomes)
    print(f"\n{'policy':>8} | {'run':<34} | attainment | p50 / p90 latency (s) | queued | mean queue (s) | tokens/q")
    for policy in policies:
        for label, side in ((real_label, "real"), (sim_label, "simulated")):
            r = report[side][policy]
            print(
                f"{policy:>8} | {label:<34} | {r['attainment']:10.3f} | "
                f"{r['latency_p50_s']:8.1f} / {r['latency_p90_s']:8.1f} | {r['queued_share']:6.0%} | "
                f"{r['queue_time_mean_s']:14.1f} | {r['tokens_per_query']:8.0f}"
            )
        real_p90, sim_p90 = report["real"][policy]["latency_p90_s"], report["simulated"][policy]["latency_p90_s"]
        error = (sim_p90 - real_p90) / real_p90
        report.setdefault("p90_error", {})[policy] = error
        print(f"{policy:>8} | simulated p90 latency vs real: {error:+.0%}")
    (out / "comparison.json").write_text(json.dumps(report, indent=2))
    print(f"written: {out / 'comparison.json'}, each query's outcome and the recorded samples next to it")


if __name__ == "__main__":
    main()
