r"""Combined stopping rules: several certaindex measures with a threshold each.

A combination is itself a :class:`Certainty` whose value reaches 1 exactly when the rule
fires, so the runtime treats it like any other measure with threshold 1:

.. math:: \text{all-of: } c = \min\left(1, \min_i \frac{c_i}{t_i}\right), \qquad
          \text{any-of: } c = \min\left(1, \max_i \frac{c_i}{t_i}\right)

(a threshold of 0 is always met). The paper combines entropy and reward this way for tree
search: stop when the answers agree *and* the reward model likes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from certaindex._certainty import Certainty

__all__ = ["all_of", "any_of"]


def _ratios(parts: Sequence[tuple[Certainty, float]]) -> list[float]:
    if not parts:
        raise ValueError("a combined rule needs at least one (certainty, threshold) pair")
    out = []
    for certainty, threshold in parts:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"thresholds lie in [0, 1], got {threshold} for {certainty.measure}")
        out.append(1.0 if threshold == 0 else min(1.0, certainty.value / threshold))
    return out


def _name(kind: str, parts: Sequence[tuple[Certainty, float]]) -> str:
    return f"{kind}(" + ",".join(f"{c.measure}>={t:g}" for c, t in parts) + ")"


def all_of(parts: Sequence[tuple[Certainty, float]]) -> Certainty:
    """Fires (value 1) when every ``certainty.value >= threshold``.

    >>> from certaindex import Certainty
    >>> all_of([(Certainty(0.8, "entropy"), 0.7), (Certainty(0.4, "reward_mean"), 0.8)]).value
    0.5
    """
    ratios = _ratios(parts)
    return Certainty(min(ratios), _name("all", parts), {"parts": {c.measure: c.value for c, _ in parts}})


def any_of(parts: Sequence[tuple[Certainty, float]]) -> Certainty:
    """Fires (value 1) when some ``certainty.value >= threshold``.

    >>> from certaindex import Certainty
    >>> any_of([(Certainty(0.8, "entropy"), 0.7), (Certainty(0.4, "reward_mean"), 0.8)]).value
    1.0
    """
    ratios = _ratios(parts)
    return Certainty(max(ratios), _name("any", parts), {"parts": {c.measure: c.value for c, _ in parts}})
