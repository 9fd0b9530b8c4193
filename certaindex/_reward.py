r"""Reward-based certaindex for tree search: mean reward (MCTS) and max reward (REBASE).

Reward models output scores on their own scale (a logit, a probability, a 1-10 grade), so a
threshold is only meaningful after the scores are mapped to [0, 1] by a :class:`RewardScale`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from certaindex._certainty import Certainty

__all__ = ["RewardScale", "max_reward", "mean_reward"]


@dataclass(frozen=True, slots=True)
class RewardScale:
    r"""How raw reward scores map to [0, 1].

    ``sigmoid``: :math:`1 / (1 + e^{-(s - \text{low})})` for logit-valued reward models
    (``low`` shifts the midpoint, default 0). ``minmax``: :math:`(s - \text{low}) /
    (\text{high} - \text{low})`, clipped. ``identity``: scores already in [0, 1], clipped.

    >>> RewardScale("sigmoid").apply([0.0]).tolist()
    [0.5]
    >>> RewardScale("minmax", low=1, high=11).apply([6.0, 20.0]).tolist()
    [0.5, 1.0]
    """

    kind: Literal["sigmoid", "minmax", "identity"] = "identity"
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("sigmoid", "minmax", "identity"):
            raise ValueError(f"unknown reward scale {self.kind!r}: use sigmoid, minmax or identity")
        if self.kind == "minmax" and not self.high > self.low:
            raise ValueError(f"minmax scale needs high > low, got low={self.low}, high={self.high}")

    def apply(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Scores mapped to [0, 1] (NaN, a missing score, becomes 0)."""
        s = np.asarray(scores, dtype=float)
        if self.kind == "sigmoid":
            out = 0.5 * (1.0 + np.tanh(0.5 * (s - self.low)))  # overflow-free logistic
        elif self.kind == "minmax":
            out = (s - self.low) / (self.high - self.low)
        else:
            out = s
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


def mean_reward(scores: Sequence[float], scale: RewardScale | None = None) -> Certainty:
    r"""Mean normalised reward over the explored paths (the paper's MCTS certaindex).

    .. math:: c = \frac{1}{m} \sum_{i=1}^{m} r(s_i)

    >>> mean_reward([0.2, 0.8]).value
    0.5
    """
    r = (scale or RewardScale()).apply(scores)
    value = float(r.mean()) if r.size else 0.0
    return Certainty(_unit(value), "reward_mean", {"paths": int(r.size)})


def max_reward(scores: Sequence[float], scale: RewardScale | None = None) -> Certainty:
    r"""Highest normalised reward among the candidates (the paper's REBASE certaindex).

    .. math:: c = \max_i r(s_i)

    >>> max_reward([3.0, -1.0], RewardScale("sigmoid")).value > 0.95
    True
    """
    r = (scale or RewardScale()).apply(scores)
    if not r.size:
        return Certainty(0.0, "reward_max", {"paths": 0})
    best = int(r.argmax())
    return Certainty(_unit(float(r[best])), "reward_max", {"paths": int(r.size), "best": best})


def _unit(value: float) -> float:
    return 0.0 if math.isnan(value) else min(1.0, max(0.0, value))
