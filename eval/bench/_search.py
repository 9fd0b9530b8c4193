"""The highest arrival rate a policy sustains at a target attainment, by bisection.

Attainment falls as the rate rises (more load, longer queues), so the sustainable rate is
the boundary between rates that keep ``target`` attainment and rates that do not. The
search first brackets it, starting from rates already measured when there are any (the highest
that passed and the lowest above it that failed), otherwise halving from the first rate while
it fails and doubling while it passes, then bisects geometrically (rates span orders of
magnitude) until the bracket is within ``rel_tol``. Measured rates matter: a run far past the
knee costs the most (its backlog never drains), and doubling from a passing rate when a failing
one is already known would pay for one. Each probe is a full run, so the result is the highest rate *probed*
that kept the target; with a finite run the curve is noisy, and a bracket narrower than
that noise is not meaningful (the default ``rel_tol`` of 5% is about the noise of a
10-minute run at a few queries per second).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["RateSearch", "find_sustainable_rate"]


@dataclass
class RateSearch:
    """Outcome of one search: the bracket and every probe, in order."""

    target: float
    rate: float | None
    """Highest probed rate that kept ``target`` attainment (None: even the lowest failed)."""
    failing: float | None
    """Lowest probed rate above ``rate`` that missed the target (None: none failed)."""
    probes: list[tuple[float, float]] = field(default_factory=list)
    """``(rate, attainment)`` of every run, in the order they were made."""

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "rate": self.rate, "failing": self.failing, "probes": self.probes}


def find_sustainable_rate(
    attainment: Callable[[float], float],
    start: float,
    *,
    target: float = 0.9,
    rel_tol: float = 0.05,
    max_probes: int = 14,
    min_rate: float = 1e-3,
    max_rate: float = 1e4,
    known: Mapping[float, float] | None = None,
) -> RateSearch:
    """Bracket and bisect the rate at which ``attainment(rate)`` drops below ``target``.

    ``known`` maps rates already run to their attainment: the bracket starts from them (and
    they head ``probes``, not counted against ``max_probes``); ``start`` is used when none passed
    and none failed.

    >>> round(find_sustainable_rate(lambda r: 1.0 if r <= 3.0 else 0.5, 1.0, rel_tol=0.01).rate, 2)
    2.99
    >>> find_sustainable_rate(lambda r: 1 / 0, 1.0, known={2.0: 0.95, 2.05: 0.7}).probes
    [(2.0, 0.95), (2.05, 0.7)]
    """
    if start <= 0:
        raise ValueError(f"start must be > 0, got {start}")
    if not 0 < rel_tol < 1:
        raise ValueError(f"rel_tol must lie in (0, 1), got {rel_tol}")
    search = RateSearch(target, None, None, probes=sorted((known or {}).items()))
    cache: dict[float, float] = dict(known or {})
    budget = max_probes + len(cache)

    def ok(rate: float) -> bool:
        if rate not in cache:
            cache[rate] = attainment(rate)
            search.probes.append((rate, cache[rate]))
        return cache[rate] >= target

    passed = [r for r, a in cache.items() if a >= target]
    good: float | None = max(passed, default=None)
    failed = [r for r, a in cache.items() if a < target and (good is None or r > good)]
    bad: float | None = min(failed, default=None)
    if good is None and bad is None:
        if ok(start):
            good = start
        else:
            bad = start
    if bad is None:  # double from the highest passing rate until one fails
        rate = good
        while rate is not None and len(search.probes) < budget and rate * 2 <= max_rate:
            rate *= 2
            if not ok(rate):
                bad = rate
                break
            good = rate
    elif good is None:  # halve from the lowest failing rate until one passes
        rate = bad
        while len(search.probes) < budget and rate / 2 >= min_rate:
            rate /= 2
            if ok(rate):
                good = rate
                break
            bad = rate
    while good is not None and bad is not None and bad / good > 1 + rel_tol and len(search.probes) < budget:
        mid = math.sqrt(good * bad)
        if ok(mid):
            good = mid
        else:
            bad = mid
    search.rate, search.failing = good, bad
    return search
