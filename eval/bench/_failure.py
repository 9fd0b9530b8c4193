"""A replica failure for a run over several simulated replicas (``RunConfig.replica_failure``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReplicaFailure", "parse_failure"]


@dataclass(frozen=True)
class ReplicaFailure:
    """Replica ``replica`` (0-based) goes down for good ``at`` seconds into the run."""

    replica: int
    at: float

    def __post_init__(self) -> None:
        if self.replica < 0 or self.at < 0:
            raise ValueError(f"a replica failure needs a replica index >= 0 and a time >= 0, got {self}")


def parse_failure(text: str) -> ReplicaFailure:
    """``"INDEX@SECONDS"`` (``"3@120"``: replica 3 goes down 120 s into the run)."""
    index, sep, at = text.partition("@")
    try:
        if not sep:
            raise ValueError
        return ReplicaFailure(int(index), float(at))
    except ValueError:
        raise ValueError(f"a replica failure is INDEX@SECONDS (e.g. 3@120), got {text!r}") from None
