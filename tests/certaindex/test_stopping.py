"""Bayesian stopping (Beta, Dirichlet) and ESC's window rule."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from certaindex import beta_batch, beta_stop, dirichlet_stop, esc_window
from tests.certaindex.strategies import answered_labels, labels


def _votes(counts: list[int]) -> list[str]:
    return [f"a{i}" for i, c in enumerate(counts) for _ in range(c)]


@pytest.mark.parametrize(("v1", "v2"), [(1, 0), (4, 0), (3, 1), (5, 3), (10, 8), (2, 2)])
def test_beta_matches_monte_carlo(v1: int, v2: int) -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(v1 + 1, v2 + 1, size=400_000)
    assert beta_stop(_votes([v1, v2])).value == pytest.approx((p > 0.5).mean(), abs=5e-3)


@pytest.mark.parametrize("counts", [[3, 1, 1], [5, 2, 2, 1], [2, 1], [6, 5, 5], [1, 1, 1, 1]])
def test_dirichlet_matches_monte_carlo(counts: list[int]) -> None:
    rng = np.random.default_rng(1)
    alpha = np.array([*counts, 0]) + 1.0
    draws = rng.dirichlet(alpha, size=400_000)
    expected = (draws[:, 0] > draws[:, 1:].max(axis=1)).mean()
    assert dirichlet_stop(_votes(counts)).value == pytest.approx(expected, abs=5e-3)


@given(st.integers(1, 60))
def test_dirichlet_equals_beta_with_one_cluster(n: int) -> None:
    assert dirichlet_stop(["x"] * n).value == pytest.approx(beta_stop(["x"] * n).value, abs=1e-8)


@settings(max_examples=60)
@given(labels)
@example([None, None])
@example([])
def test_in_unit_interval(lab: list[int | None]) -> None:
    for measure in (beta_stop, dirichlet_stop, esc_window):
        assert 0.0 <= measure(lab).value <= 1.0


@settings(max_examples=60)
@given(answered_labels, st.randoms())
def test_bayes_invariant_to_order(lab: list[int], rnd: random.Random) -> None:
    shuffled = lab[:]
    rnd.shuffle(shuffled)
    assert beta_stop(shuffled).value == pytest.approx(beta_stop(lab).value)
    assert dirichlet_stop(shuffled).value == pytest.approx(dirichlet_stop(lab).value, abs=1e-9)


@settings(max_examples=60)
@given(answered_labels)
def test_another_vote_for_the_leader_raises_certainty(lab: list[int]) -> None:
    counts = {x: lab.count(x) for x in lab}
    leader = max(counts, key=counts.__getitem__)
    more = [*lab, leader]
    assert beta_stop(more).value > beta_stop(lab).value
    assert dirichlet_stop(more).value > dirichlet_stop(lab).value - 1e-12


def test_ties_and_priors() -> None:
    assert beta_stop(["a", "b"]).value == pytest.approx(0.5)
    assert beta_stop([None, None]).value == 0.0
    # A weaker prior trusts the votes more.
    assert beta_stop(["a"] * 3, prior=0.5).value > beta_stop(["a"] * 3, prior=2.0).value
    with pytest.raises(ValueError, match="prior"):
        beta_stop(["a"], prior=0)


def test_esc_window_rule() -> None:
    assert esc_window(["a"] * 4, window=5).value == 0.0  # not a full window yet
    assert esc_window(["b", "a", "a", "a", "a", "a"], window=5).value == 1.0
    assert esc_window(["a", "a", "a", "a", None], window=5).value == pytest.approx(0.8)
    assert esc_window([None] * 5, window=5).value == 0.0
    with pytest.raises(ValueError):
        esc_window(["a"], window=0)


def _matrix(rows: list[list[int | None]], n: int) -> np.ndarray:
    out = np.full((len(rows), n), -1)
    for q, row in enumerate(rows):
        ids: dict[int, int] = {}
        for i, x in enumerate(row):
            if x is not None:
                out[q, i] = ids.setdefault(x, len(ids))
    return out


@given(st.integers(1, 10).flatmap(lambda n: st.lists(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n,
                                                             max_size=n), min_size=1, max_size=6)))  # fmt: skip
def test_beta_batch_equals_single(rows: list[list[int | None]]) -> None:
    got = beta_batch(_matrix(rows, len(rows[0])))
    np.testing.assert_allclose(got, [beta_stop(r).value for r in rows], atol=1e-12)
