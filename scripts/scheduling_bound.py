"""The most any scheduling order can sustain at P90 attainment, on the simulated engine.

    python scripts/scheduling_bound.py --workload sc-math [--measured fcfs=9.0,dynasor=9.45]

At steady load an engine serves at most ``C`` tokens per second whatever order it is given, and a
query meets its deadline only if all of its work is served. A policy that must finish a share
``a`` of the queries (0.9 for P90 attainment) therefore sustains at most

    rate* = C / (sum of the lightest ceil(a*N) queries' work / N)

arrivals per second: the rate of an oracle that knows every query's work in advance, serves the
lightest share ``a`` and drops the rest before they cost anything. A policy that finishes every query
sustains ``C / mean work``. The ratio of the two is the most any order (SJF, gang, aging, deadline
shedding) can add over serving every query, and ``rate* / measured rate`` is the headroom a
measured policy leaves.

Work per query is measured on the simulated engine with the workload's own stop rule (early exit as
``--early-exit`` says), unloaded, so no deadline cuts it; ``C`` is the engine's completion tokens per
busy second when saturated (each ``--saturated-policies`` run, the highest taken, which favours the
oracle). Prompt prefill is folded into ``C`` (its share is printed): a mix of lighter queries has
no less prefill per completion token, so folding it in does not lower the bound. Figures are
``simulated (profile ...)``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence

import numpy as np

from eval.bench import PointSpec, RunConfig, load_workload, run_points


def oracle_rate(work: Sequence[float], throughput: float, attainment: float = 0.9) -> float:
    """Highest arrival rate at which ``attainment`` of queries like ``work`` can all be finished
    by an engine serving ``throughput`` units of work per second: the lightest share is served,
    the rest dropped unserved."""
    if not work:
        raise ValueError("no queries")
    if not 0.0 < attainment <= 1.0:
        raise ValueError(f"attainment must be in (0, 1], not {attainment}")
    kept = math.ceil(attainment * len(work) - 1e-9)
    lightest = float(np.sort(np.asarray(work, dtype=float))[:kept].sum())
    return throughput * len(work) / lightest


def all_served_rate(work: Sequence[float], throughput: float) -> float:
    """Highest arrival rate at which every query like ``work`` is finished: ``throughput / mean``."""
    if not work:
        raise ValueError("no queries")
    return throughput / float(np.mean(np.asarray(work, dtype=float)))


def _measured(text: str) -> dict[str, float]:
    rates = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--measured takes POLICY=RATE pairs, got {item!r}")
        rates[name.strip()] = float(value)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="sc-math")
    parser.add_argument("--profile", default="h100-llama3-8b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--early-exit", choices=("on", "off"), default="on")
    parser.add_argument("--attainment", type=float, default=0.9)
    parser.add_argument("--unloaded-rate", type=float, default=0.5, help="queries/s of the work-measuring run")
    parser.add_argument("--unloaded-duration", type=float, default=4000.0, help="seconds of its arrivals")
    parser.add_argument("--saturated-rate", type=float, default=20.0, help="queries/s of the throughput runs")
    parser.add_argument("--saturated-duration", type=float, default=300.0)
    parser.add_argument("--saturated-policies", default="fcfs,dynasor")
    parser.add_argument("--measured", default="", help="POLICY=RATE,... sustainable rates to compare")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()

    early = args.early_exit == "on"
    workload = load_workload(args.workload)

    def config(duration: float) -> RunConfig:
        return RunConfig(
            workload,
            duration=duration,
            seed=args.seed,
            engine_profile=args.profile,
            early_exit="all" if early else "none",
        )

    (unloaded,) = run_points(config(args.unloaded_duration), [PointSpec("fcfs", args.unloaded_rate, 1.0, early)])
    work = [float(o.completion_tokens) for o in unloaded.outcomes]
    queued = sum(o.queue_time > 0 for o in unloaded.outcomes)
    missed = sum(not o.attained for o in unloaded.outcomes)

    saturated = {}
    for policy in filter(None, (p.strip() for p in args.saturated_policies.split(","))):
        (run,) = run_points(config(args.saturated_duration), [PointSpec(policy, args.saturated_rate, 1.0, early)])
        counters = run.engine
        saturated[policy] = {
            "tokens_per_busy_s": counters["tokens_generated"] / counters["busy_time_s"],
            "prefill_share": counters["prompt_tokens_prefilled"]
            / (counters["prompt_tokens_prefilled"] + counters["tokens_generated"]),
        }
    throughput = max(s["tokens_per_busy_s"] for s in saturated.values())

    every = all_served_rate(work, throughput)
    best = oracle_rate(work, throughput, args.attainment)
    figures = {
        "label": f"simulated (profile {args.profile})",
        "workload": args.workload,
        "early_exit": early,
        "attainment": args.attainment,
        "queries": len(work),
        "unloaded_queued": queued,
        "unloaded_missed": missed,
        "work_mean_tokens": float(np.mean(work)),
        "work_p50_p90_p99_tokens": [float(np.percentile(work, q)) for q in (50, 90, 99)],
        "heaviest_share_of_work": 1.0 - (every / best),
        "saturated": saturated,
        "throughput_tokens_per_s": throughput,
        "all_served_rate": every,
        "oracle_rate": best,
        "oracle_over_all_served": best / every,
    }
    measured = _measured(args.measured)
    if measured:
        figures["oracle_over_measured"] = {name: best / rate for name, rate in measured.items()}
    print(json.dumps(figures, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
