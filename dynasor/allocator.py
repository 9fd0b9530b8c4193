"""The allocator: the query-level policy that decides, after each report, whether to go on.

It applies the paper's *detect and terminate*: stop when certaindex >= threshold at or after
step m; a *hopeless* cut: certaindex still below a low threshold after m steps (stop, or
demote so that other queries get the compute); caps on steps; and deadline awareness (do not
start a step that cannot finish in time). Thresholds come from a config file, written by
``dynasor calibrate`` or by hand, never from literals in code; the bundled defaults are in
``dynasor/data/allocator.yaml``.

Config file (YAML or JSON), one rule per algorithm plus ``default``::

    sc:
      measure: entropy      # the certaindex measure this rule reads
      threshold: 0.7        # stop when certaindex >= threshold ...
      min_step: 2           # ... at or after this step (1-based)
      hopeless_threshold: 0.1
      hopeless_after: 4
      hopeless_action: demote   # or stop
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from certaindex import Certainty
from dynasor._exceptions import ConfigError
from dynasor._state import ExitReason, QueryStats

__all__ = ["Action", "Allocator", "AllocatorConfig", "Decision", "StopRule"]

logger = logging.getLogger(__name__)


class Action(StrEnum):
    CONTINUE = "continue"
    STOP = "stop"
    DEMOTE = "demote"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: ExitReason | None = None

    @property
    def stop(self) -> bool:
        return self.action is Action.STOP


CONTINUE = Decision(Action.CONTINUE)


@dataclass(frozen=True, slots=True)
class StopRule:
    """Stopping rule for one algorithm."""

    measure: str | None = None
    """Measure whose reports the rule reads; None reads every report."""
    threshold: float | None = None
    """Stop as confident when certaindex >= threshold (None: never early)."""
    min_step: int = 1
    """First step (1-based) at which the threshold applies."""
    hopeless_threshold: float | None = None
    """Certaindex below this after ``hopeless_after`` steps marks the query hopeless."""
    hopeless_after: int = 1
    hopeless_action: Literal["stop", "demote"] = "stop"
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Keys the allocator does not use (calibration notes: expected saving, bound, ...)."""

    def __post_init__(self) -> None:
        for name in ("threshold", "hopeless_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {value}")
        if self.min_step < 1 or self.hopeless_after < 1:
            raise ConfigError("min_step and hopeless_after must be >= 1")
        if self.hopeless_action not in ("stop", "demote"):
            raise ConfigError(f"hopeless_action must be 'stop' or 'demote', got {self.hopeless_action!r}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> StopRule:
        known = {f.name for f in fields(cls)} - {"extra"}
        try:
            return cls(
                **{k: v for k, v in raw.items() if k in known}, extra={k: v for k, v in raw.items() if k not in known}
            )
        except TypeError as exc:
            raise ConfigError(f"bad stop rule {dict(raw)!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class AllocatorConfig:
    """Stop rules by algorithm name, with a fallback."""

    rules: Mapping[str, StopRule] = field(default_factory=dict)
    default: StopRule = field(default_factory=StopRule)
    deadline_guard: bool = True
    """Stop (reason ``deadline``) when the next step is predicted to end after the deadline."""

    def rule_for(self, algorithm: str) -> StopRule:
        return self.rules.get(algorithm, self.default)

    def with_rule(self, algorithm: str, **changes: Any) -> AllocatorConfig:
        """A copy with ``algorithm``'s rule changed (per-request overrides)."""
        base = self.rule_for(algorithm)
        merged = {f.name: getattr(base, f.name) for f in fields(StopRule)} | changes
        return AllocatorConfig({**self.rules, algorithm: StopRule(**merged)}, self.default, self.deadline_guard)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> AllocatorConfig:
        if not isinstance(raw, Mapping):
            raise ConfigError("an allocator config must be a mapping of algorithm name to rule")
        rules = {str(k): StopRule.from_mapping(v) for k, v in raw.items() if isinstance(v, Mapping)}
        default = rules.pop("default", StopRule())
        return cls(rules, default, bool(raw.get("deadline_guard", True)))

    @classmethod
    def load(cls, path: str | Path) -> AllocatorConfig:
        """Read a YAML or JSON config file."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            raw = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
        return cls.from_mapping(raw or {})

    @classmethod
    def bundled(cls) -> AllocatorConfig:
        """The defaults shipped in ``dynasor/data/allocator.yaml``."""
        text = resources.files("dynasor.data").joinpath("allocator.yaml").read_text(encoding="utf-8")
        return cls.from_mapping(yaml.safe_load(text))


class Allocator:
    """Decides continue / stop / demote after each report of a query."""

    def __init__(self, config: AllocatorConfig | None = None) -> None:
        self.config = config if config is not None else AllocatorConfig.bundled()
        self._warned: set[tuple[str, str]] = set()

    def decide(
        self,
        algorithm: str,
        stats: QueryStats,
        certainty: Certainty,
        *,
        now: float,
        step_time: float | None = None,
    ) -> Decision:
        """Decision after ``stats.steps`` reports, the latest being ``certainty``.

        ``step_time`` is the predicted duration of the next step (for the deadline guard).
        """
        rule = self.config.rule_for(algorithm)
        step = stats.steps
        demote = False
        if rule.measure is None or rule.measure == certainty.measure:
            if rule.threshold is not None and step >= rule.min_step and certainty.value >= rule.threshold:
                return Decision(Action.STOP, ExitReason.CONFIDENT)
            if (
                rule.hopeless_threshold is not None
                and step >= rule.hopeless_after
                and certainty.value < rule.hopeless_threshold
            ):
                if rule.hopeless_action == "stop":
                    return Decision(Action.STOP, ExitReason.HOPELESS)
                demote = not stats.demoted  # after the deadline check: a late query stops instead
        elif (algorithm, certainty.measure) not in self._warned:
            self._warned.add((algorithm, certainty.measure))
            logger.warning(
                "%s reports %r but its stop rule reads %r: those reports never stop it",
                algorithm,
                certainty.measure,
                rule.measure,
            )
        if (
            self.config.deadline_guard
            and stats.deadline is not None
            and step_time is not None
            and now + step_time > stats.deadline
        ):
            return Decision(Action.STOP, ExitReason.DEADLINE)
        return Decision(Action.DEMOTE, ExitReason.HOPELESS) if demote else CONTINUE
