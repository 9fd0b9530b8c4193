r"""Certify a stop rule on its bounded, ordering-averaged paired loss (``ordering-betting``).

Why each step is valid
----------------------
1. **Exchangeability.** A query's samples are independent draws from the model, so every
   ordering of them was as likely to be the recorded one. A rule's ordering-averaged paired loss
   :math:`X_i` on query :math:`i` (:mod:`certaindex._orderings`) therefore has, over the draw of
   the query and its samples, the mean :math:`\mu` the rule loses against the full budget on the
   workload; queries are independent draws, so the :math:`X_i` are independent.
2. **The range.** Whatever the query's answers, :math:`X_i \le h`, computed from the rule and the
   budget alone (:func:`~certaindex.loss_range`); the largest over the budgets in the data is used.
   Where the average is Monte Carlo (``count`` random orderings) the estimate can exceed its exact
   value: the ceiling is widened by :math:`\eta` and the target lowered by the expected excess
   :math:`\xi` beyond it (:func:`~certaindex.mc_margin`, :math:`\xi` = 1% of the target), which
   keeps the betting factors' expectation :math:`\le 1` under the null.
3. **The test.** :math:`H_0: \mu > \varepsilon` is tested by betting
   (:func:`~certaindex.betting_pvalue`) with the bets chosen on the learn part: the fraction with
   the most log-wealth there, and half of it, mixed.
4. **The walk.** The calibration queries are split at random per data set into a learn part (30%)
   and a certify part. The learn part alone chooses one chain (everything fixed but the threshold)
   and the bets; on the certify part the chain's thresholds, on a grid fixed in advance, are tested
   strictest first and the walk stops at the first one not certified (fixed-sequence testing): the
   first true null met is rejected with probability at most :math:`\delta`, so with probability
   :math:`\ge 1-\delta` every threshold passed keeps its promise, jointly, and the one saving the
   most samples is returned. Nothing the certify part shows steers the choice, so no correction
   for the size of the family is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from certaindex._betting import betting_fraction, betting_pvalue
from certaindex._certify import (
    Calibration,
    Family,
    WalkStep,
    _describe_data,
    _with_threshold,
    fixed_sequence,
    split_queries,
)
from certaindex._orderings import ExpectedOutcome, OrderingReplay
from certaindex._range import loss_range, mc_margin
from certaindex._rule import Certification, StopRule
from certaindex._trajectory import Trajectory

__all__ = ["Scope", "certify_by_orderings", "loss_ceiling"]

METHOD = "ordering-betting"
SLACK_SHARE = 0.01
"""The Monte Carlo excess :math:`\\xi` allowed, as a share of the target."""


def loss_ceiling(rule: StopRule, budgets: Sequence[int], replayer: OrderingReplay, target: float) -> float:
    r"""The most a query's ordering-averaged loss estimate can be under ``rule`` at these budgets.

    :math:`\max_N h(N) + \eta(N)`, with :math:`\eta = 0` where every query of :math:`N` samples is
    averaged exactly (:math:`N!` within the exact limit).
    """
    slack = SLACK_SHARE * target if target > 0 else 1e-6
    eta = mc_margin(replayer.orderings.count, slack)
    out = -1.0
    for n in sorted(set(budgets)):
        exact = math.factorial(n) <= replayer.orderings.exact_limit
        out = max(out, loss_range(rule, n).hi + (0.0 if exact else eta))
    return out


def _inner_target(budgets: Sequence[int], replayer: OrderingReplay, target: float) -> float:
    """The target the test uses: lowered by the Monte Carlo slack where any query may be Monte Carlo."""
    if all(math.factorial(n) <= replayer.orderings.exact_limit for n in budgets):
        return target
    return target - SLACK_SHARE * target


def _bets(learn: ExpectedOutcome, bound: float, upper: float) -> tuple[float, float]:
    lam = betting_fraction(learn.losses, bound, upper)
    return lam, lam / 2


def _predicted_pass(learn: ExpectedOutcome, n_cert: int, bound: float, upper: float, delta: float) -> bool:
    """Would the certify part pass, if it looked like the learn part scaled to its size?"""
    if upper <= bound:
        return True
    if learn.n == 0:
        return False
    lam, _ = _bets(learn, bound, upper)
    if lam <= 0:
        return False
    growth = float(np.log(np.maximum(1.0 + lam * (bound - learn.losses), 1e-300)).sum()) * n_cert / learn.n
    return growth - math.log(2.0) >= math.log(1.0 / delta)


Scope = Literal["each set", "pooled"]
"""What the promise covers: every data set's workload on its own (the default), or their pooled mixture."""


@dataclass(frozen=True, slots=True)
class _Group:
    """Queries the promise covers together (one data set, or all of them pooled)."""

    name: str
    learn: list[Trajectory]
    cert: list[Trajectory]
    budgets: tuple[int, ...]


def _groups(learn: list[Trajectory], cert: list[Trajectory], scope: Scope) -> list[_Group]:
    if scope == "pooled":
        budgets = tuple(sorted({len(t) for t in learn + cert}))
        return [_Group("pooled", learn, cert, budgets)]
    if scope != "each set":
        raise ValueError(f"scope must be 'each set' or 'pooled', got {scope!r}")
    names = sorted({t.dataset for t in learn + cert})
    out = []
    for name in names:
        g_learn = [t for t in learn if t.dataset == name]
        g_cert = [t for t in cert if t.dataset == name]
        out.append(_Group(name or "unnamed", g_learn, g_cert, tuple(sorted({len(t) for t in g_learn + g_cert}))))
    return out


def certify_by_orderings(
    trajectories: Sequence[Trajectory],
    *,
    target: float,
    confidence: float,
    family: Family,
    learn_share: float,
    seed: int,
    answer_kind: str,
    replayer: OrderingReplay,
    scope: Scope = "each set",
) -> Calibration:
    r""":func:`~certaindex.certify` with ``method="ordering-betting"`` (see the module docstring).

    With ``scope="each set"`` a threshold passes when every data set's own test passes
    (:math:`p = \max_s p_s`, an intersection-union test: the promise then holds for each set's
    workload, jointly, at the confidence given); ``"pooled"`` tests the mixture the data make.
    """
    delta = 1.0 - confidence
    everything = list(trajectories)
    learn, cert = split_queries(everything, learn_share, seed)
    groups = _groups(learn, cert, scope)
    thresholds = tuple(family.strictest_first())
    chains = family.chains(answer_kind)
    replayer.prepare([(c, thresholds) for c in chains], everything)
    notes: list[str] = []
    full = StopRule(family.measures[0], None, answer_kind=answer_kind)  # type: ignore[arg-type]

    def tests(chain: StopRule, group: _Group) -> list[tuple[float, float]]:
        """Per threshold: (ceiling, inner target) of ``group``."""
        bound = _inner_target(group.budgets, replayer, target)
        return [(loss_ceiling(_with_threshold(chain, t), group.budgets, replayer, target), bound) for t in thresholds]

    # Learn part: the chain predicted to certify the largest saving on every group.
    chosen: tuple[StopRule, float] | None = None
    fallback: tuple[StopRule, float] | None = None
    for chain in chains:
        per_group = [
            (g, tests(chain, g), replayer.sweep(chain, thresholds, g.learn) if g.learn else []) for g in groups
        ]
        saved = replayer.sweep(chain, thresholds, learn) if learn else []
        for i in range(len(thresholds)):
            ok = all(
                outs and _predicted_pass(outs[i], len(g.cert), *bounds[i][::-1], delta) for g, bounds, outs in per_group
            )
            if not ok:
                if i == 0:
                    score = min(
                        _promise(outs[0], *bounds[0][::-1]) if outs else -math.inf for g, bounds, outs in per_group
                    )
                    if fallback is None or score > fallback[1]:
                        fallback = (chain, score)
                break
            if chosen is None or saved[i].samples_saved > chosen[1]:
                chosen = (chain, saved[i].samples_saved)
    if chosen is None:
        if fallback is None or not cert:
            notes.append("no family member could be tried: run to the full budget")
            return Calibration(
                full, False, None, len(learn), len(cert), [], None, replayer.outcome(full, everything), notes
            )
        chosen = fallback
        notes.append("no family member is predicted to certify on the learn part: trying the most promising one")
    chain = chosen[0]
    plans = []
    for g in groups:
        learn_outs = replayer.sweep(chain, thresholds, g.learn) if g.learn else None
        cert_outs = replayer.sweep(chain, thresholds, g.cert) if g.cert else None
        plans.append((g, tests(chain, g), learn_outs, cert_outs))
    cert_all = dict(zip(thresholds, replayer.sweep(chain, thresholds, cert), strict=True)) if cert else {}
    steps: dict[float, WalkStep] = {}

    def p_value(threshold: float) -> float:
        i = thresholds.index(threshold)
        worst, top = 0.0, -math.inf
        for _, bounds, learn_outs, cert_outs in plans:
            upper, bound = bounds[i]
            top = max(top, upper)
            if upper <= bound:
                continue
            if cert_outs is None:
                worst = 1.0
                continue
            lo = learn_outs[i] if learn_outs is not None else None
            bets = _bets(lo, bound, upper) if lo is not None else (0.5 / (upper - bound), 0.25 / (upper - bound))
            worst = max(worst, betting_pvalue(cert_outs[i].losses, bound, upper, bets))
        steps[threshold] = WalkStep(_with_threshold(chain, threshold), cert_all[threshold], worst, top)
        return worst

    passed, failed = fixed_sequence(thresholds, p_value, delta) if cert else ([], None)
    walk = [steps[t] for t in passed]
    stopped_at = None if failed is None else steps[failed]
    for g, bounds, _, _ in plans:
        upper, bound = bounds[0]
        if upper > bound:
            needed = math.log(2.0 / delta) / math.log1p((1.0 - 1e-6) / (upper - bound) * bound)
            if needed > len(g.cert):
                notes.append(
                    f"{g.name}: {len(g.cert)} certify queries cannot certify {100 * target:g} pt at {confidence:g} "
                    f"with this chain: its strictest rule's loss can reach {upper:.3g} on a query, so even with no "
                    f"loss at all about {needed:.0f} are needed"
                )
    if not passed:
        notes.append("no threshold of the chosen family member was certified: run to the full budget")
        return Calibration(
            full, False, chain, len(learn), len(cert), walk, stopped_at, replayer.outcome(full, everything), notes
        )
    best = max((steps[t] for t in passed), key=lambda s: s.outcome.samples_saved)
    overall = replayer.outcome(best.rule, everything)
    where = "each data set" if scope == "each set" else "the pooled data"
    certification = Certification(
        bound=target,
        confidence=confidence,
        method=f"{METHOD} on {where} (ordering-averaged paired loss, ceiling {best.ceiling:.3g}; "
        f"Learn then Test, fixed sequence; orderings: {replayer.orderings.describe()})",
        data=_describe_data(everything),
        queries=len(everything),
        expected_saving=overall.samples_saved,
        expected_loss=overall.loss,
    )
    rule = best.rule.with_changes(certification=certification)
    return Calibration(rule, True, chain, len(learn), len(cert), walk, stopped_at, overall, notes)


def _promise(learn: ExpectedOutcome, bound: float, upper: float) -> float:
    """Mean log-growth per query of the bet the learn part would place (how close the rule is to passing)."""
    if upper <= bound:
        return math.inf
    lam = 0.5 / (upper - bound)
    return float(np.log(np.maximum(1.0 + lam * (bound - learn.losses), 1e-300)).mean())
