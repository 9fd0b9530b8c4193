"""The betting test: valid at the boundary, and its floor follows the losses' ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from certaindex import betting_fraction, betting_pvalue


@pytest.mark.parametrize(("p_up", "p_down"), [(0.15, 0.078), (0.12, 0.0), (0.3, 0.38)])
def test_a_mean_just_above_the_bound_passes_in_at_most_delta_of_the_draws(p_up: float, p_down: float) -> None:
    """Per-query losses 0.1 (probability p_up), -0.05 (p_down) or 0: mean just above the bound."""
    bound, upper, delta, n, reps = 0.01, 0.1, 0.05, 400, 3000
    mean = 0.1 * p_up - 0.05 * p_down
    assert mean > bound
    rng = np.random.default_rng(11)

    def draw(size: int) -> np.ndarray:
        return rng.choice([0.1, -0.05, 0.0], size=size, p=[p_up, p_down, 1 - p_up - p_down])

    certified = 0
    point = 0
    for _ in range(reps):
        learn = draw(n // 2)
        lam = betting_fraction(learn, bound, upper)
        losses = draw(n)
        certified += betting_pvalue(losses, bound, upper, [lam, lam / 2]) <= delta
        point += losses.mean() <= bound
    assert certified / reps <= delta + 3 * math.sqrt(delta * (1 - delta) / reps)
    assert point / reps > 2 * delta  # the observed mean alone would claim it far more often


def test_the_floor_follows_the_ceiling() -> None:
    bound, delta = 0.005, 0.05

    def needed(upper: float) -> int:
        lam = (1 - 1e-9) / (upper - bound)
        n = 1
        while betting_pvalue(np.zeros(n), bound, upper, [lam]) > delta:
            n += 1
        return n

    small, trivial = needed(0.1), needed(1.0)
    assert small == pytest.approx(0.1 * math.log(1 / delta) / bound, rel=0.1)  # ~ h log(1/delta) / eps
    assert trivial == pytest.approx(math.log(1 / delta) / bound, rel=0.1)
    # Helps (negative losses) count for the rule; a ceiling below the bound needs no data.
    assert betting_pvalue([-0.05] * 40, bound, 0.1, [9.0]) < betting_pvalue([0.0] * 40, bound, 0.1, [9.0])
    assert betting_pvalue([0.003], bound, 0.004, [1.0]) == 0.0


def test_bets_and_errors() -> None:
    assert betting_fraction([0.2] * 10, 0.005, 0.5) == 0.0  # losing on the learn part: no bet, p = 1
    assert betting_pvalue([0.0] * 10, 0.005, 0.5, [0.0]) == 1.0
    assert 0 < betting_fraction([], 0.005, 0.5) < 1 / 0.495
    with pytest.raises(ValueError, match="exceeds the ceiling"):
        betting_pvalue([0.2], 0.005, 0.1, [1.0])
    with pytest.raises(ValueError, match="outside"):
        betting_pvalue([0.0], 0.005, 0.1, [20.0])
