"""Agreement measures: exhaustive on small inputs, properties with Hypothesis, batch = single."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certaindex import (
    cluster_counts,
    entropy_batch,
    majority_batch,
    majority_fraction,
    majority_vote,
    normalized_entropy,
)
from tests.certaindex.strategies import answered_labels, labels


def entropy_oracle(lab: list[int | None]) -> float:
    """Textbook formula, written independently: unanswered samples are singleton clusters."""
    n = len(lab)
    if n <= 1:
        return 0.0
    keys = [("none", i) if x is None else x for i, x in enumerate(lab)]
    h = -sum(c / n * math.log(c / n) for c in Counter(keys).values())
    return (math.log(n) - h) / math.log(n)


@pytest.mark.parametrize("n", range(0, 6))
def test_entropy_exhaustive(n: int) -> None:
    for lab in itertools.product([None, 0, 1, 2], repeat=n):
        assert normalized_entropy(list(lab)).value == pytest.approx(entropy_oracle(list(lab)), abs=1e-12)


@given(labels)
@example([None, None])
@example([0])
def test_measures_in_unit_interval(lab: list[int | None]) -> None:
    for measure in (normalized_entropy, majority_fraction):
        c = measure(lab)
        assert 0.0 <= c.value <= 1.0


@given(labels, st.randoms())
def test_invariant_to_sample_order(lab: list[int | None], rnd: random.Random) -> None:
    shuffled = lab[:]
    rnd.shuffle(shuffled)
    assert normalized_entropy(shuffled).value == pytest.approx(normalized_entropy(lab).value)
    assert majority_fraction(shuffled).value == pytest.approx(majority_fraction(lab).value)


@given(labels, st.permutations(range(5)))
def test_invariant_to_relabelling(lab: list[int | None], perm: list[int]) -> None:
    renamed = [None if x is None else f"answer-{perm[x]}" for x in lab]
    assert normalized_entropy(renamed).value == pytest.approx(normalized_entropy(lab).value)
    assert majority_fraction(renamed).value == pytest.approx(majority_fraction(lab).value)


@given(st.integers(2, 64))
def test_unanimity_gives_one_and_all_distinct_gives_zero(n: int) -> None:
    assert normalized_entropy(["x"] * n).value == pytest.approx(1.0)
    assert majority_fraction(["x"] * n).value == 1.0
    assert normalized_entropy(list(range(n))).value == pytest.approx(0.0, abs=1e-12)
    assert normalized_entropy([None] * n).value == pytest.approx(0.0, abs=1e-12)


@given(answered_labels)
def test_moving_a_sample_to_the_leader_raises_certainty(lab: list[int]) -> None:
    leader = majority_vote(lab)
    others = [i for i, x in enumerate(lab) if x != leader]
    if not others:
        return
    moved = lab[:]
    moved[others[0]] = leader
    assert normalized_entropy(moved).value > normalized_entropy(lab).value - 1e-12
    assert majority_fraction(moved).value > majority_fraction(lab).value


def test_unanswered_lowers_entropy_certainty_and_never_leads() -> None:
    assert normalized_entropy(["a", "a", None]).value < normalized_entropy(["a", "a", "a"]).value
    assert majority_fraction([None, None, "a"]).value == pytest.approx(1 / 3)
    assert majority_vote([None, None, "a"]) == "a"
    assert majority_vote([None]) is None
    assert cluster_counts(["a", None, "b", "a"]) == [2, 1]


def test_majority_vote_ties_go_to_first_seen() -> None:
    assert majority_vote(["b", "a", "a", "b"]) == "b"
    assert normalized_entropy(["b", "a", "a", "b"]).details["leader"] == "b"


def _to_matrix(rows: list[list[int | None]], n: int) -> np.ndarray:
    """Integer label matrix: cluster ids by first appearance, -1 for unanswered."""
    out = np.full((len(rows), n), -1)
    for q, row in enumerate(rows):
        ids: dict[int, int] = {}
        for i, x in enumerate(row):
            if x is not None:
                out[q, i] = ids.setdefault(x, len(ids))
    return out


def _rows(n: int) -> st.SearchStrategy[list[list[int | None]]]:
    row = st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n, max_size=n)
    return st.lists(row, min_size=1, max_size=8)


@given(st.integers(1, 12).flatmap(_rows))
def test_batch_equals_single(rows: list[list[int | None]]) -> None:
    n = len(rows[0])
    m = _to_matrix(rows, n)
    np.testing.assert_allclose(entropy_batch(m), [normalized_entropy(r).value for r in rows], atol=1e-12)
    np.testing.assert_allclose(majority_batch(m), [majority_fraction(r).value for r in rows], atol=1e-12)


def test_batch_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="2-D"):
        entropy_batch([0, 1, 2])
    with pytest.raises(ValueError, match="labels must lie"):
        entropy_batch([[0, 5]])
