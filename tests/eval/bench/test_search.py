from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.bench import find_sustainable_rate


def _step(threshold: float):
    calls: list[float] = []

    def attainment(rate: float) -> float:
        calls.append(rate)
        return 1.0 if rate <= threshold else 0.4

    return attainment, calls


@settings(max_examples=200, deadline=None)
@given(threshold=st.floats(0.01, 500.0), start=st.floats(0.05, 50.0), tol=st.sampled_from([0.02, 0.05, 0.2]))
def test_bisection_brackets_the_threshold_within_tolerance(threshold: float, start: float, tol: float) -> None:
    attainment, calls = _step(threshold)
    search = find_sustainable_rate(attainment, start, rel_tol=tol, max_probes=40)
    assert search.rate is not None and search.failing is not None
    assert search.rate <= threshold < search.failing
    assert search.failing / search.rate <= 1 + tol
    # Every probe is recorded once, with what the oracle said.
    assert [r for r, _ in search.probes] == calls
    assert len(set(calls)) == len(calls)


def test_a_rate_that_never_fails_is_reported_as_unbounded() -> None:
    search = find_sustainable_rate(lambda r: 1.0, 1.0, max_probes=5)
    assert search.failing is None
    assert search.rate == 16.0  # 1, 2, 4, 8, 16: the probe budget ran out while passing


def test_nothing_sustainable() -> None:
    search = find_sustainable_rate(lambda r: 0.0, 1.0, min_rate=0.1)
    assert search.rate is None
    assert search.failing == pytest.approx(0.125)


def test_the_target_is_inclusive() -> None:
    search = find_sustainable_rate(lambda r: 0.9 if r <= 2 else 0.89, 1.0, target=0.9, rel_tol=0.01)
    assert search.rate is not None and 1.98 <= search.rate <= 2.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="start"):
        find_sustainable_rate(lambda r: 1.0, 0.0)
    with pytest.raises(ValueError, match="rel_tol"):
        find_sustainable_rate(lambda r: 1.0, 1.0, rel_tol=0.0)


def test_a_bracket_already_measured_is_bisected_without_doubling_past_it() -> None:
    attainment, calls = _step(10.0)
    search = find_sustainable_rate(attainment, 1.0, rel_tol=0.05, known={9.0: 0.95, 12.0: 0.5, 4.0: 1.0})
    # Never above the failing rate already known: only bisection inside (9, 12].
    assert calls and all(9.0 < r < 12.0 for r in calls)
    assert search.rate is not None and search.failing is not None
    assert search.rate <= 10.0 < search.failing and search.failing / search.rate <= 1.05
    assert search.probes[:3] == [(4.0, 1.0), (9.0, 0.95), (12.0, 0.5)]


def test_a_known_bracket_within_tolerance_runs_nothing() -> None:
    search = find_sustainable_rate(lambda r: pytest.fail(f"ran {r}"), 1.0, known={9.92: 0.907, 10.4: 0.81})
    assert (search.rate, search.failing) == (9.92, 10.4)


@pytest.mark.parametrize(("known", "first"), [({3.0: 1.0}, 6.0), ({3.0: 0.2}, 1.5)])
def test_one_sided_knowledge_doubles_or_halves_from_it(known: dict[float, float], first: float) -> None:
    attainment, calls = _step(2.0)
    find_sustainable_rate(attainment, 100.0, known=known, max_probes=3)
    assert calls[0] == first


def test_known_probes_do_not_use_up_the_probe_budget() -> None:
    attainment, calls = _step(5.0)
    find_sustainable_rate(attainment, 1.0, known={1.0: 1.0, 1.5: 1.0}, max_probes=2)
    assert calls == [3.0, 6.0]  # two runs of its own, after the two it was given
