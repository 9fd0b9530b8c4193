"""Figures of an evaluation run: both arms, the rule on the same samples, the sweep, the oracles.

Everything here is computed from ``results.jsonl`` alone, so a resumed run reports on all of
its queries. Every stop decision is certaindex's: the fixed-budget arm's samples become
:class:`certaindex.Trajectory` objects (one check after every sample when the program keeps
its samples' answer clusters, as ``sc`` does; one check per certaindex report otherwise) and a
rule's figures are :func:`certaindex.replay` on them, the function the allocator's live
decision, the calibration and the transfer tables also call. So on replayed or seeded samples
the early-exit arm, the "same samples" row and ``dynasor calibrate`` all say the same.

Two oracles, named apart (both know something no rule can):

- the *first-correct oracle* stops each query at its first check whose answer is right (queries
  never right stop at their first check): the accuracy any stopping rule could reach on these
  samples, at the least cost;
- the *final-answer oracle* stops at the first check whose answer is the full budget's: the
  fewest samples that return exactly what the fixed budget returns (no harm, no help).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from certaindex import (
    ProfilingRecord,
    ReplayOutcome,
    StopRule,
    Trajectory,
    TrajectoryBatch,
    final_answer_oracle,
    first_correct_oracle,
    replay,
    value_key,
    write_records,
)

__all__ = [
    "ACCURACY_LOSS_POINTS",
    "SweepPoint",
    "arm_summary",
    "best_within",
    "calibration_traces",
    "crossfit",
    "extraction_warning",
    "fixed_trajectories",
    "oracles",
    "outcome_figures",
    "paired",
    "pareto_front",
    "profile_records",
    "summarize",
    "sweep",
    "sweep_family",
    "write_profile",
    "write_summary",
]

ACCURACY_LOSS_POINTS = 0.5
"""Accuracy loss (percentage points) the headline saving is reported at."""

THRESHOLDS = tuple(float(t) for t in np.round(np.linspace(0.0, 1.0, 51), 4))
"""The sweep's thresholds (0, 0.02, ..., 1), fixed in advance."""


# -- trajectories of the fixed-budget arm ----------------------------------------------------------


def _answer_ids(answers: Sequence[Any]) -> np.ndarray:
    first: dict[Any, int] = {}
    return np.array([-1 if a is None else first.setdefault(a, len(first)) for a in answers], dtype=np.int64)


def _arm_trajectory(record: Mapping[str, Any], arm: Mapping[str, Any], rule: StopRule) -> Trajectory:
    """One arm's samples as a complete trajectory (see the module docstring)."""
    qid = str(record["id"])
    labels = arm.get("sample_labels")
    if labels:
        return Trajectory.from_labels(
            [None if label is None else int(label) for label in labels],
            correct=[bool(c) for c in arm["sample_correct"]],
            tokens=[int(t) for t in arm["sample_tokens"]],
            query_id=qid,
        )
    points = list(arm.get("trajectory") or [])
    samples = [int(p["samples"]) for p in points]
    tokens = [int(p["tokens"]) for p in points]
    values = [float(p["value"]) for p in points]
    correct = [bool(p["correct"]) for p in points]
    answers = [p.get("answer") for p in points]
    final = (int(arm["samples"]), int(arm["tokens"]))
    if not points or (samples[-1], tokens[-1]) != final:
        # The program spent more after its last report (or never reported): the budget's end is a check.
        samples.append(max(final[0], samples[-1] if samples else 1, 1))
        tokens.append(final[1])
        values.append(values[-1] if values else 0.0)
        correct.append(bool(arm["correct"]))
        answers.append(arm.get("answer"))
    correct[-1] = bool(arm["correct"])  # the arm's own final grade, as the fixed budget reports it
    # The values are the reported measure's; a rule reading it finds them under its key.
    measure = str(points[0]["measure"]) if points else rule.measure
    key = rule.value_key if measure == rule.measure else value_key(measure)
    return Trajectory(
        samples=np.maximum.accumulate(np.array(samples, dtype=np.int64)),
        values={key: np.array(values, dtype=float)},
        correct=np.array(correct, dtype=bool),
        tokens=np.array(tokens, dtype=np.int64),
        leaders=_answer_ids(answers),
        query_id=qid,
    )


def fixed_trajectories(records: Iterable[Mapping[str, Any]], rule: StopRule) -> list[Trajectory]:
    """The fixed-budget arm of every record that has one, as complete trajectories."""
    return [_arm_trajectory(r, r["baseline"], rule) for r in records if r.get("baseline") is not None]


def _per_sample(records: Sequence[Mapping[str, Any]]) -> bool:
    return all((r.get("baseline") or {}).get("sample_labels") for r in records)


# -- figures of one rule ------------------------------------------------------------------------------


def outcome_figures(o: ReplayOutcome) -> dict[str, float]:
    """Accuracy, cost and savings of a replayed rule, per query and as shares of the full budget."""
    n = max(o.n, 1)
    return {
        "accuracy": o.accuracy,
        "fixed_accuracy": o.full_accuracy,
        "accuracy_delta_points": -100.0 * o.loss,
        "harms": o.harms,
        "helps": o.helps,
        "tokens_mean": o.tokens / n,
        "samples_mean": o.samples / n,
        "saving": 1.0 - o.tokens / o.full_tokens if o.full_tokens else 0.0,
        "samples_saving": 1.0 - o.samples / o.full_samples if o.full_samples else 0.0,
    }


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """Accuracy and cost of one stopping rule over all queries (a confident exit only)."""

    min_samples: int
    threshold: float
    accuracy: float
    tokens_mean: float
    samples_mean: float
    saving: float
    """Fraction of the fixed-budget tokens not spent."""
    samples_saving: float
    """Fraction of the fixed-budget samples not drawn."""

    def to_dict(self) -> dict[str, float]:
        return {
            "min_samples": self.min_samples,
            "threshold": round(self.threshold, 6),
            "accuracy": self.accuracy,
            "tokens_mean": self.tokens_mean,
            "samples_mean": self.samples_mean,
            "saving": self.saving,
            "samples_saving": self.samples_saving,
        }


def check_samples(batch: TrajectoryBatch, rule: StopRule) -> list[int]:
    """Every sample count at which ``rule``'s round size puts a check, on any trajectory."""
    counts = {int(s) for s in np.unique(batch.samples) if s > 0 and s % rule.round_size == 0}
    return sorted(counts) or [rule.round_size]


def _sweep_rule(base: StopRule, min_samples: int, threshold: float) -> StopRule:
    # A swept rule is a plain threshold and minimum: the base's worst-case cap fixes its own minimum
    # and is undefined at thresholds of 1/2 and below.
    return base.with_changes(
        threshold=threshold,
        min_samples=min_samples,
        hopeless_threshold=None,
        certification=None,
        name=None,
        max_risk=None,
    )


def sweep_family(base: StopRule) -> str:
    """What the sweep varies, in words.

    >>> sweep_family(StopRule("majority", 0.7, round_size=2))
    'majority >= t from m samples, rounds of 2, abstentions class (t: 0 to 1 by 0.02 and the rule\'s; m: every check)'
    """
    family = _sweep_rule(base, 1, 0.5).describe().replace(">= 0.5 from 1 samples", ">= t from m samples")
    return f"{family} (t: 0 to 1 by 0.02 and the rule's; m: every check)"


def sweep(
    trajectories: Sequence[Trajectory] | TrajectoryBatch,
    base: StopRule,
    thresholds: Sequence[float] | None = None,
    min_samples: Sequence[int] | None = None,
) -> list[SweepPoint]:
    """Accuracy and cost of the confident exit of ``base`` at every (minimum samples, threshold).

    The minimum covers every check the trajectories have (each sample count a round ends at);
    the thresholds are :data:`THRESHOLDS` plus ``base``'s own. The measure, abstentions and
    round size are ``base``'s; the hopeless exit is left out.
    """
    batch = trajectories if isinstance(trajectories, TrajectoryBatch) else TrajectoryBatch(trajectories)
    grid = set(THRESHOLDS if thresholds is None else thresholds)
    if base.threshold is not None:
        grid.add(base.threshold)
    points = []
    for m in min_samples if min_samples is not None else check_samples(batch, base):
        for t in sorted(grid):
            f = outcome_figures(replay(_sweep_rule(base, int(m), float(t)), batch))
            points.append(
                SweepPoint(
                    int(m),
                    float(t),
                    f["accuracy"],
                    f["tokens_mean"],
                    f["samples_mean"],
                    f["saving"],
                    f["samples_saving"],
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


def crossfit(
    trajectories: Sequence[Trajectory],
    base: StopRule,
    loss_points: float = ACCURACY_LOSS_POINTS,
    folds: int = 5,
) -> dict[str, Any] | None:
    """Held-out estimate of :func:`best_within`: choose the rule on the other folds, score it on this one.

    The in-sample best rule is picked on the very queries it is scored on, which flatters it;
    here every query is scored by a rule chosen without it (``folds``-fold cross-fitting,
    queries assigned to folds round-robin in id order).
    """
    if len(trajectories) < 2 * folds:
        return None
    ordered = sorted(trajectories, key=lambda t: t.query_id)
    checks = check_samples(TrajectoryBatch(ordered), base)
    totals: Counter[str] = Counter()
    rules = []
    for k in range(folds):
        held = ordered[k::folds]
        train = [t for i, t in enumerate(ordered) if i % folds != k]
        train_fixed = replay(StopRule(base.measure, None), train).full_accuracy
        best = best_within(sweep(train, base, min_samples=checks), train_fixed, loss_points)
        rule = _sweep_rule(base, best.min_samples, best.threshold) if best else base.with_changes(threshold=None)
        rules.append({"min_samples": rule.min_samples, "threshold": rule.threshold})
        o = replay(rule, held)
        totals.update(
            correct=o.correct,
            tokens=o.tokens,
            samples=o.samples,
            full_correct=o.full_correct,
            full_tokens=o.full_tokens,
            full_samples=o.full_samples,
        )
    n = len(ordered)
    return {
        "folds": folds,
        "accuracy": totals["correct"] / n,
        "fixed_accuracy": totals["full_correct"] / n,
        "accuracy_delta_points": 100.0 * (totals["correct"] - totals["full_correct"]) / n,
        "saving": 1.0 - totals["tokens"] / totals["full_tokens"] if totals["full_tokens"] else 0.0,
        "samples_saving": 1.0 - totals["samples"] / totals["full_samples"] if totals["full_samples"] else 0.0,
        "rules": rules,
    }


def oracles(trajectories: Sequence[Trajectory]) -> dict[str, dict[str, float]]:
    """The first-correct and the final-answer oracles (module docstring) on the fixed arm's samples."""
    batch = TrajectoryBatch(trajectories)
    return {
        "first_correct_oracle": outcome_figures(first_correct_oracle(batch)),
        "final_answer_oracle": outcome_figures(final_answer_oracle(batch)),
    }


# -- the two arms -----------------------------------------------------------------------------------


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
    samples = [int(a["samples"]) for a in arms]
    return {
        "queries": n,
        "accuracy": sum(bool(a["correct"]) for a in arms) / n,
        "tokens_total": sum(tokens),
        "tokens_mean": sum(tokens) / n,
        "samples_total": sum(samples),
        "samples_mean": sum(samples) / n,
        "latency_mean_s": statistics.fmean(latencies),
        "latency_p50_s": _quantile(latencies, 0.5),
        "latency_p90_s": _quantile(latencies, 0.9),
        "exit_reasons": dict(Counter(str(a["exit_reason"]) for a in arms)),
        "errors": sum(1 for a in arms if a.get("error")),
    }


_EARLY_EXITS = ("confident", "hopeless")


def paired(record: Mapping[str, Any]) -> bool:
    """Whether the early-exit arm drew a prefix of the fixed arm's samples (same texts, same order)."""
    early, fixed = record.get("sample_digests"), (record.get("baseline") or {}).get("sample_digests")
    if not early or not fixed:
        return False
    return list(early) == list(fixed)[: len(early)]


def _saving(records: Sequence[Mapping[str, Any]], exact: bool) -> dict[str, Any]:
    """Tokens and samples early exit saved against the fixed arm.

    On an exact comparison (both arms drew the same samples) the arms' own counts. Otherwise a
    query saves only when early exit stopped it (``confident`` or ``hopeless``), and what it
    saved is priced on the fixed arm's own samples: the fixed arm's tokens beyond the samples
    early exit drew. A query early exit did not stop saves nothing, whatever the two
    independent runs happened to spend.
    """
    fixed_tokens = sum(int(r["baseline"]["tokens"]) for r in records)
    fixed_samples = sum(int(r["baseline"]["samples"]) for r in records)
    if exact:
        tokens = sum(int(r["tokens"]) for r in records)
        samples = sum(int(r["samples"]) for r in records)
        how = "both arms' own counts (same samples)"
    else:
        tokens = samples = 0
        for r in records:
            base = r["baseline"]
            if str(r["exit_reason"]) not in _EARLY_EXITS or int(r["samples"]) >= int(base["samples"]):
                tokens, samples = tokens + int(base["tokens"]), samples + int(base["samples"])
                continue
            per_sample = base.get("sample_tokens")
            drawn = int(r["samples"])
            tokens += (
                sum(int(t) for t in per_sample[:drawn]) if per_sample else min(int(r["tokens"]), int(base["tokens"]))
            )
            samples += drawn
        how = "queries early exit stopped, priced on the fixed arm's samples"
    return {
        "tokens": 1.0 - tokens / fixed_tokens if fixed_tokens else 0.0,
        "samples": 1.0 - samples / fixed_samples if fixed_samples else 0.0,
        "how": how,
    }


def summarize(
    records: Sequence[Mapping[str, Any]],
    *,
    run: Mapping[str, Any],
    rule: StopRule | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` of a run: both arms, the saving, the rule on the same samples, sweep, oracles.

    ``run`` carries the configuration and backend label (``run.json``); ``rule`` is the
    early-exit arm's stop rule.
    """
    backend = dict(run.get("backend") or {})
    early = arm_summary(records)
    summary: dict[str, Any] = {
        "label": backend.get("kind", "unknown"),
        "backend": backend.get("label"),
        "tokens": dict(run.get("tokens") or {"exact": True, "how": "counted by the engine"}),
        "config": run.get("config"),
        "queries": len(records),
        "early_exit": early,
        "early_exit_rule": None if rule is None else {**rule.to_dict(), "describe": rule.describe()},
    }
    baseline = [r["baseline"] for r in records if r.get("baseline") is not None]
    if not baseline or len(baseline) != len(records):
        return summary
    fixed = arm_summary(baseline)
    same_samples = bool(backend.get("same_samples"))
    pairs = sum(paired(r) for r in records)
    exact = same_samples or (pairs == len(records) and pairs > 0)
    summary["fixed_budget"] = fixed
    summary["pairing"] = {"queries": len(records), "paired": pairs, "exact": exact}
    summary["comparison"] = _comparison(summary["label"], same_samples, pairs, len(records))
    saving = _saving(records, exact)
    saving["accuracy_delta_points"] = 100.0 * (early["accuracy"] - fixed["accuracy"])
    saving["latency_mean"] = 1.0 - early["latency_mean_s"] / fixed["latency_mean_s"] if fixed["latency_mean_s"] else 0.0
    summary["saving"] = saving
    base = rule if rule is not None else StopRule("entropy", None)
    trajectories = fixed_trajectories(records, base)
    batch = TrajectoryBatch(trajectories)
    if rule is not None and (rule.threshold is not None or rule.hopeless_threshold is not None):
        # The configured rule replayed on the fixed arm's own samples: the same-samples comparison
        # even where the two arms sampled independently (live engines).
        summary["early_exit_on_fixed_samples"] = outcome_figures(replay(rule, batch))
    sweep_base = base if _per_sample(records) else base.with_changes(round_size=1)
    points = sweep(batch, sweep_base)
    summary["sweep"] = [p.to_dict() for p in points]
    summary["sweep_rule"] = sweep_family(sweep_base)
    summary["pareto"] = [p.to_dict() for p in pareto_front(points)]
    key = f"best_within_{ACCURACY_LOSS_POINTS}pt"
    if fixed["accuracy"] == 0.0 and early["accuracy"] == 0.0:
        # Every rule is "within 0.5 pt" of zero: the data cannot tell a good rule from a bad one.
        summary[key] = None
        summary[f"{key}_crossfit"] = None
        summary["nothing_learned"] = "both arms answered no query right: no rule can be told apart from another"
    else:
        best = best_within(points, fixed["accuracy"], ACCURACY_LOSS_POINTS)
        summary[key] = None if best is None else best.to_dict()
        summary[f"{key}_crossfit"] = crossfit(trajectories, sweep_base)
    summary.update(oracles(trajectories))
    return summary


def _comparison(label: str, same_samples: bool, pairs: int, n: int) -> str:
    if same_samples and label == "replay":
        return "exact: both arms drew the same recorded samples in the same order"
    if same_samples:
        return "exact: both arms drew the same seeded synthetic samples"
    if pairs == n and n:
        return "exact: per-sample seeds gave both arms the same samples (every query checked)"
    return (
        f"paired on {pairs} of {n} queries (per-sample seeds); where the arms' samples differ, a saving "
        "is counted only for queries early exit stopped, priced on the fixed arm's samples, and the "
        "rule's same-samples row replays it on the fixed arm"
    )


def extraction_warning(records: Any, kind: str | None) -> str | None:
    """A warning when answer extraction found nothing in most samples it read (the kind is likely wrong)."""
    extracted = missing = 0
    for record in records:
        for arm in (record, record.get("baseline") or {}):
            extracted += int(arm.get("extracted", 0))
            missing += int(arm.get("extracted_missing", 0))
    if extracted and missing > 0.5 * extracted:
        return (
            f"answer extraction ({kind or 'math'}) found no answer in {missing} of {extracted} samples read "
            "from their text; is --kind right? (recorded answers are used where the trace has them)"
        )
    return None


# -- calibration inputs -------------------------------------------------------------------------------


def calibration_traces(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fixed arm's samples in the trace format, for ``dynasor calibrate`` (per-sample programs only).

    Each sample's ``answer`` is its answer cluster's first answer, so equal answers are equal
    strings, with its correctness and tokens; ``null`` is a sample without an answer.
    """
    out = []
    for record in records:
        arm = record.get("baseline")
        if not arm or not arm.get("sample_labels"):
            continue
        answers = arm.get("sample_answers") or [None if label is None else str(label) for label in arm["sample_labels"]]
        samples = [
            {"answer": answer, "correct": bool(correct), "tokens": int(tokens)}
            for answer, correct, tokens in zip(answers, arm["sample_correct"], arm["sample_tokens"], strict=True)
        ]
        out.append({"id": str(record["id"]), "reference": record.get("reference"), "samples": samples})
    return out


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
