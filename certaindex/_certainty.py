"""The value every certainty measure returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Certainty"]


@dataclass(frozen=True, slots=True)
class Certainty:
    """How sure a reasoning program is of its current answer.

    Attributes
    ----------
    value:
        Certaindex in [0, 1]; 1 means the answer has settled.
    measure:
        Name of the measure that produced it (``"entropy"``, ``"majority"``, ...).
    details:
        Measure-specific extras (cluster sizes, leading answer, ...), for logs and reports.
    """

    value: float
    measure: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.value <= 1.0:
            raise ValueError(f"certainty value must lie in [0, 1], got {self.value!r}")
