"""Combined rules reach 1 exactly when they fire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certaindex import Certainty, all_of, any_of

unit = st.floats(0, 1)


@given(st.lists(st.tuples(unit, unit), min_size=1, max_size=4))
def test_fires_exactly_when_the_rule_holds(pairs: list[tuple[float, float]]) -> None:
    parts = [(Certainty(v, f"m{i}"), t) for i, (v, t) in enumerate(pairs)]
    assert (all_of(parts).value >= 1.0) == all(v >= t for v, t in pairs)
    assert (any_of(parts).value >= 1.0) == any(v >= t for v, t in pairs)
    assert 0.0 <= all_of(parts).value <= any_of(parts).value <= 1.0


def test_name_and_errors() -> None:
    c = all_of([(Certainty(0.9, "entropy"), 0.7), (Certainty(0.9, "reward_mean"), 0.5)])
    assert c.measure == "all(entropy>=0.7,reward_mean>=0.5)"
    assert c.value == 1.0
    with pytest.raises(ValueError, match="at least one"):
        all_of([])
    with pytest.raises(ValueError, match="thresholds"):
        any_of([(Certainty(0.5, "entropy"), 1.5)])
