"""Finish-time fairness against request-FCFS, query by query, on the simulated engine.

    python scripts/fairness_vs_fcfs.py --workload sc-math --rate 20 --slo-scale 1.0 [--policy dynasor]

Runs ``fcfs`` and ``--policy`` on the same arrivals and content (same seed), pairs every scored
query with itself, and prints how much later each finished under the policy than under fcfs:
the distribution of latency(policy) / latency(fcfs), the queries slowed more than ``--bound``
times, and how long those took under each. Both arms get the same early exit (``--early-exit``
both on or both off), so only the order differs. Figures are ``simulated (profile ...)``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from eval.bench import PointSpec, RunConfig, load_workload, run_points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="sc-math")
    parser.add_argument("--rate", type=float, required=True, help="queries/s")
    parser.add_argument("--slo-scale", type=float, default=1.0)
    parser.add_argument("--policy", default="dynasor")
    parser.add_argument("--early-exit", choices=("on", "off"), default="on")
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--profile", default="h100-llama3-8b")
    parser.add_argument("--max-seqs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bound", type=float, default=3.0, help="slowdown against fcfs that counts as unfair")
    args = parser.parse_args()

    early = args.early_exit == "on"
    config = RunConfig(
        load_workload(args.workload),
        duration=args.duration,
        seed=args.seed,
        engine_profile=args.profile,
        max_seqs=args.max_seqs,
        early_exit="all" if early else "none",
    )
    base, other = run_points(
        config,
        [PointSpec("fcfs", args.rate, args.slo_scale, early), PointSpec(args.policy, args.rate, args.slo_scale, early)],
    )
    fcfs = {o.id: o for o in base.outcomes}
    pairs = [(fcfs[o.id], o) for o in other.outcomes if o.id in fcfs]
    ratios = np.array([o.latency / max(b.latency, 1e-9) for b, o in pairs])
    unfair = [(b, o) for b, o in pairs if o.latency > args.bound * b.latency]
    label = f"simulated (profile {args.profile})"
    summary = {
        "label": label,
        "workload": args.workload,
        "rate": args.rate,
        "slo_scale": args.slo_scale,
        "early_exit": early,
        "queries": len(pairs),
        "attainment": {
            "fcfs": sum(b.attained for b, _ in pairs) / len(pairs),
            args.policy: sum(o.attained for _, o in pairs) / len(pairs),
        },
        "ratio_median": float(np.median(ratios)),
        "ratio_p99": float(np.quantile(ratios, 0.99)),
        "ratio_max": float(ratios.max()),
        f"over_{args.bound:g}x": len(unfair),
        f"over_{args.bound:g}x_fcfs_latency_max_s": max((b.latency for b, _ in unfair), default=None),
        f"over_{args.bound:g}x_latency_max_s": max((o.latency for _, o in unfair), default=None),
        f"over_{args.bound:g}x_missed_deadline": sum(not o.attained for _, o in unfair),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
