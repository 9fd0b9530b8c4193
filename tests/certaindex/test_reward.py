"""Reward-based certaindex and reward scales."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from certaindex import RewardScale, max_reward, mean_reward

scores = st.lists(st.floats(-50, 50, allow_nan=False), min_size=0, max_size=16)
SCALES = [RewardScale("sigmoid"), RewardScale("minmax", low=-5, high=5), RewardScale("identity")]


@given(scores, st.sampled_from(SCALES))
def test_in_unit_interval(s: list[float], scale: RewardScale) -> None:
    assert 0.0 <= mean_reward(s, scale).value <= 1.0
    assert 0.0 <= max_reward(s, scale).value <= 1.0


@given(scores, st.sampled_from(SCALES), st.randoms())
def test_order_free(s: list[float], scale: RewardScale, rnd: random.Random) -> None:
    t = s[:]
    rnd.shuffle(t)
    assert mean_reward(t, scale).value == pytest.approx(mean_reward(s, scale).value)
    assert max_reward(t, scale).value == max_reward(s, scale).value


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=8), st.sampled_from(SCALES))
def test_better_reward_raises_certainty(s: list[float], scale: RewardScale) -> None:
    better = [x + 1.0 for x in s]
    assert mean_reward(better, scale).value >= mean_reward(s, scale).value
    assert max_reward(better, scale).value >= max_reward(s, scale).value


def test_scales() -> None:
    np.testing.assert_allclose(RewardScale("sigmoid").apply([0.0, 1000.0, -1000.0]), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(RewardScale("sigmoid", low=2.0).apply([2.0]), [0.5])
    np.testing.assert_allclose(RewardScale("minmax", low=1, high=11).apply([1, 6, 11, 20]), [0, 0.5, 1, 1])
    assert RewardScale().apply([float("nan")]).tolist() == [0.0]
    with pytest.raises(ValueError, match="high > low"):
        RewardScale("minmax", low=1, high=1)
    with pytest.raises(ValueError, match="unknown reward scale"):
        RewardScale("softmax")  # type: ignore[arg-type]


def test_details_and_empty() -> None:
    assert max_reward([0.2, 0.9, 0.5]).details["best"] == 1
    assert mean_reward([]).value == 0.0
    assert max_reward([]).value == 0.0
