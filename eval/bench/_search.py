"""The highest arrival rate a policy sustains at a target attainment, by bisection.

Attainment falls as the rate rises (more load, longer queues), so the sustainable rate is
the boundary between rates that keep ``target`` attainment and rates that do not. The
search first brackets it, halving from the first rate while it fails and doubling while it
passes, then bisects geometrically (rates span orders of magnitude) until the bracket is
within ``rel_tol``. Each probe is a full run, so the result is the highest rate *probed*
that kept the target; with a finite run the curve is noisy, and a bracket narrower than
that noise is not meaningful (the default ``rel_tol`` of 5% is about the noise of a
10-minute run at a few queries per second).
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
) -> RateSearch:
    """Bracket and bisect the rate at which ``attainment(rate)`` drops below ``target``.

    >>> round(find_sustainable_rate(lambda r: 1.0 if r <= 3.0 else 0.5, 1.0, rel_tol=0.01).rate, 2)
    2.99
    """
    if start <= 0:
        raise ValueError(f"start must be > 0, got {start}")
    if not 0 < rel_tol < 1:
        raise ValueError(f"rel_tol must lie in (0, 1), got {rel_tol}")
    search = RateSearch(target, None, None)
    cache: dict[float, float] = {}

    def ok(rate: float) -> bool:
        if rate not in cache:
            cache[rate] = attainment(rate)
            search.probes.append((rate, cache[rate]))
        return cache[rate] >= target

    good: float | None = None
    bad: float | None = None
    rate = start
    if ok(rate):
        good = rate
        while len(search.probes) < max_probes and rate * 2 <= max_rate:
            rate *= 2
            if not ok(rate):
                bad = rate
                break
            good = rate
    else:
        bad = rate
        while len(search.probes) < max_probes and rate / 2 >= min_rate:
            rate /= 2
            if ok(rate):
                good = rate
                break
            bad = rate
    while good is not None and bad is not None and bad / good > 1 + rel_tol and len(search.probes) < max_probes:
        mid = math.sqrt(good * bad)
        if ok(mid):
            good = mid
        else:
            bad = mid
    search.rate, search.failing = good, bad
    return search
