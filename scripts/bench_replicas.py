"""One benchmark point over N simulated replicas behind the proxy's pool: attainment, balance, CPU, memory.

    python scripts/bench_replicas.py --replicas 64 --rate-per-replica 8 --duration 20 --memory-step 500
    python scripts/bench_replicas.py --replicas 8 --rate-per-replica 20 --duration 60 --fail-replica 3@30

Prints one JSON object. Figures are ``simulated (profile ...)`` in virtual time, except the CPU and
memory figures, which are this process's own on the machine that ran it:

- ``cpu_s``: CPU time of the whole run (``time.process_time``): the proxy-side work (runtime, gang
  scheduler, allocator and Certaindex, the programs, the upstream pool and its health probes) *and*
  the simulated engines and their trace replay, so an upper bound on the proxy's own share.
- ``cores_per_1000_programs_per_s``: ``cpu_s / loop_s`` (cores busy) over ``programs / loop_s``
  (programs run to their end per virtual second; the CPU of programs cancelled part-way at the end
  is charged to them), times 1,000; ``programs_per_s_per_core`` is the ceiling it implies.
- ``rss_per_query_in_flight``: (RSS at the most queries in flight - RSS before the first arrival) /
  that many queries (run one point per process, so no earlier run's memory is counted).

``--no-failure-baseline`` skips the run without the failure that a ``--fail-replica`` run is
compared with (attainment with and without).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

from eval.bench import PointRun, PointSpec, RunConfig, load_workload, parse_failure, run_points, summarize


def _point(config: RunConfig, spec: PointSpec) -> tuple[PointRun, float]:
    cpu0 = time.process_time()
    [run] = run_points(config, [spec])
    return run, time.process_time() - cpu0


def _figures(config: RunConfig, run: PointRun, cpu_s: float) -> dict[str, Any]:
    assert run.fleet is not None
    stats = run.fleet.stats
    m = summarize(run.outcomes, config.duration)
    programs = stats.programs_finished  # the CPU of cancelled ones is charged to these: an upper bound
    out: dict[str, Any] = {
        "scored_queries": m.queries,
        "attainment": m.attainment,
        "latency_p90_s": m.latency_p90,
        "tokens_per_query": m.tokens_per_query,
        "accuracy": m.accuracy,
        "programs_run": programs,
        "programs_cancelled": stats.programs_cancelled,
        "loop_s": run.loop_s,
        "wall_s": run.wall_s,
        "cpu_s": cpu_s,
        "cpu_ms_per_program": 1000 * cpu_s / programs,
        "cores_per_1000_programs_per_s": 1000 * cpu_s / programs,
        "programs_per_s_per_core": programs / cpu_s,
        "peak_queries_bound": run.engine["peak_queries_bound"],
        "engine": run.engine,
    }
    if stats.rss_samples:
        out["rss_start_mib"] = stats.rss_start / 2**20
        out["rss_at_peak_mib"] = stats.rss_at_peak / 2**20
        out["peak_in_flight_sampled"] = stats.rss_samples[-1][0]
        out["rss_per_query_in_flight_kib"] = (stats.rss_at_peak - stats.rss_start) / stats.rss_samples[-1][0] / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, required=True)
    parser.add_argument("--rate-per-replica", type=float, required=True, help="queries/s per replica")
    parser.add_argument("--workload", default="sc-math")
    parser.add_argument("--policy", default="dynasor")
    parser.add_argument("--early-exit", choices=("on", "off"), default="on")
    parser.add_argument("--slo-scale", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--profile", default="h100-llama3-8b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-step", type=int, default=0, help="sample RSS every this many queries in flight")
    parser.add_argument("--fail-replica", default=None, help="INDEX@SECONDS")
    parser.add_argument("--no-failure-baseline", action="store_true")
    parser.add_argument("--drain", action="store_true", help="arrivals stop at --duration (default: load goes on)")
    args = parser.parse_args()

    config = RunConfig(
        load_workload(args.workload),
        duration=args.duration,
        keep_load=not args.drain,
        seed=args.seed,
        engine_profile=args.profile,
        early_exit="all" if args.early_exit == "on" else "none",
        replicas=args.replicas,
        memory_step=args.memory_step,
    )
    spec = PointSpec(args.policy, args.rate_per_replica * args.replicas, args.slo_scale)
    report: dict[str, Any] = {
        "label": f"simulated (profile {args.profile}), {args.replicas} replicas behind the proxy's pool",
        "args": vars(args),
    }
    if args.fail_replica is None or not args.no_failure_baseline:
        run, cpu_s = _point(config, spec)
        report["healthy"] = _figures(config, run, cpu_s)
    if args.fail_replica is not None:
        failing = replace(config, replica_failure=parse_failure(args.fail_replica), memory_step=0)
        run, cpu_s = _point(failing, spec)
        report["with_failure"] = _figures(failing, run, cpu_s)
    print(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
