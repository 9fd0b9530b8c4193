"""Arrival processes: when queries reach the server.

Three processes, each giving arrival times in ``[0, duration)`` for a target mean rate:

- **Poisson**: exponential inter-arrival gaps, coefficient of variation (CV) 1.
- **Gamma**: Gamma-distributed gaps with shape :math:`k = 1/\\mathrm{CV}^2` and scale
  :math:`1/(\\lambda k)`, so the mean gap is :math:`1/\\lambda` and the CV is the one asked
  for; CV > 1 gives bursts (many gaps shorter than the mean, a few much longer).
- **Replay**: timestamps from a file, shifted to start at 0 and stretched so that their mean
  rate becomes the target rate (``rate=None`` keeps them as recorded); a file shorter than
  ``duration`` is repeated end to end.

Every draw comes from a ``numpy`` generator seeded from ``(seed, rate)``: the same seed gives
the same arrivals for every policy, so policies are compared on identical traffic.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["Arrivals", "GammaArrivals", "PoissonArrivals", "ReplayArrivals", "make_arrivals", "read_timestamps"]


def _rng(seed: int, rate: float | None) -> np.random.Generator:
    # Rate in micro-queries/s so that nearby rates still get different, stable streams.
    return np.random.default_rng([seed, 0 if rate is None else round(rate * 1e6)])


class Arrivals(ABC):
    """An arrival process."""

    name: str

    @abstractmethod
    def times(self, rate: float | None, duration: float, seed: int) -> NDArray[np.float64]:
        """Sorted arrival times in ``[0, duration)`` with mean rate ``rate`` queries/s."""

    def describe(self) -> str:
        return self.name


def _renewal(gaps: Callable[[int], NDArray[np.float64]], rate: float, duration: float) -> NDArray[np.float64]:
    """Cumulate gaps drawn in chunks until ``duration`` is passed."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if duration <= 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    chunk = max(16, int(rate * duration * 1.2) + 16)
    out: list[NDArray[np.float64]] = []
    last = 0.0
    while last < duration:
        times = last + np.cumsum(gaps(chunk))
        out.append(times)
        last = float(times[-1])
    all_times = np.concatenate(out)
    return all_times[all_times < duration]


@dataclass(frozen=True)
class PoissonArrivals(Arrivals):
    """Poisson process: exponential gaps with mean ``1 / rate``."""

    name = "poisson"

    def times(self, rate: float | None, duration: float, seed: int) -> NDArray[np.float64]:
        if rate is None:
            raise ValueError("poisson arrivals need a rate")
        rng = _rng(seed, rate)
        return _renewal(lambda n: rng.exponential(1.0 / rate, n), rate, duration)


@dataclass(frozen=True)
class GammaArrivals(Arrivals):
    r"""Gamma renewal process: gaps :math:`\sim \Gamma(k = 1/\mathrm{CV}^2,\ \theta = 1/(\lambda k))`.

    >>> t = GammaArrivals(cv=3.0).times(2.0, 20_000.0, seed=0)
    >>> abs(len(t) / 20_000.0 - 2.0) < 0.15
    True
    >>> GammaArrivals(cv=0.0)
    Traceback (most recent call last):
    ...
    ValueError: cv must be > 0, got 0.0
    """

    cv: float = 2.0
    name = "gamma"

    def __post_init__(self) -> None:
        if not self.cv > 0:
            raise ValueError(f"cv must be > 0, got {self.cv}")

    def times(self, rate: float | None, duration: float, seed: int) -> NDArray[np.float64]:
        if rate is None:
            raise ValueError("gamma arrivals need a rate")
        shape = 1.0 / self.cv**2
        scale = 1.0 / (rate * shape)
        rng = _rng(seed, rate)
        return _renewal(lambda n: rng.gamma(shape, scale, n), rate, duration)

    def describe(self) -> str:
        return f"gamma(cv={self.cv:g})"


def read_timestamps(path: str | Path) -> NDArray[np.float64]:
    """Arrival timestamps (seconds) from a file: a JSON list, or one number a line.

    Lines may hold extra comma- or space-separated columns (the first one is the time);
    blank lines and lines starting with ``#`` are skipped.
    """
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        values = [float(v) for v in json.loads(stripped)]
    else:
        values = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            first = line.replace(",", " ").split()[0]
            try:
                values.append(float(first))
            except ValueError:
                if not values and number == 1:  # a header line
                    continue
                raise ValueError(f"{path}:{number}: not a timestamp: {first!r}") from None
    if len(values) < 2:
        raise ValueError(f"{path}: needs at least two timestamps, found {len(values)}")
    times = np.sort(np.asarray(values, dtype=np.float64))
    return times - times[0]


@dataclass(frozen=True)
class ReplayArrivals(Arrivals):
    """Timestamps from a file, rescaled to the target rate and repeated to fill ``duration``."""

    path: str
    name = "replay"

    def times(self, rate: float | None, duration: float, seed: int) -> NDArray[np.float64]:
        recorded = read_timestamps(self.path)
        span = float(recorded[-1])
        if span <= 0:
            raise ValueError(f"{self.path}: all timestamps are equal")
        # The mean gap of the recording; one more gap closes the period when it repeats.
        period = span * len(recorded) / (len(recorded) - 1)
        native = len(recorded) / period
        stretch = 1.0 if rate is None else native / rate
        base, period = recorded * stretch, period * stretch
        copies = int(np.ceil(duration / period))
        tiled = np.concatenate([base + k * period for k in range(max(copies, 1))])
        return tiled[tiled < duration]

    def describe(self) -> str:
        return f"replay({Path(self.path).name})"


def make_arrivals(kind: str, *, cv: float = 2.0) -> Arrivals:
    """An arrival process by name: ``poisson``, ``gamma`` (with ``cv``), or a timestamp file path.

    >>> make_arrivals("gamma", cv=4).describe()
    'gamma(cv=4)'
    """
    if kind == "poisson":
        return PoissonArrivals()
    if kind == "gamma":
        return GammaArrivals(cv=cv)
    if Path(kind).is_file():
        return ReplayArrivals(kind)
    raise ValueError(f"Unknown arrival process {kind!r} (choose poisson, gamma, or a timestamp file)")
