from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.bench import GammaArrivals, PoissonArrivals, ReplayArrivals, make_arrivals, read_timestamps


def _cv(times: np.ndarray) -> float:
    gaps = np.diff(times)
    return float(gaps.std() / gaps.mean())


@pytest.mark.parametrize("rate", [0.5, 2.0, 10.0])
def test_poisson_has_the_requested_rate_and_cv_one(rate: float) -> None:
    duration = 20_000 / rate
    times = PoissonArrivals().times(rate, duration, seed=1)
    n = len(times)
    # Poisson count: sd = sqrt(rate * duration) ~ 141; 5 sd.
    assert abs(n - rate * duration) < 5 * np.sqrt(rate * duration)
    assert _cv(times) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("cv", [1.5, 2.0, 4.0])
def test_gamma_has_the_requested_rate_and_cv(cv: float) -> None:
    rate, duration = 2.0, 50_000.0
    times = GammaArrivals(cv=cv).times(rate, duration, seed=3)
    assert len(times) / duration == pytest.approx(rate, rel=0.1)
    assert _cv(times) == pytest.approx(cv, rel=0.15)


def test_gamma_with_cv_above_one_is_burstier_than_poisson() -> None:
    # Bursty: more queries in the busiest minute for the same mean rate.
    rate, duration = 1.0, 20_000.0

    def busiest(times: np.ndarray) -> int:
        return int(np.bincount((times // 60).astype(int)).max())

    assert busiest(GammaArrivals(cv=3.0).times(rate, duration, 0)) > busiest(PoissonArrivals().times(rate, duration, 0))


def test_same_seed_same_arrivals_other_seed_other_arrivals() -> None:
    a = GammaArrivals(cv=2.0).times(1.0, 600.0, seed=7)
    b = GammaArrivals(cv=2.0).times(1.0, 600.0, seed=7)
    c = GammaArrivals(cv=2.0).times(1.0, 600.0, seed=8)
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(0.01, 50.0),
    duration=st.floats(1.0, 500.0),
    seed=st.integers(0, 2**16),
    cv=st.floats(0.2, 5.0),
)
def test_arrivals_are_sorted_and_inside_the_run(rate: float, duration: float, seed: int, cv: float) -> None:
    for process in (PoissonArrivals(), GammaArrivals(cv=cv)):
        times = process.times(rate, duration, seed)
        assert np.all(np.diff(times) >= 0)
        assert times.size == 0 or (times[0] >= 0 and times[-1] < duration)


def test_bad_rates_and_cvs_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        PoissonArrivals().times(0.0, 10.0, 0)
    with pytest.raises(ValueError, match="cv"):
        GammaArrivals(cv=-1.0)
    with pytest.raises(ValueError, match="arrival process"):
        make_arrivals("weibull")


def test_replay_keeps_the_recorded_pattern_and_rescales_it(tmp_path) -> None:
    path = tmp_path / "ts.txt"
    path.write_text("time,user\n100.0,a\n101.0,b\n\n# a burst\n101.5,c\n104.0,d\n")
    np.testing.assert_allclose(read_timestamps(path), [0.0, 1.0, 1.5, 4.0])
    process = make_arrivals(str(path))
    assert isinstance(process, ReplayArrivals)
    # As recorded: 4 arrivals per period of 4 s * 4/3; repeated to fill the duration.
    native = process.times(None, 100.0, seed=0)
    period = 4.0 * 4 / 3
    np.testing.assert_allclose(native[:8], [0, 1, 1.5, 4, period, period + 1, period + 1.5, period + 4])
    # Rescaled to twice the native rate: the same shape at half the spacing.
    fast = process.times(2 * 4 / period, 100.0, seed=0)
    np.testing.assert_allclose(fast[:4], [0, 0.5, 0.75, 2.0])
    assert len(fast) / 100.0 == pytest.approx(2 * 4 / period, rel=0.05)


def test_replay_reads_json_lists_and_refuses_junk(tmp_path) -> None:
    good = tmp_path / "ts.json"
    good.write_text(json.dumps([3.0, 1.0, 2.0]))
    np.testing.assert_allclose(read_timestamps(good), [0.0, 1.0, 2.0])
    bad = tmp_path / "bad.txt"
    bad.write_text("1.0\nsoon\n")
    with pytest.raises(ValueError, match="not a timestamp"):
        read_timestamps(bad)
    short = tmp_path / "short.txt"
    short.write_text("1.0\n")
    with pytest.raises(ValueError, match="at least two"):
        read_timestamps(short)
