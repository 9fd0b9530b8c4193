"""Online serving benchmark: deadline attainment under load, policy against policy.

Drives the runtime with queries arriving over time (Poisson, bursty Gamma, or a recorded
timestamp file), on the simulated engine in virtual time or on a live engine in real time,
and reports attainment, latency, goodput, accuracy, tokens and fairness per point, plus
each policy's highest rate at 90% attainment. See ``docs/bench.md``.
"""

from eval.bench._arrivals import (
    Arrivals,
    GammaArrivals,
    PoissonArrivals,
    ReplayArrivals,
    make_arrivals,
    read_timestamps,
)
from eval.bench._bench import BenchResult, Comparison, PointRecord, run_bench
from eval.bench._failure import ReplicaFailure, parse_failure
from eval.bench._metrics import PointMetrics, QueryOutcome, summarize
from eval.bench._report import ablation_rows, headline, plot, summary_rows, write_json
from eval.bench._runner import (
    EARLY_EXIT_CHOICES,
    PointRun,
    PointSpec,
    RunConfig,
    arm_label,
    run_point,
    run_points,
)
from eval.bench._search import RateSearch, find_sustainable_rate
from eval.bench._workloads import PRESETS, WORKLOADS, Preset, Workload, WorkloadQuery, load_workload

__all__ = [
    "EARLY_EXIT_CHOICES",
    "PRESETS",
    "WORKLOADS",
    "Arrivals",
    "BenchResult",
    "Comparison",
    "GammaArrivals",
    "PointMetrics",
    "PointRecord",
    "PointRun",
    "PointSpec",
    "PoissonArrivals",
    "Preset",
    "QueryOutcome",
    "RateSearch",
    "ReplayArrivals",
    "ReplicaFailure",
    "RunConfig",
    "Workload",
    "WorkloadQuery",
    "ablation_rows",
    "arm_label",
    "find_sustainable_rate",
    "headline",
    "load_workload",
    "make_arrivals",
    "parse_failure",
    "plot",
    "read_timestamps",
    "run_bench",
    "run_point",
    "run_points",
    "summarize",
    "summary_rows",
    "write_json",
]
