r"""How large a rule's ordering-averaged loss on one query can be, whatever the query's answers.

For a rule and a budget of :math:`N` samples, a query's ordering-averaged paired loss
:math:`L = E_\pi[F - S]` (:math:`F`, :math:`S`: the full budget's and the rule's answer is right)
lies in :math:`[-h, h]` for an :math:`h` that depends on the rule and :math:`N` only. The
certification's test (:func:`~certaindex.betting_pvalue`) needs :math:`h`: its floor is about
:math:`h \log(1/\delta) / n` instead of :math:`\log(1/\delta) / n`.

The bound for a strict-majority rule
------------------------------------
Take ``majority`` with abstentions ``distinct`` (an abstention agrees with nothing), threshold
:math:`t > 1/2`, and checks at :math:`k \ge 2` samples. At a check the rule stops iff one answer
cluster holds at least :math:`\lceil tk \rceil > k/2` of the samples, and it returns that
cluster. The loss is non-zero only if the rule stops on a cluster :math:`j` that is not the full
budget's answer, so

.. math:: |L| \le \sum_j P(j \text{ triggers and is not the final answer}).

A cluster of :math:`b` samples triggers at some check with probability :math:`g(b)`: its count
after :math:`k` draws without replacement is a hypergeometric path, whatever the other samples
are (a dynamic programme over draws and the cluster's count). A cluster smaller than the largest
is never the final answer; the unique largest always is; of :math:`s` tied largest clusters of
:math:`a` samples the final answer is the one seen first, and :math:`h(a, s)` is the probability
that one of them triggers *after* another tied cluster has been seen (a second programme). So

.. math:: h = \max_{a, s} \Big[ s\,h(a, s)\,[s > 1] + \max_{\{b_i < a\},\ \sum b_i \le N - sa} \sum_i g(b_i) \Big],

a knapsack over the sizes of the other clusters (abstentions fill any rest and never trigger).
Tests check :math:`h` against the worst query found by brute force over every multiset of
answers (and every assignment of correctness) for small :math:`N`.

Every other rule gets the trivial range :math:`[-1, 1]` (``how`` says so): a hopeless exit can
return a plurality that is not the final one with probability near 1 on a query with many
near-tied answers, and the other measures are not bounded here. A rule that never stops early
has :math:`h = 0`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from certaindex._rule import StopRule

__all__ = ["LossRange", "loss_range", "mc_margin"]


@dataclass(frozen=True, slots=True)
class LossRange:
    """Where a rule's ordering-averaged paired loss on one query can lie, at one budget."""

    lo: float
    hi: float
    budget: int
    how: str
    """``never early``, ``union bound over answer clusters`` or ``trivial``."""


def _thresholds(rule: StopRule, budget: int) -> dict[int, int]:
    """Per early check (samples drawn), the fewest samples of one cluster that make the rule stop."""
    assert rule.threshold is not None
    out = {}
    low = rule.min_samples_at(budget)
    for k in range(rule.round_size, budget, rule.round_size):
        if k < low:
            continue
        c = max(0, math.ceil(rule.threshold * k) - 1)
        while c / k < rule.threshold:  # the float comparison stop_index makes
            c += 1
        out[k] = c
    return out


def _trigger(checks: dict[int, int], budget: int) -> NDArray[np.float64]:
    """``g[b]``: probability that a cluster of ``b`` samples reaches its threshold at some check."""
    n = budget
    sizes = np.arange(n + 1)[:, None]
    state = np.zeros((n + 1, n + 1))  # [cluster size, count drawn so far], not triggered yet
    state[:, 0] = 1.0
    hit = np.zeros(n + 1)
    counts = np.arange(n + 1)[None, :]
    for i in range(n - 1):  # draw sample i + 1
        p = np.clip((sizes - counts) / (n - i), 0.0, 1.0)
        moved = state * p
        state = state - moved
        state[:, 1:] += moved[:, :-1]
        need = checks.get(i + 1)
        if need is not None:
            hit += state[:, need:].sum(axis=1)
            state[:, need:] = 0.0
    return hit


def _tied_trigger(checks: dict[int, int], budget: int) -> dict[tuple[int, int], float]:
    """``(size, right)``: a tied largest cluster of ``size`` triggers after one of ``right`` other tied ones was seen.

    The rule's answer is then not the full budget's (the first seen of the tied clusters), and it
    can harm only if one of those is right; the other tied clusters are as any other sample here.
    All pairs with ``(right + 1) * size <= budget`` at once (one programme, a row per pair).
    """
    n = budget
    pairs = [(a, r) for a in range(1, n // 2 + 1) for r in range(1, n // a)]
    if not pairs:
        return {}
    size = np.array([a for a, _ in pairs], dtype=float)[:, None]
    right = np.array([r for _, r in pairs], dtype=float)
    rest = n - (right + 1) * size[:, 0]
    before = np.ones(len(pairs))  # neither this cluster nor any of the `right` ones drawn yet
    state = np.zeros((len(pairs), n // 2 + 1))  # one of the `right` ones was seen first; this cluster's count
    counts = np.arange(n // 2 + 1)[None, :]
    hit = np.zeros(len(pairs))
    for i in range(n - 1):
        left = n - i
        moved = state * np.maximum(size - counts, 0.0) / left
        state = state - moved
        state[:, 1:] += moved[:, :-1]
        state[:, 0] += before * right * size[:, 0] / left
        before = before * np.maximum(rest - i, 0) / left
        need = checks.get(i + 1)
        if need is not None:
            hit += state[:, need:].sum(axis=1)
            state[:, need:] = 0.0
    return dict(zip(pairs, hit.tolist(), strict=True))


def _knapsack(gain: NDArray[np.float64], budget: int) -> NDArray[np.float64]:
    """``best[p, c]``: the most total ``gain`` of clusters of sizes <= p with at most ``c`` samples."""
    n = budget
    best = np.zeros((n + 1, n + 1))
    for p in range(1, n + 1):
        row = best[p - 1].copy()
        for c in range(p, n + 1):
            row[c] = max(row[c], row[c - p] + gain[p])
        best[p] = row
    return best


@lru_cache(maxsize=4096)
def _range(rule: StopRule, budget: int) -> LossRange:
    if rule.threshold is None and rule.hopeless_threshold is None:
        return LossRange(0.0, 0.0, budget, "never early")
    if not rule.bounded or rule.threshold is None or rule.hopeless_threshold is not None:
        return LossRange(-1.0, 1.0, budget, "trivial")
    checks = _thresholds(rule, budget)
    if not checks:
        return LossRange(0.0, 0.0, budget, "never early")
    gain = _trigger(checks, budget)
    best = _knapsack(gain, budget)
    ties = _tied_trigger(checks, budget)
    # No tie: the largest cluster (size a) is the answer; the others, smaller, fill the rest.
    sizes = np.arange(1, budget + 1)
    worst = float(best[sizes - 1, budget - sizes].max())
    for size in range(1, budget // 2 + 1):
        for tied in range(2, budget // size + 1):
            # `right` of the tied clusters are right, the other `tied - right` can harm.
            harm = max((tied - right) * ties[size, right] for right in range(1, tied))
            worst = max(worst, harm + float(best[size - 1, budget - tied * size]))
    worst = float(min(1.0, worst))
    return LossRange(-worst, worst, budget, "union bound over answer clusters")


def loss_range(rule: StopRule, budget: int) -> LossRange:
    """Bounds on a query's ordering-averaged paired loss under ``rule`` at ``budget`` samples, for any answers.

    >>> rule = StopRule("majority", 1.0, min_samples=2, abstentions="distinct")  # the first two agree
    >>> round(loss_range(rule, 8).hi, 4)  # worst query: 5 right, 3 alike and wrong: 3/8 x 2/7
    0.1071
    >>> loss_range(StopRule("beta", 0.95), 8).how
    'trivial'
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    return _range(rule.with_changes(certification=None, name=None), budget)


def mc_margin(count: int, slack: float) -> float:
    r"""Margin :math:`\eta` for a Monte Carlo ordering average over ``count`` orderings.

    The average :math:`\hat S` of the rule's correctness over :math:`M` random orderings (each in
    :math:`[0, 1]`) misses its exact value by more than :math:`s` with probability at most
    :math:`e^{-2Ms^2}` (Hoeffding), so the expected excess over :math:`\eta`,
    :math:`\int_\eta^\infty e^{-2Ms^2} ds = \tfrac12\sqrt{\pi/(2M)}\,\mathrm{erfc}(\eta\sqrt{2M})`,
    is at most ``slack`` for the :math:`\eta` returned. The test widens the range by
    :math:`\eta` and lowers its target by ``slack``.

    >>> round(mc_margin(2000, 5e-5), 4)
    0.0326
    """
    if count < 1 or slack <= 0:
        raise ValueError("count must be >= 1 and slack > 0")
    from scipy import optimize, special  # lazy: keeps `import certaindex` fast

    scale = math.sqrt(2 * count)

    def excess(eta: float) -> float:
        return 0.5 * math.sqrt(math.pi / (2 * count)) * float(special.erfc(eta * scale)) - slack

    if excess(0.0) <= 0:
        return 0.0
    return float(optimize.brentq(excess, 0.0, 2.0))
