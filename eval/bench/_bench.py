"""A whole benchmark: a grid of (policy, rate, SLO scale) points plus, per policy, the
highest rate that keeps 90% attainment; the ratios of those rates are the headline.

Policies are independent, so in simulated mode they run in parallel worker processes
(``jobs``); every point still runs on its own fresh engine and virtual clock, so the numbers
do not depend on ``jobs``. Against a live engine everything runs one point at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from dynasor.sched import DEFAULT_POLICY, policy_name
from eval.bench._metrics import TARGET_ATTAINMENT, summarize
from eval.bench._runner import PointRun, PointSpec, RunConfig, run_points
from eval.bench._search import RateSearch, find_sustainable_rate

__all__ = ["BenchResult", "PointRecord", "run_bench"]


@dataclass
class PointRecord:
    """One point's figures, as stored in the results file."""

    policy: str
    rate: float
    slo_scale: float
    metrics: dict[str, Any]
    wall_s: float
    loop_s: float
    engine: dict[str, float] = field(default_factory=dict)
    by_preset: dict[str, dict[str, Any]] = field(default_factory=dict)
    queries: list[dict[str, Any]] | None = None


@dataclass
class BenchResult:
    meta: dict[str, Any]
    points: list[PointRecord]
    searches: dict[str, RateSearch]

    @property
    def label(self) -> str:
        return str(self.meta["label"])

    def sustainable(self, policy: str) -> float | None:
        search = self.searches.get(policy)
        return None if search is None else search.rate

    def ratios(self) -> dict[str, float | None]:
        """``dynasor / X`` of sustainable rates, for every other policy searched.

        The reference is the first policy searched whose name is the default policy, ``dynasor``
        (with or without knobs).
        """
        reference = next((p for p in self.searches if policy_name(p) == DEFAULT_POLICY), DEFAULT_POLICY)
        mine = self.sustainable(reference)
        out: dict[str, float | None] = {}
        for policy in self.searches:
            if policy == reference:
                continue
            theirs = self.sustainable(policy)
            out[f"{reference}/{policy}"] = mine / theirs if mine and theirs else None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "points": [asdict(p) for p in self.points],
            "sustainable_rate": {p: s.to_dict() for p, s in self.searches.items()},
            "ratios": self.ratios(),
        }


def _record(config: RunConfig, run: PointRun, keep_queries: bool) -> PointRecord:
    metrics = summarize(run.outcomes, config.duration)
    by_preset = {}
    for preset in sorted({o.preset for o in run.outcomes}):
        part = [o for o in run.outcomes if o.preset == preset]
        m = summarize(part, config.duration)
        by_preset[preset] = {"queries": m.queries, "attainment": m.attainment, "accuracy": m.accuracy}
    return PointRecord(
        policy=run.spec.policy,
        rate=run.spec.rate,
        slo_scale=run.spec.slo_scale,
        metrics=metrics.to_dict(),
        wall_s=run.wall_s,
        loop_s=run.loop_s,
        engine=run.engine,
        by_preset=by_preset if len(by_preset) > 1 else {},
        queries=[asdict(o) for o in run.outcomes] if keep_queries else None,
    )


def _log(record: PointRecord, mode: str) -> None:
    m = record.metrics
    print(
        f"  [{mode}] {record.policy:>10} rate={record.rate:.4g}/s slo={record.slo_scale:g}: "
        f"attainment {m['attainment']:.3f} over {m['queries']} queries "
        f"(p90 latency {m['latency_p90'] or 0:.1f}s, wall {record.wall_s:.1f}s)",
        file=sys.stderr,
        flush=True,
    )


def _policy_job(
    config: RunConfig,
    policy: str,
    rates: Sequence[float],
    slo_scales: Sequence[float],
    search_scale: float | None,
    rel_tol: float,
    max_probes: int,
    keep_queries: bool,
    verbose: bool,
) -> tuple[list[PointRecord], RateSearch | None]:
    records: list[PointRecord] = []

    def run(rate: float, scale: float) -> PointRecord:
        [point] = run_points(config, [PointSpec(policy, rate, scale)])
        record = _record(config, point, keep_queries)
        if verbose:
            _log(record, config.mode)
        records.append(record)
        return record

    grid = {(rate, scale): run(rate, scale) for scale in slo_scales for rate in rates}
    search = None
    if search_scale is not None:
        passing = [r for r in rates if grid.get((r, search_scale)) and grid[(r, search_scale)].metrics["p90_attained"]]
        start = max(passing) if passing else min(rates)

        def attainment(rate: float) -> float:
            known = grid.get((rate, search_scale))
            record = known if known is not None else run(rate, search_scale)
            return float(record.metrics["attainment"])

        search = find_sustainable_rate(
            attainment, start, target=TARGET_ATTAINMENT, rel_tol=rel_tol, max_probes=max_probes
        )
    return records, search


def run_bench(
    config: RunConfig,
    policies: Sequence[str],
    rates: Sequence[float],
    slo_scales: Sequence[float],
    *,
    search: bool = True,
    rel_tol: float = 0.05,
    max_probes: int = 12,
    jobs: int = 1,
    keep_queries: bool = False,
    verbose: bool = True,
) -> BenchResult:
    """Run the grid and (``search``) the sustainable-rate bisection at the first SLO scale."""
    if not policies or not rates or not slo_scales:
        raise ValueError("policies, rates and SLO scales must each have at least one value")
    config.workload.check()
    search_scale = slo_scales[0] if search else None
    args = [
        (config, p, list(rates), list(slo_scales), search_scale, rel_tol, max_probes, keep_queries, verbose)
        for p in policies
    ]
    if jobs > 1 and not config.upstream and len(policies) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(policies))) as pool:
            outcomes = list(pool.map(_policy_job, *zip(*args, strict=True)))
    else:
        outcomes = [_policy_job(*a) for a in args]
    points = [r for records, _ in outcomes for r in records]
    searches = {p: s for p, (_, s) in zip(policies, outcomes, strict=True) if s is not None}
    return BenchResult(_meta(config, policies, rates, slo_scales, search_scale, rel_tol), points, searches)


def _meta(
    config: RunConfig,
    policies: Sequence[str],
    rates: Sequence[float],
    slo_scales: Sequence[float],
    search_scale: float | None,
    rel_tol: float,
) -> dict[str, Any]:
    workload = config.workload
    if config.upstream:
        label = f"real engine ({config.upstream}, model {config.model or 'as served'})"
    else:
        label = f"simulated (profile {config.engine_profile})"
    return {
        "label": label,
        "mode": config.mode,
        "engine_profile": None if config.upstream else config.engine_profile,
        "upstream": config.upstream,
        "model": config.model,
        "workload": workload.name,
        "presets": [
            {
                "name": p.name,
                "algorithm": p.algorithm,
                "params": dict(p.params) | dict(config.params),
                "base_deadline_s": p.base_deadline,
                "pool": p.pool,
                "content": "recorded traces" if p.content == "replay" else "synthetic",
            }
            for p in workload.presets
        ],
        "arrivals": config.arrivals.describe(),
        "duration_s": config.duration,
        "seed": config.seed,
        "policies": list(policies),
        "rates": list(rates),
        "slo_scales": list(slo_scales),
        "search_slo_scale": search_scale,
        "search_rel_tol": rel_tol,
        "target_attainment": TARGET_ATTAINMENT,
        "early_exit": config.early_exit,
        "deadline_cut": "every policy: a query is stopped at its deadline and counted as a miss",
    }
