"""A whole benchmark: a grid of (arm, rate, SLO scale) points plus, per arm and SLO scale, the
highest rate that keeps 90% attainment; the ratios of those rates are the headline.

An *arm* is a policy with or without early exit. By default every policy runs both ways, so the
report holds the 2x2 ablation (policy x early exit) for each baseline against ``dynasor``:
scheduling alone (the same early exit on both sides), early exit alone (the same policy with
and without), and the whole system (``dynasor`` with early exit against the baseline without).

Arms are independent, so in simulated mode they run in parallel worker processes (``jobs``);
every point still runs on its own fresh engine and virtual clock, so the numbers do not depend
on ``jobs``. Against a live engine everything runs one point at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from dynasor.sched import DEFAULT_POLICY, policy_name
from eval.bench._metrics import TARGET_ATTAINMENT, summarize
from eval.bench._runner import PointRun, PointSpec, RunConfig, arm_label, run_points
from eval.bench._search import RateSearch, find_sustainable_rate

__all__ = ["BenchResult", "Comparison", "PointRecord", "run_bench"]


@dataclass
class PointRecord:
    """One point's figures, as stored in the results file."""

    policy: str
    early_exit: bool
    rate: float
    slo_scale: float
    metrics: dict[str, Any]
    wall_s: float
    loop_s: float
    engine: dict[str, float] = field(default_factory=dict)
    by_preset: dict[str, dict[str, Any]] = field(default_factory=dict)
    queries: list[dict[str, Any]] | None = None

    @property
    def arm(self) -> str:
        return arm_label(self.policy, self.early_exit)


@dataclass(frozen=True)
class Comparison:
    """One ratio of sustainable rates: ``mine`` over ``theirs`` at one SLO scale."""

    kind: str
    """``whole system``, ``scheduling alone`` or ``early exit alone``."""
    mine: str
    theirs: str
    slo_scale: float
    ratio: float | None

    @property
    def key(self) -> str:
        return f"{self.mine}/{self.theirs}"


@dataclass
class BenchResult:
    meta: dict[str, Any]
    points: list[PointRecord]
    searches: dict[str, dict[float, RateSearch]]
    """Per arm label, per SLO scale searched."""

    @property
    def label(self) -> str:
        return str(self.meta["label"])

    def sustainable(self, arm: str, slo_scale: float | None = None) -> float | None:
        """The arm's sustainable rate at ``slo_scale`` (default: the first scale searched)."""
        per_scale = self.searches.get(arm, {})
        if slo_scale is None:
            slo_scale = next(iter(per_scale), None)
        search = per_scale.get(slo_scale) if slo_scale is not None else None
        return None if search is None else search.rate

    def reference_policy(self) -> str:
        """The first policy whose name is the default policy (``dynasor``, with or without knobs)."""
        policies = [str(p) for p in self.meta["policies"]]
        return next((p for p in policies if policy_name(p) == DEFAULT_POLICY), DEFAULT_POLICY)

    def comparisons(self, slo_scale: float | None = None) -> list[Comparison]:
        """The ablation's ratios of sustainable rates at ``slo_scale`` (default: the first searched).

        Against each other policy: the whole system (``dynasor`` with early exit against the other
        without), scheduling alone (both with early exit; both without), and early exit alone
        (each policy with against without); only those whose arms both ran.
        """
        scales = list(self.meta["search_slo_scales"])
        scale = scales[0] if slo_scale is None and scales else slo_scale
        if scale is None:
            return []
        mine = self.reference_policy()
        out: list[Comparison] = []

        def add(kind: str, a: str, b: str) -> None:
            if a in self.searches and b in self.searches and a != b:
                ours, theirs = self.sustainable(a, scale), self.sustainable(b, scale)
                out.append(Comparison(kind, a, b, scale, ours / theirs if ours and theirs else None))

        for other in self.meta["policies"]:
            if other == mine:
                continue
            add("whole system", arm_label(mine, True), arm_label(other, False))
            add("scheduling alone", arm_label(mine, True), arm_label(other, True))
            add("scheduling alone", arm_label(mine, False), arm_label(other, False))
        for policy in self.meta["policies"]:
            add("early exit alone", arm_label(policy, True), arm_label(policy, False))
        return out

    def ratios(self, slo_scale: float | None = None) -> dict[str, float | None]:
        """``{"dynasor+exit/fcfs": ratio, ...}`` at ``slo_scale`` (see :meth:`comparisons`)."""
        return {c.key: c.ratio for c in self.comparisons(slo_scale)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "points": [asdict(p) | {"arm": p.arm} for p in self.points],
            "sustainable_rate": {
                arm: {f"{scale:g}": s.to_dict() for scale, s in per_scale.items()}
                for arm, per_scale in self.searches.items()
            },
            "comparisons": {
                f"{scale:g}": [asdict(c) for c in self.comparisons(scale)] for scale in self.meta["search_slo_scales"]
            },
        }


def _record(config: RunConfig, run: PointRun, early_exit: bool, keep_queries: bool) -> PointRecord:
    metrics = summarize(run.outcomes, config.duration)
    by_preset = {}
    for preset in sorted({o.preset for o in run.outcomes}):
        part = [o for o in run.outcomes if o.preset == preset]
        m = summarize(part, config.duration)
        by_preset[preset] = {"queries": m.queries, "attainment": m.attainment, "accuracy": m.accuracy}
    return PointRecord(
        policy=run.spec.policy,
        early_exit=early_exit,
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
        f"  [{mode}] {record.arm:>14} rate={record.rate:.4g}/s slo={record.slo_scale:g}: "
        f"attainment {m['attainment']:.3f} over {m['queries']} queries "
        f"(p90 latency {m['latency_p90'] or 0:.1f}s, wall {record.wall_s:.1f}s)",
        file=sys.stderr,
        flush=True,
    )


def _arm_job(
    config: RunConfig,
    policy: str,
    early_exit: bool,
    rates: Sequence[float],
    slo_scales: Sequence[float],
    search_scales: Sequence[float],
    rel_tol: float,
    max_probes: int,
    keep_queries: bool,
    verbose: bool,
) -> tuple[list[PointRecord], dict[float, RateSearch]]:
    records: list[PointRecord] = []
    known: dict[tuple[float, float], PointRecord] = {}

    def run(rate: float, scale: float) -> PointRecord:
        if (rate, scale) not in known:
            [point] = run_points(config, [PointSpec(policy, rate, scale, early_exit)])
            record = known[(rate, scale)] = _record(config, point, early_exit, keep_queries)
            if verbose:
                _log(record, config.mode)
            records.append(record)
        return known[(rate, scale)]

    for scale in slo_scales:
        for rate in rates:
            run(rate, scale)
    searches = {}
    for scale in search_scales:
        measured = {r: float(known[(r, scale)].metrics["attainment"]) for r in rates if (r, scale) in known}
        attainment = partial(_attainment, run, scale=scale)
        searches[scale] = find_sustainable_rate(
            attainment, min(rates), target=TARGET_ATTAINMENT, rel_tol=rel_tol, max_probes=max_probes, known=measured
        )
    return records, searches


def _attainment(run: Callable[[float, float], PointRecord], rate: float, *, scale: float) -> float:
    return float(run(rate, scale).metrics["attainment"])


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
    """Run the grid for every arm and (``search``) the sustainable-rate bisection at every SLO scale."""
    if not policies or not rates or not slo_scales:
        raise ValueError("policies, rates and SLO scales must each have at least one value")
    config.workload.check()
    search_scales = list(slo_scales) if search else []
    arms = config.arms(policies)
    args = [
        (config, p, e, list(rates), list(slo_scales), search_scales, rel_tol, max_probes, keep_queries, verbose)
        for p, e in arms
    ]
    if jobs > 1 and not config.upstream and len(arms) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(arms))) as pool:
            outcomes = list(pool.map(_arm_job, *zip(*args, strict=True)))
    else:
        outcomes = [_arm_job(*a) for a in args]
    points = [r for records, _ in outcomes for r in records]
    searches = {arm_label(p, e): s for (p, e), (_, s) in zip(arms, outcomes, strict=True) if s}
    return BenchResult(_meta(config, policies, arms, rates, slo_scales, search_scales, rel_tol), points, searches)


def _meta(
    config: RunConfig,
    policies: Sequence[str],
    arms: Sequence[tuple[str, bool]],
    rates: Sequence[float],
    slo_scales: Sequence[float],
    search_scales: Sequence[float],
    rel_tol: float,
) -> dict[str, Any]:
    workload = config.workload
    if config.upstream:
        label = f"real engine ({config.upstream}, model {config.model or 'as served'})"
    else:
        label = f"simulated (profile {config.engine_profile})"
        if config.replicas is not None:
            replicas = f"{config.replicas} replica{'s' if config.replicas != 1 else ''}"
            label = f"simulated (profile {config.engine_profile}, {replicas} behind the proxy's pool)"
    return {
        "label": label,
        "mode": config.mode,
        "engine_profile": None if config.upstream else config.engine_profile,
        "prefix_caching": None if config.upstream else config.prefix_caching,
        "scheduler_max_seqs": config.max_seqs,
        "replicas": config.replicas,
        "replica_failure": None if config.replica_failure is None else asdict(config.replica_failure),
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
        "budget_notes": workload.budget_notes(config.params),
        "arrivals": config.arrivals.describe(),
        "duration_s": config.duration,
        "keep_load": config.keep_load,
        "seed": config.seed,
        "policies": list(policies),
        "arms": [arm_label(p, e) for p, e in arms],
        "rates": list(rates),
        "slo_scales": list(slo_scales),
        "search_slo_scales": list(search_scales),
        "search_rel_tol": rel_tol,
        "target_attainment": TARGET_ATTAINMENT,
        "early_exit": config.early_exit,
        "stop_rules": "the allocator's bundled defaults" if config.allocator is None else "a given allocator config",
        "deadline_cut": "every policy: a query is stopped at its deadline and counted as a miss",
    }
