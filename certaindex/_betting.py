r"""A test of "mean loss above the bound" for losses known to lie below a ceiling (testing by betting).

Per query :math:`i` the certification sees :math:`X_i`, the ordering-averaged paired loss of a
rule, independent across queries (the queries are independent draws from the workload) with
mean :math:`\mu` (the rule's expected loss on the workload) and :math:`X_i \le u` always
(:func:`~certaindex.loss_range`). To show :math:`\mu \le \varepsilon`, bet against the null
:math:`H_0: \mu > \varepsilon`: with a fraction :math:`0 \le \lambda \le 1/(u - \varepsilon)`
fixed before the certify queries are seen, the wealth

.. math:: K(\lambda) = \prod_i \big(1 + \lambda(\varepsilon - X_i)\big)

has every factor :math:`\ge 0` (as :math:`X_i \le u`) and, under :math:`H_0`,
:math:`E[K] = \prod_i (1 + \lambda(\varepsilon - \mu)) \le 1`. A mixture of such wealths is one
too, so by Markov's inequality :math:`p = 1 / \mathrm{mean}_j K(\lambda_j)` is a valid p-value:
:math:`P(p \le \delta) \le \delta` under :math:`H_0`. Small :math:`X_i` (most queries lose
nothing) multiply the wealth by :math:`1 + \lambda\varepsilon` each, so with no loss at all
:math:`n \approx u \log(1/\delta)/\varepsilon` queries suffice where a 0/1 loss needs
:math:`\log(1/\delta)/\varepsilon`; negative :math:`X_i` (the rule helped) count for it too.

References
----------
Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting", JRSS B 2023;
Shafer & Vovk, "Game-Theoretic Foundations for Probability and Finance", 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["betting_fraction", "betting_pvalue"]


def _check(bound: float, upper: float) -> None:
    if not -1.0 <= bound <= 1.0 or not -1.0 <= upper <= 2.0:
        raise ValueError(f"bound and upper must be losses (fractions), got {bound} and {upper}")


def betting_pvalue(losses: ArrayLike, bound: float, upper: float, fractions: Sequence[float]) -> float:
    r"""P-value of "mean loss > ``bound``" from independent ``losses`` that never exceed ``upper``.

    ``fractions`` are the bets :math:`\lambda_j` (each in :math:`[0, 1/(u - \varepsilon)]`,
    chosen without looking at ``losses``); the p-value is one over their mean wealth.

    >>> round(betting_pvalue([0.0] * 70, 0.005, 0.1, [1 / 0.095]), 4)  # 70 loss-free queries, ceiling 0.1
    0.0276
    >>> round(betting_pvalue([0.0] * 70, 0.005, 1.0, [1 / 0.995]), 4)  # the same with the trivial ceiling
    0.7041
    >>> betting_pvalue([0.2], 0.005, 0.004, [1.0])  # a ceiling below the bound: nothing to test
    0.0
    """
    _check(bound, upper)
    if upper <= bound:
        return 0.0
    x = np.asarray(losses, dtype=float)
    if x.size and x.max() > upper + 1e-12:
        raise ValueError(f"a loss of {x.max():.4g} exceeds the ceiling {upper:.4g}: the test would be void")
    cap = 1.0 / (upper - bound)
    logs = []
    for lam in fractions:
        if not 0.0 <= lam <= cap * (1 + 1e-9):
            raise ValueError(f"bet {lam} outside [0, {cap:.4g}] (1 / (upper - bound))")
        factors = 1.0 + lam * (bound - x)
        if (factors <= 0).any():
            logs.append(-math.inf)
        else:
            logs.append(float(np.log(factors).sum()))
    if not logs:
        return 1.0
    top = max(logs)
    if top == -math.inf:
        return 1.0
    log_mean = top + math.log(sum(math.exp(v - top) for v in logs) / len(logs))
    return float(min(1.0, math.exp(-log_mean)))


def betting_fraction(losses: ArrayLike, bound: float, upper: float) -> float:
    r"""The bet :math:`\lambda \in [0, 1/(u - \varepsilon))` with the most log-wealth on ``losses``.

    Chosen on the learn part, it is fixed before the certify part is seen, as the test needs.
    Without losses to learn from it is half the largest bet.

    >>> round(betting_fraction([0.0] * 50 + [0.1], 0.005, 0.5), 3)  # one query in 51 loses 0.1
    2.02
    """
    _check(bound, upper)
    if upper <= bound:
        return 0.0
    x = np.asarray(losses, dtype=float)
    cap = (1.0 - 1e-6) / (upper - bound)
    if x.size == 0:
        return 0.5 * cap
    gain = bound - x
    if gain.mean() <= 0:
        return 0.0
    grid = cap * np.linspace(0.0, 1.0, 401)[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.log(np.maximum(1.0 + grid[:, None] * gain[None, :], 1e-300)).sum(axis=1)
    return float(grid[int(np.argmax(growth))])
