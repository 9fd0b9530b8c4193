"""Which simulated content fits which program: one choice for every user of the simulated engine.

A program that draws independent samples (``sc``, ``bon``) needs whole samples; one that decodes
one chain of thought in chunks and probes it (``cot``) needs a chain it can continue; tree search
(``mcts``, ``rebase``) needs reasoning steps that continue a partial path. Giving a program the
wrong kind produces junk (a chain source's chunks read as samples, or samples glued together as
a chain), so an algorithm without a known kind is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from dynasor.engine.sim._reasoning import ReplayChainSource, ReplayStepSource, SyntheticChainSource, SyntheticStepSource
from dynasor.engine.sim._sources import ReplaySource, Source, SyntheticSource
from dynasor.engine.traces import TraceRecord

__all__ = ["CONTENT_BY_ALGORITHM", "ContentKind", "content_kind", "source_for"]

ContentKind = Literal["samples", "chain", "steps"]

CONTENT_BY_ALGORITHM: dict[str, ContentKind] = {
    "sc": "samples",
    "bon": "samples",
    "cot": "chain",
    "mcts": "steps",
    "rebase": "steps",
}
"""The simulated content each bundled algorithm reads."""

_SYNTHETIC: dict[ContentKind, Callable[..., Source]] = {
    "samples": SyntheticSource,
    "chain": SyntheticChainSource,
    "steps": SyntheticStepSource,
}
_REPLAY: dict[ContentKind, Callable[..., Source]] = {
    "samples": ReplaySource,
    "chain": ReplayChainSource,
    "steps": ReplayStepSource,
}


def content_kind(algorithm: str) -> ContentKind:
    """The content ``algorithm`` needs; :class:`ValueError` naming the known ones for any other.

    >>> content_kind("cot")
    'chain'
    """
    kind = CONTENT_BY_ALGORITHM.get(algorithm)
    if kind is None:
        known = "; ".join(
            f"{k} for {', '.join(a for a, c in CONTENT_BY_ALGORITHM.items() if c == k)}" for k in _SYNTHETIC
        )
        raise ValueError(
            f"the simulated engine has no content model for algorithm {algorithm!r} (it simulates {known}): "
            "run it against an engine URL"
        )
    return kind


def source_for(
    algorithm: str,
    *,
    traces: str | Path | Sequence[TraceRecord] | None = None,
    seed: int = 0,
    **options: Any,
) -> Source:
    """A source of the content ``algorithm`` reads: replayed from ``traces`` when given, else synthetic.

    ``options`` go to the synthetic source (difficulty distribution, lengths).
    """
    kind = content_kind(algorithm)
    if traces is not None:
        return _REPLAY[kind](traces, seed=seed)
    return _SYNTHETIC[kind](seed=seed, **options)
