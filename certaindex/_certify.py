r"""Certify a stop rule: a bound on the accuracy it loses against the full budget.

What is promised
----------------
Per query a rule either returns what the full budget returns, or *harms* (full budget right,
rule wrong: :math:`D = +1`) or *helps* (:math:`D = -1`). The user's loss is the paired
difference :math:`E[D] = p_h - p_g`. A certified rule promises :math:`E[D] \le \varepsilon`
with probability at least :math:`1 - \delta` over the draw of the calibration queries.

The test of one rule (``ltt-paired``)
-------------------------------------
Each rule is a null hypothesis :math:`H_0: E[D] > \varepsilon`, rejected (the rule certified)
when its p-value is at most :math:`\delta`. Two exact tests each reject :math:`H_0` with
probability at most their level when it holds:

- **harms are rare** (binomial): :math:`H_0` implies :math:`p_h > \varepsilon`, and then
  :math:`P(\mathrm{Bin}(n, p_h) \le h) \le P(\mathrm{Bin}(n, \varepsilon) \le h) =: p_b`;
- **harms are fewer than helps** (sign test on the discordant queries, McNemar's exact
  test): :math:`H_0` implies :math:`p_h > p_g`, so given the :math:`m = h + g` discordant
  queries the harms are :math:`\mathrm{Bin}(m, q)` with :math:`q > 1/2`, and
  :math:`P(H \le h \mid m) \le P(\mathrm{Bin}(m, \tfrac12) \le h) =: p_s`.

With :math:`\delta` split as :math:`w\delta + (1-w)\delta` (``binomial_share`` :math:`w = 0.8`),
:math:`p = \min(p_b / w,\ p_s / (1 - w))` is a valid p-value (a union bound). It uses that
harms and helps are paired: a loose rule that helps as often as it harms can pass where a
bound on the harm rate alone (``ltt-binomial``, :math:`p = p_b`) cannot.

Choosing a rule without voiding the test (Learn then Test)
----------------------------------------------------------
Testing many rules and keeping the best would void a per-rule test. So:

1. the calibration queries are split at random (per data set) into a *learn* part and a
   *certify* part;
2. on the learn part one *chain* is chosen: a family member with everything fixed but the
   threshold (measure, abstentions, round size, minimum samples, hopeless exit), the one
   predicted to certify the largest saving (the walk of step 3 run on the learn part, its
   harms and helps scaled to the certify part's size);
3. on the certify part the chain's thresholds, on a grid fixed in advance, are tested from the
   strictest (highest) down, and the walk stops at the first rule not certified
   (fixed-sequence testing). The first true null met in that order is rejected with
   probability at most :math:`\delta`, and every rule before it is certified, so with
   probability :math:`\ge 1 - \delta` every rule the walk passes satisfies the promise,
   jointly; the one saving the most samples is returned.

The chain is a function of the learn part only, which is independent of the certify part, so
step 3 is a valid test whatever step 2 did. No Bonferroni correction over families is needed.

What it costs: with no harm and no help on :math:`n` certify queries the best p-value is
:math:`(1-\varepsilon)^n / w`, so 0.5 points at 95% need :math:`n \ge \ln(1/(w\delta))/\varepsilon
\approx 644` harm-free queries; fewer certify nothing, and :func:`certify` says so.

References
----------
Angelopoulos, Bates, Candès, Jordan, Lei, "Learn then Test: Calibrating Predictive Algorithms
to Achieve Risk Control", 2021. McNemar, Psychometrika 1947. Clopper & Pearson, Biometrika 1934.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any, Literal, TypeVar

import numpy as np

from certaindex._orderings import ExpectedOutcome, OrderingReplay, Orderings
from certaindex._rule import Certification, StopRule
from certaindex._trajectory import ReplayOutcome, Trajectory, TrajectoryBatch, replay

__all__ = [
    "Calibration",
    "Family",
    "Method",
    "WalkStep",
    "binomial_pvalue",
    "certify",
    "certify_ladder",
    "choose_rule",
    "fixed_sequence",
    "loss_pvalue",
    "sign_pvalue",
    "split_queries",
]

Method = Literal["ordering-betting", "ltt-paired", "ltt-binomial"]
"""``ordering-betting``: the bounded, ordering-averaged paired loss tested by betting (the default,
:mod:`certaindex._certify_orderings`); ``ltt-paired`` / ``ltt-binomial``: harms and helps counted in
the recorded order (exact binomial and sign tests, this module)."""
T = TypeVar("T")


def binomial_pvalue(harms: int, n: int, bound: float) -> float:
    """P-value of "harm rate > bound" after ``harms`` harms in ``n`` queries: ``P(Bin(n, bound) <= harms)``.

    >>> round(binomial_pvalue(0, 600, 0.005), 4)
    0.0494
    """
    if n <= 0:
        return 1.0
    from scipy import stats  # lazy: scipy.stats takes a second to import

    return float(stats.binom.cdf(harms, n, bound))


def sign_pvalue(harms: int, helps: int) -> float:
    """P-value of "harms at least as likely as helps": ``P(Bin(harms + helps, 1/2) <= harms)``.

    >>> sign_pvalue(0, 0), round(sign_pvalue(1, 9), 4)
    (1.0, 0.0107)
    """
    m = harms + helps
    if m == 0:
        return 1.0
    from scipy import stats  # lazy: scipy.stats takes a second to import

    return float(stats.binom.cdf(harms, m, 0.5))


def loss_pvalue(
    harms: int, helps: int, n: int, bound: float, method: Method = "ltt-paired", binomial_share: float = 0.8
) -> float:
    """P-value of "accuracy loss vs the full budget > bound" (see the module docstring).

    >>> round(loss_pvalue(0, 0, 700, 0.005), 4)  # no discordance: the binomial part alone
    0.0374
    >>> round(loss_pvalue(4, 20, 300, 0.005), 4)  # many helps: the sign test certifies
    0.0039
    >>> round(loss_pvalue(4, 20, 300, 0.005, "ltt-binomial"), 4)
    0.9817
    """
    p_b = binomial_pvalue(harms, n, bound)
    if method == "ltt-binomial":
        return p_b
    if method != "ltt-paired":
        raise ValueError(f"unknown method {method!r}: use ltt-paired or ltt-binomial")
    if not 0.0 < binomial_share < 1.0:
        raise ValueError(f"binomial_share must lie in (0, 1), got {binomial_share}")
    return min(1.0, p_b / binomial_share, sign_pvalue(harms, helps) / (1.0 - binomial_share))


def fixed_sequence(candidates: Sequence[T], p_value: Callable[[T], float], delta: float) -> tuple[list[T], T | None]:
    """Test ``candidates`` in the given order; stop at the first whose p-value exceeds ``delta``.

    Returns the certified prefix and the first candidate that failed (None if all passed).
    Walking on past a failure would void the guarantee: a later candidate passing by chance
    after a true null was met is exactly the error fixed-sequence testing rules out.

    >>> fixed_sequence([1, 2, 3, 4], {1: 0.01, 2: 0.2, 3: 0.01, 4: 0.01}.__getitem__, 0.05)
    ([1], 2)
    """
    passed: list[T] = []
    for candidate in candidates:
        if p_value(candidate) > delta:
            return passed, candidate
        passed.append(candidate)
    return passed, None


@dataclass(frozen=True, slots=True)
class Family:
    """The rules calibration may choose from: every combination of these, times the thresholds.

    The default is a scale-free family: the leader's share of the samples drawn (a strict
    majority, threshold above 1/2, abstentions agreeing with nothing), a minimum number of
    samples, optionally raised at each budget until no query can lose more than ``max_risk``
    (:attr:`StopRule.max_risk`: the same worst case at 8 or 100 samples), the round size and a
    hopeless exit after a number of samples. Rules with a hopeless exit have the trivial loss
    range (:func:`~certaindex.loss_range`): they certify only where many queries show it.
    """

    measures: tuple[str, ...] = ("majority",)
    abstentions: tuple[str, ...] = ("distinct",)
    """``distinct``: an abstention agrees with nothing, so it can never make the rule stop."""
    round_sizes: tuple[int, ...] = (1, 2)
    min_samples: tuple[int, ...] = (2, 3, 4)
    max_risks: tuple[float | None, ...] = (None, 0.05, 0.1, 0.2)
    """Worst-case loss per query the confident exit waits for at each budget (:attr:`StopRule.max_risk`)."""
    hopeless: tuple[tuple[float, int] | None, ...] = (None, (0.2, 10), (0.3, 10))
    """``(hopeless_threshold, hopeless_after)`` pairs; None: no hopeless exit."""
    thresholds: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(1.0, 0.51, -0.025), 4))
    """Fixed in advance (data-independent); walked strictest (highest) first."""

    @classmethod
    def recorded_order(cls) -> Family:
        """The earlier family for the recorded-order tests (``ltt-paired``): entropy, majority and beta."""
        return cls(
            measures=("entropy", "majority", "beta"),
            abstentions=("class",),
            round_sizes=(1, 2),
            min_samples=(2, 3, 4, 6, 8),
            hopeless=(None, (0.1, 8), (0.2, 16)),
            thresholds=tuple(float(t) for t in np.round(np.linspace(1.0, 0.0, 51), 4)),
            max_risks=(None,),
        )

    def chains(self, answer_kind: str = "math") -> list[StopRule]:
        """Every rule of the family with its threshold left open (None)."""
        out = []
        for measure, abst, rnd, low, risk, hope in product(
            self.measures, self.abstentions, self.round_sizes, self.min_samples, self.max_risks, self.hopeless
        ):
            if low < rnd:
                continue  # the first check is after one round anyway
            chain = StopRule(
                measure,
                None,
                min_samples=low,
                round_size=rnd,
                answer_kind=answer_kind,  # type: ignore[arg-type]
                abstentions=abst,  # type: ignore[arg-type]
                hopeless_threshold=None if hope is None else hope[0],
                hopeless_after=1 if hope is None else hope[1],
            )
            if risk is not None:
                if not chain.bounded:
                    continue  # no range to cap
                chain = chain.with_changes(max_risk=risk)
            out.append(chain)
        return out

    def strictest_first(self) -> list[float]:
        return sorted(set(self.thresholds), reverse=True)


def _with_threshold(chain: StopRule, threshold: float) -> StopRule:
    hope = chain.hopeless_threshold
    if hope is not None and hope > threshold:
        hope = threshold  # a hopeless exit never above the confident one
    return chain.with_changes(threshold=threshold, hopeless_threshold=hope)


@dataclass(frozen=True, slots=True)
class WalkStep:
    """One rule tested on the certify part."""

    rule: StopRule
    outcome: ReplayOutcome | ExpectedOutcome
    p_value: float
    ceiling: float | None = None
    """The most a query's loss can be under this rule (``ordering-betting``: range plus Monte Carlo margin)."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """The result of :func:`certify`: the rule, the evidence, and what could not be done."""

    rule: StopRule
    """The certified rule (its ``certification`` says at what); the full budget when none passed."""
    certified: bool
    chain: StopRule | None
    """The family member chosen on the learn part (threshold open)."""
    learn_queries: int
    certify_queries: int
    walk: list[WalkStep]
    """Rules certified, strictest first."""
    stopped_at: WalkStep | None
    """The first rule not certified, where the walk ended (None: every threshold passed)."""
    outcome: ReplayOutcome | ExpectedOutcome
    """The returned rule on all the calibration queries (ordering-averaged for ``ordering-betting``)."""
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        """A short plain-text report (the promise, the walk, the notes)."""
        cert = self.rule.certification
        lines = [
            f"rule: {self.rule.describe()}",
            f"promise: {cert.statement if cert else 'none'}",
            f"on the {self.outcome.n} calibration queries: samples saved {self.outcome.samples_saved:.1%}, "
            f"accuracy {self.outcome.accuracy:.3f} vs {self.outcome.full_accuracy:.3f} at the full budget "
            f"(loss {100 * self.outcome.loss:+.2f} pt), harms {self.outcome.harms:.3g}, helps {self.outcome.helps:.3g}"
            + (" (expected, over orderings)" if isinstance(self.outcome, ExpectedOutcome) else ""),
            f"split: {self.learn_queries} queries chose the family member, {self.certify_queries} certified it; "
            f"thresholds certified {len(self.walk)}"
            + (
                ""
                if self.stopped_at is None
                else f", walk stopped at {self.stopped_at.rule.describe()} "
                f"(p = {self.stopped_at.p_value:.3g}, loss {100 * self.stopped_at.outcome.loss:+.2f} pt, "
                f"harms {self.stopped_at.outcome.harms:.3g}, helps {self.stopped_at.outcome.helps:.3g})"
            ),
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def split_queries(
    trajectories: Sequence[Trajectory], learn_share: float, seed: int
) -> tuple[list[Trajectory], list[Trajectory]]:
    """Random learn/certify split, per data set (each set split in the same proportion)."""
    if not 0.0 < learn_share < 1.0:
        raise ValueError(f"learn_share must lie in (0, 1), got {learn_share}")
    rng = np.random.default_rng(seed)
    by_set: dict[str, list[int]] = {}
    for i, t in enumerate(trajectories):
        by_set.setdefault(t.dataset, []).append(i)
    learn: list[Trajectory] = []
    cert: list[Trajectory] = []
    for name in sorted(by_set):
        idx = np.array(by_set[name])
        rng.shuffle(idx)
        k = round(learn_share * idx.size)
        learn += [trajectories[i] for i in idx[:k]]
        cert += [trajectories[i] for i in idx[k:]]
    return learn, cert


def _walk_point(
    chain: StopRule, thresholds: Sequence[float], batch: TrajectoryBatch, target: float
) -> tuple[StopRule | None, ReplayOutcome | None]:
    """Loosest threshold (strictest first) whose observed loss stays within ``target`` throughout."""
    best: tuple[StopRule, ReplayOutcome] | None = None
    for t in thresholds:
        rule = _with_threshold(chain, t)
        o = replay(rule, batch)
        if o.loss > target:
            break
        if best is None or o.samples < best[1].samples:
            best = (rule, o)
    return (best[0], best[1]) if best else (None, None)


def choose_rule(
    trajectories: Sequence[Trajectory] | TrajectoryBatch,
    *,
    target: float = 0.005,
    family: Family | None = None,
    answer_kind: str = "math",
    replayer: OrderingReplay | None = None,
) -> tuple[StopRule | None, ReplayOutcome | ExpectedOutcome | None]:
    """The family member that saves the most samples with observed loss within ``target`` (no bound).

    A point estimate: on the data it was chosen on it meets the target by construction, and
    says nothing about other data. :func:`certify` gives a rule with a promise. With a
    ``replayer`` the losses are ordering-averaged (:class:`OrderingReplay`), else recorded-order.
    """
    fam = family or Family()
    if replayer is not None:
        if isinstance(trajectories, TrajectoryBatch):
            trajectories = trajectories.trajectories
        return _choose_by_orderings(list(trajectories), target, fam, answer_kind, replayer)
    batch = trajectories if isinstance(trajectories, TrajectoryBatch) else TrajectoryBatch(trajectories)
    best: tuple[StopRule, ReplayOutcome] | None = None
    for chain in fam.chains(answer_kind):
        rule, o = _walk_point(chain, fam.strictest_first(), batch, target)
        if rule is not None and o is not None and (best is None or o.samples < best[1].samples):
            best = (rule, o)
    return (best[0], best[1]) if best else (None, None)


def _choose_by_orderings(
    trajectories: list[Trajectory], target: float, family: Family, answer_kind: str, replayer: OrderingReplay
) -> tuple[StopRule | None, ExpectedOutcome | None]:
    thresholds = tuple(family.strictest_first())
    chains = family.chains(answer_kind)
    replayer.prepare([(c, thresholds) for c in chains], trajectories)
    best: tuple[StopRule, ExpectedOutcome] | None = None
    for chain in chains:
        for t, o in zip(thresholds, replayer.sweep(chain, thresholds, trajectories), strict=True):
            if o.loss > target:
                break
            if best is None or o.samples < best[1].samples:
                best = (_with_threshold(chain, t), o)
    return (best[0], best[1]) if best else (None, None)


def _choose_chain(
    learn: TrajectoryBatch,
    n_cert: int,
    family: Family,
    target: float,
    delta: float,
    method: Method,
    binomial_share: float,
    answer_kind: str,
) -> StopRule | None:
    """The family member predicted to certify the largest saving.

    Each chain is walked on the learn part as the certification will walk it, with the learn
    part's harms and helps scaled to the certify part's size standing in for the certify
    counts. Only the learn part is read: the choice cannot bias the test.
    """
    scale = n_cert / learn.size
    best: tuple[StopRule, int] | None = None
    for chain in family.chains(answer_kind):
        for t in family.strictest_first():
            o = replay(_with_threshold(chain, t), learn)
            p = loss_pvalue(round(o.harms * scale), round(o.helps * scale), n_cert, target, method, binomial_share)
            if p > delta:
                break
            if best is None or o.samples < best[1]:
                best = (chain, o.samples)
    return None if best is None else best[0]


def _describe_data(trajectories: Sequence[Trajectory]) -> str:
    counts: dict[str, int] = {}
    for t in trajectories:
        counts[t.dataset or "unnamed"] = counts.get(t.dataset or "unnamed", 0) + 1
    return ", ".join(f"{name} ({n})" for name, n in sorted(counts.items()))


def certify(
    trajectories: Sequence[Trajectory],
    *,
    target: float = 0.005,
    confidence: float = 0.95,
    method: Method = "ordering-betting",
    family: Family | None = None,
    learn_share: float = 0.3,
    seed: int = 0,
    answer_kind: str = "math",
    binomial_share: float = 0.8,
    orderings: Orderings | None = None,
    replayer: OrderingReplay | None = None,
    scope: str = "each set",
) -> Calibration:
    r"""A rule whose accuracy loss vs the full budget is at most ``target`` with probability ``confidence``.

    Learn then Test (module docstring): the family member is chosen on a ``learn_share`` of
    the queries, its thresholds are walked strictest first on the rest, and the certified
    rule saving the most samples is returned. When nothing passes the rule is the full budget
    (``threshold`` None) and the notes say why.

    Parameters
    ----------
    trajectories:
        Complete trajectories (each one's last check is its full budget), from one or many sets.
    target:
        :math:`\varepsilon`, allowed accuracy loss as a fraction (0.005 = 0.5 points).
    confidence:
        :math:`1 - \delta`.
    method:
        ``ordering-betting`` (the default: the ordering-averaged paired loss, bounded per query,
        tested by betting; :mod:`certaindex._certify_orderings`), or in the recorded order
        ``ltt-paired`` (harms and helps) or ``ltt-binomial`` (harm rate only).
    family:
        The rules to choose from (default :class:`Family`; :meth:`Family.recorded_order` for the
        recorded-order methods).
    orderings, replayer:
        How ``ordering-betting`` averages over orderings; pass one :class:`OrderingReplay` to
        several calls on the same trajectories to share the work.
    scope:
        ``ordering-betting`` only: the promise holds for ``"each set"`` (every data set's workload
        on its own, the default) or for the ``"pooled"`` mixture of the calibration data.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target is a fraction in [0, 1), got {target}")
    if not trajectories:
        raise ValueError("no trajectories to calibrate on")
    if method == "ordering-betting":
        from certaindex._certify_orderings import certify_by_orderings  # it builds on this module

        return certify_by_orderings(
            trajectories,
            target=target,
            confidence=confidence,
            family=family or Family(),
            learn_share=learn_share,
            seed=seed,
            answer_kind=answer_kind,
            replayer=replayer or OrderingReplay(orderings),
            scope=scope,  # type: ignore[arg-type]
        )
    if method not in ("ltt-paired", "ltt-binomial"):
        raise ValueError(f"unknown method {method!r}: use ordering-betting, ltt-paired or ltt-binomial")
    fam = family or Family.recorded_order()
    delta = 1.0 - confidence
    learn, cert = split_queries(trajectories, learn_share, seed)
    everything = TrajectoryBatch(trajectories)
    notes: list[str] = []
    full = StopRule(fam.measures[0], None, answer_kind=answer_kind)  # type: ignore[arg-type]
    chain = None
    if learn and cert:
        chain = _choose_chain(
            TrajectoryBatch(learn), len(cert), fam, target, delta, method, binomial_share, answer_kind
        )
    if chain is None and learn:
        chosen, _ = choose_rule(learn, target=target, family=fam, answer_kind=answer_kind)
        if chosen is not None:
            chain = chosen.with_changes(threshold=None)
            notes.append("no family member is predicted to certify on the learn part: trying the best point estimate")
    if chain is None:
        notes.append("no family member met the target on the learn part: run to the full budget")
        return Calibration(full, False, None, len(learn), len(cert), [], None, replay(full, everything), notes)
    cert_batch = TrajectoryBatch(cert)
    steps: dict[float, WalkStep] = {}

    def p_value(threshold: float) -> float:
        rule = _with_threshold(chain, threshold)
        o = replay(rule, cert_batch)
        p = loss_pvalue(o.harms, o.helps, o.n, target, method, binomial_share)
        steps[threshold] = WalkStep(rule, o, p)
        return p

    passed, failed = fixed_sequence(fam.strictest_first(), p_value, delta)
    walk = [steps[t] for t in passed]
    stopped_at = None if failed is None else steps[failed]
    n_cert = len(cert)
    share = binomial_share if method == "ltt-paired" else 1.0
    floor = (1.0 - target) ** n_cert / share
    if floor > delta:
        needed = np.log(1.0 / (share * delta)) / -np.log1p(-target) if target > 0 else float("inf")
        notes.append(
            f"{n_cert} certify queries cannot certify {100 * target:g} pt at {confidence:g} without helps: "
            f"with no harm the p-value is {floor:.3f} > {delta:g} (about {needed:.0f} harm-free certify "
            "queries are needed)"
        )
    if not passed:
        notes.append("no threshold of the chosen family member was certified: run to the full budget")
        return Calibration(full, False, chain, len(learn), n_cert, walk, stopped_at, replay(full, everything), notes)
    best = min((steps[t] for t in passed), key=lambda s: s.outcome.samples)
    overall = replay(best.rule, everything)
    certification = Certification(
        bound=target,
        confidence=confidence,
        method=method,
        data=_describe_data(trajectories),
        queries=len(trajectories),
        expected_saving=overall.samples_saved,
        expected_loss=overall.loss,
    )
    rule = best.rule.with_changes(certification=certification)
    return Calibration(rule, True, chain, len(learn), n_cert, walk, stopped_at, overall, notes)


def certify_ladder(
    trajectories: Sequence[Trajectory],
    targets: Sequence[float],
    *,
    confidence: float = 0.95,
    **options: Any,
) -> Calibration:
    """The rule certified at the tightest of several bounds fixed in advance.

    Each bound is tried with :func:`certify` at ``delta / len(targets)`` (Bonferroni), so the
    returned rule's promise holds at ``confidence`` whichever bound it ends up with. Use it
    when the tight bound may be out of reach at the data's size: it says what *can* be
    promised instead of nothing.
    """
    if not targets:
        raise ValueError("no targets")
    per_level = 1.0 - (1.0 - confidence) / len(targets)
    last: Calibration | None = None
    for target in sorted(targets):
        last = certify(trajectories, target=target, confidence=per_level, **options)
        if last.certified:
            cert = last.rule.certification
            assert cert is not None
            joint = replace(cert, confidence=confidence, method=f"{cert.method}, tightest of {len(targets)} bounds")
            return replace(last, rule=last.rule.with_changes(certification=joint))
    assert last is not None
    return last
