"""The knobs of each reasoning program as a pydantic model, checked before anything runs.

A program's knobs are the fields of its class (a dataclass; or its constructor's
parameters): the model takes each knob's *type* from the program itself, strictly (``"4"``
is not an integer, ``1e12`` is not one either, ``true`` is not a number), and *bounds* by
the knob's name from :data:`KNOB_BOUNDS`. Whatever a program checks beyond that (a vote
method's name, a measure it reports) it checks itself when it is built, still before any
sample is drawn. A knob a program does not have is an error naming the valid ones.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from algorithms import ALGORITHMS

__all__ = ["KNOB_BOUNDS", "TOKEN_KNOBS", "KnobError", "knob_model", "validate_knobs"]

_COUNT: Mapping[str, Any] = {"ge": 1}
_TEMPERATURE: Mapping[str, Any] = {"ge": 0.0, "le": 2.0, "allow_inf_nan": False}

KNOB_BOUNDS: Mapping[str, Mapping[str, Any]] = {
    # How many: samples, rounds, tree sizes, probe windows.
    **dict.fromkeys(
        ("max_samples", "samples_per_round", "iterations", "width", "max_depth", "window", "min_finished"), _COUNT
    ),
    # Token sizes of one call (also capped by the server's --max-tokens, see TOKEN_KNOBS).
    **dict.fromkeys(("max_tokens", "chunk_tokens", "probe_tokens", "step_tokens", "rollout_tokens"), _COUNT),
    # Sampling temperatures, OpenAI's range.
    **dict.fromkeys(("temperature", "probe_temperature"), _TEMPERATURE),
    "balance_temperature": {"gt": 0.0, "allow_inf_nan": False},
    "exploration": {"ge": 0.0, "allow_inf_nan": False},
    "seed": {"ge": 0},
}
"""Bounds of the knobs the bundled programs share, by name (pydantic ``Field`` constraints)."""

TOKEN_KNOBS = ("max_tokens", "chunk_tokens", "probe_tokens", "step_tokens", "rollout_tokens")
"""Knobs that size one engine call: none may exceed the server's largest ``max_tokens``."""


class KnobError(ValueError):
    """A knob the program does not take, or a value it cannot have; ``param`` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _knob_types(factory: Any) -> dict[str, Any]:
    """Knob name to its annotation (``Any`` where the program gives none)."""
    target: Any = factory
    if dataclasses.is_dataclass(factory):
        names = [f.name for f in dataclasses.fields(factory) if f.init]
    else:
        signature = inspect.signature(factory)
        names = [p.name for p in signature.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):
        hints = {}
    return {name: hints.get(name, Any) for name in names}


@functools.cache
def knob_model(algorithm: str) -> type[BaseModel]:
    """The pydantic model of ``algorithm``'s knobs (every knob optional: unset keeps the program's default)."""
    factory = ALGORITHMS[algorithm]
    fields: dict[str, Any] = {}
    for name, annotation in _knob_types(factory).items():
        fields[name] = (annotation, Field(None, **KNOB_BOUNDS.get(name, {})))
    config = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)
    title = f"{getattr(factory, '__name__', algorithm)}Knobs"
    model: type[BaseModel] = create_model(title, __config__=config, **fields)
    return model


def validate_knobs(algorithm: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """``knobs`` checked against ``algorithm``'s model; raises :class:`KnobError` naming the knob.

    >>> validate_knobs("sc", {"samples_per_round": 4})
    {'samples_per_round': 4}
    >>> validate_knobs("sc", {"samples_per_round": "4"})
    Traceback (most recent call last):
    ...
    dynasor.server._knobs.KnobError: samples_per_round: Input should be a valid integer
    """
    model = knob_model(algorithm)
    unknown = sorted(set(knobs) - set(model.model_fields))
    if unknown:
        valid = ", ".join(sorted(model.model_fields))
        raise KnobError(f"Unknown parameter(s) for {algorithm}: {', '.join(unknown)} (valid: {valid})", unknown[0])
    try:
        model.model_validate(dict(knobs))
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        where = ".".join(str(p) for p in error["loc"])
        raise KnobError(f"{where}: {error['msg']}" if where else str(error["msg"]), name) from None
    return dict(knobs)
