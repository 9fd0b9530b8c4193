"""Figures of an evaluation run: summary, threshold sweep, oracle stop, profiling records.

Everything here is computed from ``results.jsonl`` alone, so a resumed run reports on all of
its queries. The sweep replays the allocator's rule on the *fixed-budget* trajectories: with
rule ``(m, t)`` a query stops at its first report ``k >= m`` with certaindex ``>= t`` (else it
runs to the end), costing the tokens generated up to that report and answering what it
answered then. For programs that wait for each step's whole gang before reporting (``sc``)
this is exactly what the early-exit arm would have done on the same samples.

The oracle stops every query at its first report whose answer is right (queries never right
stop at their first report): the least compute any stopping rule on these trajectories could
spend for at least the fixed-budget accuracy.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certaindex import ProfilingRecord, write_records

__all__ = [
    "SweepPoint",
    "apply_rule",
    "arm_summary",
    "best_within",
    "crossfit",
    "oracle",
    "pareto_front",
    "profile_records",
    "stop_index",
    "summarize",
    "sweep",
    "write_profile",
    "write_summary",
]

ACCURACY_LOSS_POINTS = 0.5
"""Accuracy loss (percentage points) the headline saving is reported at."""


def stop_index(trajectory: Sequence[Mapping[str, Any]], min_step: int, threshold: float) -> int:
    """Index of the report at which rule ``(min_step, threshold)`` stops (the last one if never).

    >>> traj = [{"step": 1, "value": 0.9}, {"step": 2, "value": 0.5}, {"step": 3, "value": 0.8}]
    >>> stop_index(traj, 2, 0.7), stop_index(traj, 1, 0.7), stop_index(traj, 1, 0.95)
    (2, 0, 2)
    """
    for i, point in enumerate(trajectory):
        if point["step"] >= min_step and point["value"] >= threshold:
            return i
    return len(trajectory) - 1


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """Accuracy and cost of one stopping rule over all queries."""

    min_step: int
    threshold: float
    accuracy: float
    tokens_mean: float
    saving: float
    """Fraction of the fixed-budget tokens not spent."""

    def to_dict(self) -> dict[str, float]:
        return {
            "min_step": self.min_step,
            "threshold": round(self.threshold, 6),
            "accuracy": self.accuracy,
            "tokens_mean": self.tokens_mean,
            "saving": self.saving,
        }


def _fixed(records: Iterable[Mapping[str, Any]]) -> list[tuple[list[Mapping[str, Any]], bool, int]]:
    """(trajectory, final correctness, tokens) of each query's fixed-budget arm."""
    rows = []
    for record in records:
        base = record.get("baseline")
        if base is not None:
            rows.append((list(base.get("trajectory") or []), bool(base["correct"]), int(base["tokens"])))
    return rows


def _at(row: tuple[list[Mapping[str, Any]], bool, int], index: int) -> tuple[bool, int]:
    trajectory, correct, tokens = row
    if not trajectory:
        return correct, tokens
    if index == len(trajectory) - 1:
        return correct, tokens  # ran to the end: the arm's own final answer and usage
    point = trajectory[index]
    return bool(point["correct"]), int(point["tokens"])


def sweep(
    records: Iterable[Mapping[str, Any]],
    thresholds: Sequence[float] | None = None,
    min_steps: Sequence[int] = (1, 2, 3, 4),
) -> list[SweepPoint]:
    """Accuracy and mean tokens of every rule ``(min_step, threshold)`` on the fixed trajectories."""
    rows = _fixed(records)
    if not rows:
        return []
    fixed_tokens = sum(r[2] for r in rows)
    if thresholds is None:
        observed = {round(float(p["value"]), 6) for r in rows for p in r[0]}
        thresholds = sorted(observed | {i / 20 for i in range(21)})
    points = []
    for m in min_steps:
        for t in thresholds:
            outcomes = [_at(row, stop_index(row[0], m, t)) for row in rows]
            tokens = sum(o[1] for o in outcomes)
            points.append(
                SweepPoint(
                    m,
                    float(t),
                    sum(o[0] for o in outcomes) / len(rows),
                    tokens / len(rows),
                    1.0 - tokens / fixed_tokens if fixed_tokens else 0.0,
                )
            )
    return points


def pareto_front(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """Points no other point beats on both accuracy (higher) and tokens (lower), by tokens."""
    front: list[SweepPoint] = []
    for p in sorted(points, key=lambda p: (p.tokens_mean, -p.accuracy)):
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
    return front


def best_within(points: Sequence[SweepPoint], fixed_accuracy: float, loss_points: float) -> SweepPoint | None:
    """The rule with the largest saving whose accuracy is at most ``loss_points`` below fixed."""
    ok = [p for p in points if p.accuracy >= fixed_accuracy - loss_points / 100 - 1e-12]
    return max(ok, key=lambda p: (p.saving, p.accuracy, p.threshold), default=None)


def apply_rule(records: Iterable[Mapping[str, Any]], min_step: int, threshold: float) -> tuple[int, int, int, int]:
    """``(right, tokens, fixed_right, fixed_tokens)`` summed over queries when rule ``(m, t)`` stops them."""
    right = tokens = fixed_right = fixed_tokens = 0
    for row in _fixed(records):
        ok, spent = _at(row, stop_index(row[0], min_step, threshold))
        right += ok
        tokens += spent
        fixed_right += row[1]
        fixed_tokens += row[2]
    return right, tokens, fixed_right, fixed_tokens


def crossfit(
    records: Sequence[Mapping[str, Any]], loss_points: float = ACCURACY_LOSS_POINTS, folds: int = 5
) -> dict[str, Any] | None:
    """Held-out estimate of :func:`best_within`: choose the rule on the other folds, score it on this one.

    The in-sample best rule is picked on the very queries it is scored on, which flatters it;
    here every query is scored by a rule chosen without it (``folds``-fold cross-fitting,
    queries assigned to folds round-robin in id order).
    """
    rows = [r for r in records if r.get("baseline") is not None]
    if len(rows) < 2 * folds:
        return None
    ordered = sorted(rows, key=lambda r: str(r["id"]))
    right = tokens = fixed_right = fixed_tokens = 0
    rules = []
    for k in range(folds):
        held = ordered[k::folds]
        train = [r for i, r in enumerate(ordered) if i % folds != k]
        train_fixed = sum(bool(r["baseline"]["correct"]) for r in train) / len(train)
        best = best_within(sweep(train), train_fixed, loss_points)
        rule = (best.min_step, best.threshold) if best is not None else (1, 2.0)  # 2.0: never stop early
        rules.append({"min_step": rule[0], "threshold": rule[1]})
        a, b, c, d = apply_rule(held, *rule)
        right, tokens, fixed_right, fixed_tokens = right + a, tokens + b, fixed_right + c, fixed_tokens + d
    n = len(ordered)
    return {
        "folds": folds,
        "accuracy": right / n,
        "fixed_accuracy": fixed_right / n,
        "accuracy_delta_points": 100.0 * (right - fixed_right) / n,
        "saving": 1.0 - tokens / fixed_tokens if fixed_tokens else 0.0,
        "rules": rules,
    }


def oracle(records: Iterable[Mapping[str, Any]]) -> dict[str, float] | None:
    """Accuracy and cost of stopping each query at its first right report (see module doc)."""
    rows = _fixed(records)
    if not rows:
        return None
    outcomes = []
    for row in rows:
        right = [i for i, p in enumerate(row[0]) if p["correct"]]
        outcomes.append(_at(row, right[0] if right else 0))
    fixed_tokens = sum(r[2] for r in rows)
    tokens = sum(o[1] for o in outcomes)
    return {
        "accuracy": sum(o[0] for o in outcomes) / len(rows),
        "tokens_mean": tokens / len(rows),
        "saving": 1.0 - tokens / fixed_tokens if fixed_tokens else 0.0,
    }


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def arm_summary(arms: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy, tokens, samples, latency and exit reasons of one arm over its queries."""
    n = len(arms)
    if n == 0:
        return {"queries": 0}
    latencies = [float(a["latency"]) for a in arms]
    tokens = [int(a["tokens"]) for a in arms]
    return {
        "queries": n,
        "accuracy": sum(bool(a["correct"]) for a in arms) / n,
        "tokens_total": sum(tokens),
        "tokens_mean": sum(tokens) / n,
        "samples_mean": sum(int(a["samples"]) for a in arms) / n,
        "latency_mean_s": statistics.fmean(latencies),
        "latency_p50_s": _quantile(latencies, 0.5),
        "latency_p90_s": _quantile(latencies, 0.9),
        "exit_reasons": dict(Counter(str(a["exit_reason"]) for a in arms)),
        "errors": sum(1 for a in arms if a.get("error")),
    }


def summarize(
    records: Sequence[Mapping[str, Any]],
    *,
    run: Mapping[str, Any],
    rule: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` of a run: both arms, the saving, the sweep, the oracle.

    ``run`` carries the configuration and backend label (``run.json``); ``rule`` is the
    early-exit arm's stop rule (marked in the sweep).
    """
    backend = dict(run.get("backend") or {})
    early = arm_summary(records)
    summary: dict[str, Any] = {
        "label": backend.get("kind", "unknown"),
        "backend": backend.get("label"),
        "config": run.get("config"),
        "queries": len(records),
        "early_exit": early,
        "early_exit_rule": dict(rule) if rule else None,
    }
    baseline = [r["baseline"] for r in records if r.get("baseline") is not None]
    if baseline and len(baseline) == len(records):
        fixed = arm_summary(baseline)
        summary["fixed_budget"] = fixed
        summary["comparison"] = _comparison(backend.get("kind"))
        summary["saving"] = {
            "tokens": 1.0 - early["tokens_total"] / fixed["tokens_total"] if fixed["tokens_total"] else 0.0,
            "accuracy_delta_points": 100.0 * (early["accuracy"] - fixed["accuracy"]),
            "latency_mean": 1.0 - early["latency_mean_s"] / fixed["latency_mean_s"] if fixed["latency_mean_s"] else 0.0,
        }
        points = sweep(records)
        best = best_within(points, fixed["accuracy"], ACCURACY_LOSS_POINTS)
        summary["sweep"] = [p.to_dict() for p in points]
        summary["pareto"] = [p.to_dict() for p in pareto_front(points)]
        summary[f"best_within_{ACCURACY_LOSS_POINTS}pt"] = None if best is None else best.to_dict()
        if rule and rule.get("threshold") is not None:
            # The configured rule replayed on the fixed arm's own samples: the same-samples
            # comparison even where the two arms sampled independently (live engines).
            right, tokens, fixed_right, fixed_tokens = apply_rule(records, int(rule["min_step"]), rule["threshold"])
            summary["early_exit_on_fixed_samples"] = {
                "accuracy": right / len(records),
                "tokens_mean": tokens / len(records),
                "saving": 1.0 - tokens / fixed_tokens if fixed_tokens else 0.0,
                "accuracy_delta_points": 100.0 * (right - fixed_right) / len(records),
            }
        summary[f"best_within_{ACCURACY_LOSS_POINTS}pt_crossfit"] = crossfit(records)
        summary["oracle"] = oracle(records)
    return summary


def _comparison(kind: str | None) -> str:
    if kind == "replay":
        return "exact: both arms drew the same recorded samples in the same order"
    if kind == "simulated":
        return "exact: both arms drew the same seeded synthetic samples"
    return (
        "independent samples: the engine was not asked for per-sample seeds, so the arms sampled "
        "separately (the sweep and oracle use the fixed-budget arm's own trajectories)"
    )


def profile_records(
    records: Iterable[Mapping[str, Any]],
    algorithm: str,
    *,
    dataset: str | None = None,
    tokens_exact: bool = True,
) -> list[ProfilingRecord]:
    """Per query and report: certaindex values and correctness, for ``dynasor calibrate``.

    In :class:`certaindex.ProfilingRecord` form, from the fixed-budget trajectories: a query's
    last record must be its full-budget run, so runs without the baseline give none.
    """
    out = []
    for record in records:
        arm = record.get("baseline")
        if arm is None:
            continue
        for point in arm.get("trajectory") or []:
            out.append(
                ProfilingRecord(
                    query_id=str(record["id"]),
                    algorithm=algorithm,
                    step=int(point["step"]),
                    samples=int(point["samples"]),
                    tokens=int(point["tokens"]),
                    certaindex={point["measure"]: float(point["value"])},
                    answer=point["answer"],
                    correct=bool(point["correct"]),
                    final_correct=bool(arm["correct"]),
                    dataset=dataset,
                    tokens_exact=tokens_exact,
                )
            )
    return out


def write_profile(
    path: str | Path,
    records: Iterable[Mapping[str, Any]],
    algorithm: str,
    *,
    dataset: str | None = None,
    tokens_exact: bool = True,
) -> int:
    """Write :func:`profile_records` as JSONL (``certaindex.write_records``); returns the count."""
    return write_records(profile_records(records, algorithm, dataset=dataset, tokens_exact=tokens_exact), path)


def write_summary(path: str | Path, summary: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
