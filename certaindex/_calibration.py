r"""Calibration: choose per-algorithm stopping rules from profiling records, with a bound.

Profiling record format
-----------------------
JSONL, one line per query and step (``dynasor eval --profile`` writes them;
:func:`~certaindex.records_from_trace` builds them from recorded traces)::

    {"query_id": "math/17", "algorithm": "sc", "step": 3, "samples": 12, "tokens": 5310,
     "certaindex": {"entropy": 0.62, "beta": 0.91}, "answer": "\\frac{1}{2}",
     "correct": true, "final_correct": true, "dataset": "math500", "tokens_exact": true}

``step``
    1-based step (round of samples, tree expansion, probe) the record describes.
``samples``, ``tokens``
    Samples (paths, probes) and generated tokens spent by the query *up to and including*
    this step. ``tokens_exact`` is false when they were approximated from text
    (:func:`~certaindex.approx_tokens`).
``certaindex``
    Every measure's value at this step, by measure name.
``answer``, ``correct``
    The answer the program would return if stopped now, and whether it is right.
``final_correct``
    Whether the answer at the full budget (the query's last step) is right.

A query's last record is its full-budget run: the fixed-budget baseline.

Method
------
A rule ``(measure, threshold t, min_step m)`` stops a query at the first step
:math:`s \ge m` with certaindex :math:`\ge t`, or at its last step. Per query it can *harm*
(full-budget answer right, stopped answer wrong) or *help* (the reverse); the accuracy loss
is :math:`(h - g)/n \le h/n`. We bound the **harm rate** :math:`h/n`, which bounds the loss
whatever the gains:

- ``clopper-pearson`` (default): the exact one-sided binomial upper bound on the harm
  probability, at level :math:`\delta = 1 - \text{confidence}`. Queries are independent
  draws from the workload; harms are Bernoulli; the exact bound stays valid for the small
  counts calibration sets have (a normal approximation does not at 0 or 1 harm).
- ``none``: the observed loss :math:`(h-g)/n`, no confidence statement.

Choosing among many rules on the same data would void a per-rule bound, so the search is a
fixed-sequence test (Learn-then-Test): per (measure, min_step) chain the thresholds are
tested from strictest to loosest and the walk stops at the first rule whose bound exceeds
the target; chains are Bonferroni-corrected (:math:`\delta / \#\text{chains}`). Every rule
the walk passes has harm rate :math:`\le` target with probability :math:`\ge 1-\delta`,
jointly; among those, the one saving the most tokens is chosen.

With :math:`n` queries and no harm at all the bound is :math:`1 - (\delta/K)^{1/n}`
(about :math:`3/n` at 95%): a target below that cannot be certified, and the report says so.

References
----------
Clopper & Pearson, Biometrika 1934. Angelopoulos et al., "Learn then Test: Calibrating
Predictive Algorithms to Achieve Risk Control", 2021 (fixed-sequence testing).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from certaindex._certify import fixed_sequence
from certaindex._rule import StopRule, value_key
from certaindex._trajectory import Trajectory, TrajectoryBatch, stop_index, stop_indices

__all__ = [
    "Bound",
    "ProfilingRecord",
    "RuleChoice",
    "RuleOutcome",
    "calibrate",
    "clopper_pearson_upper",
    "evaluate_rule",
    "final_answer_outcome",
    "group_queries",
    "oracle_outcome",
    "read_records",
    "write_records",
]

Bound = Literal["clopper-pearson", "none"]


@dataclass(frozen=True, slots=True)
class ProfilingRecord:
    """One query at one step of a profiling run (see the module docstring for the format)."""

    query_id: str
    algorithm: str
    step: int
    samples: int
    tokens: int
    certaindex: Mapping[str, float]
    answer: str | None
    correct: bool
    final_correct: bool
    dataset: str | None = None
    tokens_exact: bool = True

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "certaindex": dict(self.certaindex)})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfilingRecord:
        if not isinstance(data, Mapping):
            raise ValueError(f"a profiling record is a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        missing = {"query_id", "algorithm", "step", "samples", "tokens", "certaindex"} - data.keys()
        if missing:
            hint = ""
            if isinstance(data.get("samples"), list):
                hint = " (this looks like a trace line: replay it first, e.g. `dynasor calibrate --from-traces`)"
            raise ValueError(f"profiling record lacks {sorted(missing)}{hint}: {dict(data)!r:.200}")
        return cls(**{k: v for k, v in data.items() if k in known})


def write_records(records: Iterable[ProfilingRecord], path: str | Path) -> int:
    """Write records as JSONL; returns how many."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(record.to_json() + "\n")
            n += 1
    return n


def read_records(path: str | Path) -> list[ProfilingRecord]:
    """Read a JSONL profiling file (blank lines skipped); errors name the line."""
    records = []
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(ProfilingRecord.from_dict(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return records


def group_queries(records: Iterable[ProfilingRecord]) -> dict[str, dict[str, list[ProfilingRecord]]]:
    """``{algorithm: {query_id: records sorted by step}}``."""
    out: dict[str, dict[str, list[ProfilingRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        out[r.algorithm][r.query_id].append(r)
    return {alg: {q: sorted(rs, key=lambda r: r.step) for q, rs in queries.items()} for alg, queries in out.items()}


def clopper_pearson_upper(harms: int, n: int, delta: float) -> float:
    r"""Exact one-sided upper confidence bound on a binomial rate.

    The :math:`p` with :math:`P(\text{Bin}(n, p) \le h) = \delta`, i.e. the
    :math:`1-\delta` quantile of :math:`\text{Beta}(h+1, n-h)`; 1 when :math:`h = n`.

    >>> round(clopper_pearson_upper(0, 100, 0.05), 4)  # the "rule of three": about 3/n
    0.0295
    """
    if n <= 0:
        return 1.0
    if harms >= n:
        return 1.0
    from scipy import stats  # lazy: scipy.stats takes a second to import

    return float(stats.beta.ppf(1.0 - delta, harms + 1, n - harms))


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What a stopping rule does on a set of queries (replayed from records)."""

    n: int
    tokens: int
    """Tokens spent with the rule."""
    full_tokens: int
    """Tokens of the fixed-budget baseline (every query to its last step)."""
    correct: int
    full_correct: int
    harms: int
    gains: int
    mean_stop_step: float

    @property
    def saving(self) -> float:
        """Share of the baseline's tokens not spent."""
        return 1.0 - self.tokens / self.full_tokens if self.full_tokens else 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def full_accuracy(self) -> float:
        return self.full_correct / self.n if self.n else 0.0

    @property
    def loss(self) -> float:
        """Accuracy lost against the baseline (a fraction; negative = gained)."""
        return (self.full_correct - self.correct) / self.n if self.n else 0.0


def _trajectory(steps: Sequence[ProfilingRecord], measure: str) -> Trajectory:
    """A query's records as a trajectory with a check at every step (steps count as samples)."""
    values = np.array([r.certaindex.get(measure, np.nan) for r in steps], dtype=float)
    return Trajectory(
        samples=np.array([r.step for r in steps], dtype=np.int64),
        values={value_key(measure): values},
        query_id=steps[0].query_id if steps else "",
    )


def _rule(measure: str, threshold: float, min_step: int) -> StopRule:
    """Rule ``measure >= threshold from step min_step`` (steps count as samples, a check at each).

    Certaindex values lie in [0, 1]: a threshold above 1 never fires (the fixed budget), one
    below 0 fires at every check, as 0 does.
    """
    return StopRule(measure, None if threshold > 1.0 else max(threshold, 0.0), min_samples=min_step)


def _stop_index(steps: Sequence[ProfilingRecord], measure: str, threshold: float, min_step: int) -> int:
    """Where rule ``measure >= threshold from step min_step`` stops (:func:`~certaindex.stop_index`)."""
    return stop_index(_rule(measure, threshold, min_step), _trajectory(steps, measure)).index


def _outcome(queries: Iterable[Sequence[ProfilingRecord]], stop: Any) -> RuleOutcome:
    n = tokens = full_tokens = correct = full_correct = harms = gains = 0
    steps_sum = 0
    for steps in queries:
        i = stop(steps)
        r, last = steps[i], steps[-1]
        n += 1
        tokens += r.tokens
        full_tokens += last.tokens
        correct += r.correct
        full_correct += last.final_correct
        harms += last.final_correct and not r.correct
        gains += r.correct and not last.final_correct
        steps_sum += r.step
    return RuleOutcome(n, tokens, full_tokens, correct, full_correct, harms, gains, steps_sum / max(n, 1))


def evaluate_rule(
    queries: Mapping[str, Sequence[ProfilingRecord]], measure: str, threshold: float, min_step: int = 1
) -> RuleOutcome:
    """Replay rule ``measure >= threshold from step min_step`` on every query."""
    steps_list = list(queries.values())
    if not steps_list:
        return _outcome([], lambda steps: 0)
    batch = TrajectoryBatch([_trajectory(steps, measure) for steps in steps_list])
    index, _ = stop_indices(_rule(measure, threshold, min_step), batch)
    stops = {id(steps): int(i) for steps, i in zip(steps_list, index, strict=True)}
    return _outcome(steps_list, lambda steps: stops[id(steps)])


def final_answer_outcome(queries: Mapping[str, Sequence[ProfilingRecord]]) -> RuleOutcome:
    """The *final-answer oracle*: stop at the first step whose answer equals the full-budget answer.

    It knows the final answer, so it is a lower bound on the tokens any rule needs to keep
    the baseline's answers, at no accuracy loss. (Not the *first-correct* oracle, which
    stops at the first right answer: :func:`~certaindex.first_correct_oracle`.)
    """

    def stop(steps: Sequence[ProfilingRecord]) -> int:
        final = steps[-1].answer
        return next(i for i, r in enumerate(steps) if r.answer == final)

    return _outcome(queries.values(), stop)


oracle_outcome = final_answer_outcome
"""Former name of :func:`final_answer_outcome`."""


@dataclass(frozen=True, slots=True)
class RuleChoice:
    """The rule calibration chose for one algorithm, with its evidence."""

    algorithm: str
    measure: str | None
    """None: no rule met the target (run to the full budget)."""
    threshold: float | None
    min_step: int | None
    outcome: RuleOutcome
    bound: Bound
    confidence: float
    target_loss: float
    harm_bound: float
    """Upper confidence bound of the harm rate; with ``bound="none"`` the *observed* harm rate
    (no bound: see :attr:`statement`)."""
    chains: int
    floor: float
    """Smallest harm bound any rule could get on these queries (no harm at all)."""
    candidates: int
    certified: int
    notes: list[str] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        """The allocator's config entry (``{measure, threshold, min_step, ...}``)."""
        return {
            "measure": self.measure,
            "threshold": None if self.threshold is None else round(self.threshold, 6),
            "min_step": self.min_step,
            "expected_saving": round(self.outcome.saving, 4),
            "expected_loss": round(self.outcome.loss, 4),
            "harm_bound": round(self.harm_bound, 4),
            "bound": self._bound_text(),
            "queries": self.outcome.n,
        }

    @property
    def statement(self) -> str:
        """What the figures promise, in words (a point estimate is never called a bound)."""
        o = self.outcome
        if self.bound == "none":
            return (
                f"no bound: observed loss {100 * o.loss:+.2f} pt and harm rate {o.harms / max(o.n, 1):.4f} "
                f"on these {o.n} queries (point estimate, target {100 * self.target_loss:g} pt)"
            )
        return (
            f"harm-rate bound {self.harm_bound:.4f} ({self.confidence:g} Clopper-Pearson, fixed-sequence, "
            f"Bonferroni over {self.chains} chains); target {100 * self.target_loss:g} pt"
        )

    def report_lines(self) -> list[str]:
        """The report of this choice, one line each (what ``dynasor calibrate`` prints)."""
        o = self.outcome
        lines = [f"[{self.algorithm}] {o.n} queries, baseline accuracy {o.full_accuracy:.3f}"]
        if self.measure is None:
            lines.append("  rule: none (run to the full budget)")
        else:
            lines.append(f"  rule: stop when {self.measure} >= {self.threshold:.4g} at or after step {self.min_step}")
        lines.append(
            f"  on these records: tokens saved {o.saving:.1%}, accuracy {o.accuracy:.3f} "
            f"(loss {100 * o.loss:+.2f} points), harms {o.harms}, gains {o.gains}, "
            f"mean stop step {o.mean_stop_step:.2f}"
        )
        lines.append(f"  {self.statement}")
        lines.append(f"  rules tried {self.candidates}, certified {self.certified}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return lines

    def _bound_text(self) -> str:
        if self.bound == "none":
            return f"observed loss <= {self.target_loss:g} (point estimate, no confidence bound)"
        return (
            f"Clopper-Pearson harm rate <= {self.target_loss:g} at {self.confidence:g} "
            f"(fixed-sequence, Bonferroni over {self.chains} chains)"
        )


def _candidate_thresholds(values: np.ndarray, max_candidates: int) -> np.ndarray:
    uniq = np.unique(np.round(values[np.isfinite(values)], 6))
    if uniq.size > max_candidates:
        uniq = np.unique(np.quantile(uniq, np.linspace(0, 1, max_candidates)))
    return uniq[::-1]  # strictest (highest) first


def calibrate(
    queries: Mapping[str, Sequence[ProfilingRecord]],
    *,
    algorithm: str,
    target_loss: float = 0.005,
    confidence: float = 0.95,
    bound: Bound = "clopper-pearson",
    measures: Sequence[str] | None = None,
    min_steps: Sequence[int] | None = None,
    max_candidates: int = 200,
) -> RuleChoice:
    r"""Choose the rule that saves the most tokens with harm rate under ``target_loss``.

    Parameters
    ----------
    queries:
        ``{query_id: records sorted by step}`` of one algorithm (see :func:`group_queries`).
    target_loss:
        Allowed accuracy loss as a fraction (0.005 = 0.5 points).
    confidence:
        :math:`1-\delta` of the bound.
    bound:
        ``clopper-pearson`` or ``none`` (see the module docstring).
    measures:
        Measures to consider (default: every measure present in all records).
    min_steps:
        Check steps to consider (default: every step but the last). Each (measure, min_step)
        pair is one chain of the Bonferroni correction: a small family fixed in advance buys
        a tighter bound.

    >>> recs = [ProfilingRecord(f"q{q}", "sc", s, s, 10 * s, {"m": s / 4}, "a", True, True)
    ...         for q in range(300) for s in (1, 2, 3, 4)]
    >>> choice = calibrate(group_queries(recs)["sc"], algorithm="sc", target_loss=0.05)
    >>> choice.measure, choice.min_step, round(choice.outcome.saving, 2)
    ('m', 1, 0.75)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if not 0 <= target_loss < 1:
        raise ValueError(f"target_loss is a fraction in [0, 1), got {target_loss}")
    steps_list = list(queries.values())
    if not steps_list:
        raise ValueError(f"no profiling records for algorithm {algorithm!r}")
    n = len(steps_list)
    if measures is None:
        names = [set(r.certaindex) for steps in steps_list for r in steps]
        measures = sorted(set.intersection(*names)) if names else []
    max_step = max(steps[-1].step for steps in steps_list)
    if min_steps is None:
        min_steps = range(1, max_step)  # stopping "at or after the last step" saves nothing
    min_steps = [m for m in min_steps if 1 <= m < max_step]
    chains = max(1, len(measures) * len(min_steps))
    delta = (1.0 - confidence) / chains
    full = _outcome(steps_list, lambda steps: len(steps) - 1)

    def harm_stat(o: RuleOutcome) -> float:
        if bound == "none":
            return o.loss  # the point estimate the target is checked against
        return clopper_pearson_upper(o.harms, o.n, delta)

    def harm_figure(o: RuleOutcome) -> float:
        # With a bound: its value. Without: the observed harm rate (never the net loss, which
        # can be negative and is no harm rate).
        return o.harms / o.n if bound == "none" and o.n else harm_stat(o)

    floor = 0.0 if bound == "none" else clopper_pearson_upper(0, n, delta)
    best: tuple[str, float, int, RuleOutcome, float] | None = None
    candidates = certified = 0
    for measure in measures:
        values = np.array([r.certaindex.get(measure, np.nan) for s in steps_list for r in s], dtype=float)
        thresholds = _candidate_thresholds(values, max_candidates)
        for m in min_steps:
            tested: dict[float, tuple[RuleOutcome, float]] = {}

            def statistic(
                t: float, measure: str = measure, m: int = m, tested: dict[float, tuple[RuleOutcome, float]] = tested
            ) -> float:
                o = evaluate_rule(queries, measure, t, m)
                tested[t] = (o, harm_stat(o))
                return tested[t][1]

            # Fixed-sequence: strictest first, the walk ends at the first rule not certified.
            passed, _ = fixed_sequence([float(t) for t in thresholds], statistic, target_loss)
            candidates += len(tested)
            certified += len(passed)
            for t in passed:
                o, stat = tested[t]
                if best is None or o.tokens < best[3].tokens:
                    best = (measure, t, m, o, stat)
    notes = []
    if bound != "none" and floor > target_loss:
        notes.append(
            f"{n} queries cannot certify a harm rate of {target_loss:g} at {confidence:g}: even with "
            f"no harm the bound is {floor:.3f} (Bonferroni over {chains} chains); need more queries "
            "or a looser target"
        )
    if best is None:
        notes.append("no rule met the target: run to the full budget")
        return RuleChoice(
            algorithm, None, None, None, full, bound, confidence, target_loss,
            harm_figure(full), chains, floor, candidates, certified, notes,
        )  # fmt: skip
    measure, t, m, o, _ = best
    return RuleChoice(
        algorithm, measure, t, m, o, bound, confidence, target_loss, harm_figure(o), chains, floor,
        candidates, certified, notes,
    )  # fmt: skip
