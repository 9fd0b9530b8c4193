"""Stop rules and the presets file they come from.

A :class:`StopRule` says when one query stops early; an :class:`AllocatorConfig` holds one rule
per algorithm plus a fallback, and the proxy's *effort levels*. The bundled defaults live in
one presets file, ``dynasor/data/presets.yaml``, which is itself a config in the format below;
``dynasor calibrate`` writes configs of the same format, never literals in code.

Config file (YAML or JSON), one rule per algorithm plus ``default``, and optional sections::

    sc:
      measure: entropy      # the certaindex measure this rule reads
      threshold: 0.7        # stop when certaindex >= threshold ...
      min_step: 2           # ... at or after this step (1-based)
      hopeless_threshold: 0.1
      hopeless_after: 4
      hopeless_action: demote   # or stop
    deadline_guard: true    # stop a query whose next step cannot end before its deadline
    effort:                 # the proxy's "effort" levels: fields they set in the query's rule
      mid: {threshold: 0.8, min_step: 2}

Levels a config does not define keep the bundled ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from dynasor._exceptions import ConfigError

__all__ = ["PRESETS_FILE", "AllocatorConfig", "StopRule"]

PRESETS_FILE = "presets.yaml"
"""The bundled presets, in the ``dynasor.data`` package."""

_SECTIONS = ("deadline_guard", "effort")
"""Top-level keys of a config that are not algorithms."""


@dataclass(frozen=True, slots=True)
class StopRule:
    """Stopping rule for one algorithm (or for one query, when it carries its own)."""

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

    def changed(self, **changes: Any) -> StopRule:
        """A copy with some fields changed; raises :class:`ConfigError` for a bad field or value."""
        unknown = sorted(set(changes) - {f.name for f in fields(StopRule)})
        if unknown:
            raise ConfigError(f"unknown stop-rule field(s): {', '.join(unknown)}")
        return replace(self, **changes)

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
    """Stop rules by algorithm name, with a fallback, and the effort levels."""

    rules: Mapping[str, StopRule] = field(default_factory=dict)
    default: StopRule = field(default_factory=StopRule)
    deadline_guard: bool = True
    """Stop (reason ``deadline``) when the next step is predicted to end after the deadline."""
    effort: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Effort levels this config defines (level -> stop-rule fields); see :meth:`effort_changes`."""

    def rule_for(self, algorithm: str) -> StopRule:
        return self.rules.get(algorithm, self.default)

    def with_rule(self, algorithm: str, **changes: Any) -> AllocatorConfig:
        """A copy with ``algorithm``'s rule changed."""
        rules = {**self.rules, algorithm: self.rule_for(algorithm).changed(**changes)}
        return replace(self, rules=rules)

    def effort_changes(self, level: str) -> Mapping[str, Any]:
        """The stop-rule fields effort ``level`` sets: this config's level, else the bundled one."""
        changes = self.effort.get(level)
        if changes is None:
            changes = _bundled_effort().get(level)
        if changes is None:
            raise ConfigError(f"unknown effort level {level!r} (choose from {', '.join(_bundled_effort())})")
        return changes

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> AllocatorConfig:
        if not isinstance(raw, Mapping):
            raise ConfigError("an allocator config must be a mapping of algorithm name to rule")
        rules = {
            str(k): StopRule.from_mapping(v) for k, v in raw.items() if isinstance(v, Mapping) and k not in _SECTIONS
        }
        default = rules.pop("default", StopRule())
        return cls(rules, default, bool(raw.get("deadline_guard", True)), _effort_levels(raw.get("effort")))

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
        """The defaults shipped in ``dynasor/data/presets.yaml``."""
        return cls.from_mapping(_bundled_raw())


@cache
def _bundled_raw() -> Mapping[str, Any]:
    text = resources.files("dynasor.data").joinpath(PRESETS_FILE).read_text(encoding="utf-8")
    raw: Mapping[str, Any] = yaml.safe_load(text)
    return raw


def _bundled_effort() -> Mapping[str, Mapping[str, Any]]:
    return _effort_levels(_bundled_raw().get("effort"))


def _effort_levels(raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, Mapping) for v in raw.values()):
        raise ConfigError("effort must map each level to stop-rule fields, e.g. {mid: {threshold: 0.8}}")
    levels = {str(level): dict(changes) for level, changes in raw.items()}
    for level, changes in levels.items():
        try:
            StopRule().changed(**changes)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"effort level {level!r}: {exc}") from exc
    return levels
