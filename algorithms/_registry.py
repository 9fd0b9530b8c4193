"""Algorithms by name: how the proxy, the eval CLI and configs build programs."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from algorithms.protocol import Program

__all__ = ["ALGORITHMS", "make_program", "register_algorithm"]

ALGORITHMS: dict[str, Callable[..., Program]] = {}
"""Registered program factories by algorithm name."""

P = TypeVar("P", bound=type[Program])


def register_algorithm(name: str) -> Callable[[P], P]:
    """Class decorator: make ``name`` buildable by :func:`make_program`."""

    def decorate(cls: P) -> P:
        if name in ALGORITHMS:
            raise ValueError(f"algorithm {name!r} is registered twice")
        ALGORITHMS[name] = cls
        return cls

    return decorate


def make_program(name: str, params: Mapping[str, Any] | None = None) -> Program:
    """Build the program registered as ``name`` with ``params`` as its knobs.

    Raises ValueError for an unknown algorithm or unknown knobs, naming the valid ones.
    """
    try:
        factory = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"Unknown algorithm: {name!r} (choose from {', '.join(sorted(ALGORITHMS))})") from None
    params = dict(params or {})
    accepted = _knobs(factory)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) for {name}: {', '.join(unknown)} (valid: {', '.join(sorted(accepted))})"
        )
    try:
        return factory(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Bad parameters for {name}: {exc}") from exc


def _knobs(factory: Callable[..., Program]) -> set[str]:
    if dataclasses.is_dataclass(factory):
        return {f.name for f in dataclasses.fields(factory) if f.init}
    return {
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
