"""DeepConf-style token-logprob confidence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from certaindex import group_confidence, token_confidence, trace_confidence, warmup_threshold, weighted_consensus


def test_token_confidence_formula() -> None:
    top = [[-0.1, -2.0, -3.0], [-0.5, -0.9, -1.2]]
    np.testing.assert_allclose(token_confidence(top), [5.1 / 3, 2.6 / 3])
    # Ragged rows and -inf entries (a candidate the engine could not score).
    np.testing.assert_allclose(token_confidence([[-1.0], [-1.0, float("-inf"), -3.0]]), [1.0, 2.0])


def test_peaked_distribution_is_more_confident() -> None:
    peaked = token_confidence([[-0.001, -8.0, -9.0]])[0]
    flat = token_confidence([[-1.1, -1.1, -1.1]])[0]
    assert peaked > flat


@given(st.lists(st.floats(0, 20), min_size=1, max_size=50), st.integers(1, 10))
def test_group_confidence_matches_naive(c: list[float], w: int) -> None:
    got = group_confidence(c, w)
    k = min(w, len(c))
    naive = [np.mean(c[i : i + k]) for i in range(len(c) - k + 1)]
    np.testing.assert_allclose(got, naive, atol=1e-9)


def test_summaries() -> None:
    c = np.array([5.0] * 10 + [1.0] * 2 + [5.0] * 10)
    assert trace_confidence(c, "mean") == pytest.approx(c.mean())
    assert trace_confidence(c, "lowest", window=2) == pytest.approx(1.0)
    assert trace_confidence(c, "tail", tail=5) == pytest.approx(5.0)
    bottom = trace_confidence(c, "bottom10", window=2)
    assert 1.0 <= bottom < 5.0
    assert trace_confidence([], "lowest") == 0.0
    with pytest.raises(ValueError, match="summary"):
        trace_confidence(c, "median")  # type: ignore[arg-type]


def test_warmup_threshold_keeps_the_requested_share() -> None:
    conf = np.random.default_rng(0).normal(10, 2, size=1000)
    s = warmup_threshold(conf, keep_percent=10)
    assert (conf >= s).mean() == pytest.approx(0.10, abs=0.01)
    with pytest.raises(ValueError):
        warmup_threshold([], 10)


@given(
    st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.floats(0, 10)), min_size=1, max_size=12),
)
def test_weighted_consensus_in_unit_interval(pairs: list[tuple[int | None, float]]) -> None:
    lab = [p[0] for p in pairs]
    w = [p[1] for p in pairs]
    assert 0.0 <= weighted_consensus(lab, w).value <= 1.0


def test_weighted_consensus_weights_matter() -> None:
    assert weighted_consensus(["a", "b", "b"], [5.0, 1.0, 1.0]).details["leader"] == "a"
    assert weighted_consensus(["a", "a"], [1.0, 1.0]).value == 1.0
    assert weighted_consensus([None, None], [1.0, 1.0]).value == 0.0
    with pytest.raises(ValueError, match="one weight per sample"):
        weighted_consensus(["a"], [1.0, 2.0])
