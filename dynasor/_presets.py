"""Where the allocator's stop rules come from: the Certaindex config and the presets file.

A stop rule is one value object, :class:`certaindex.StopRule` (measure, threshold, minimum
samples, round size, answer kind, abstentions, hopeless exit, certification). Its thresholds
live in one place each:

- **calibrated rules** (``sc``'s): the Certaindex config ``certaindex/data/certaindex.yaml``,
  written by ``dynasor calibrate`` (and the leave-one-set-out script) with the bound and the data
  it was certified on;
- **named presets**: ``dynasor/data/presets.yaml`` holds the rules of the algorithms nobody has
  calibrated yet (``cot``, ``mcts``, ``rebase``, ``bon``), the fallback ``default``, the deadline
  guard, and the proxy's *effort levels*: stop-rule fields per level, and program knobs per level
  for programs whose levels are knobs of their own (``cot``: probe window and chunk size).

:meth:`AllocatorConfig.bundled` is the presets file with the calibrated rules on top: the one
configuration eval, serve, demo and the library start from. A config file of one's own
(``--certaindex FILE``) is a Certaindex config (:meth:`certaindex.CertaindexConfig.load` format),
optionally with the sections ``deadline_guard``, ``effort`` and ``effort_knobs``::

    version: 1
    sc: {measure: majority, threshold: 0.8, min_samples: 4, round_size: 2, abstentions: class}
    default: {threshold: null}
    deadline_guard: true     # stop a query whose next step cannot end before its deadline
    effort:                  # the proxy's effort levels: stop-rule fields they set
      mid: {threshold: 0.8, min_samples: 4}

Levels a file does not define keep the bundled ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from certaindex import CertaindexConfig, RuleError, StopRule
from dynasor._exceptions import ConfigError

__all__ = ["DECISION_FIELDS", "PRESETS_FILE", "AllocatorConfig", "StopRule", "changed_rule"]

PRESETS_FILE = "presets.yaml"
"""The bundled presets, in the ``dynasor.data`` package."""

_SECTIONS = ("deadline_guard", "effort", "effort_knobs")
"""Top-level keys of a config that are not algorithms."""

DECISION_FIELDS = frozenset(f.name for f in fields(StopRule) if f.name not in ("certification", "name", "answer_kind"))
"""Fields that change where a rule stops (changing one voids the rule's certification)."""

NEVER_EARLY = StopRule(threshold=None, name="never early")


def changed_rule(rule: StopRule, changes: Mapping[str, Any], *, algorithm: str | None = None) -> StopRule:
    """``rule`` with ``changes`` applied and checked as a config entry would be.

    A change to where the rule stops drops its certification and name: the promise was made
    for the rule as it was. Raises :class:`ConfigError` naming the bad field or value.

    >>> base = StopRule("majority", 0.8, min_samples=4)
    >>> changed_rule(base, {"threshold": 0.9}).threshold
    0.9
    >>> changed_rule(base, {"min_step": 2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dynasor._exceptions.ConfigError: rule: unknown field(s) min_step (known: ...)
    """
    entry = {k: v for k, v in rule.to_dict().items() if k != "certification"}
    if any(k in DECISION_FIELDS and entry.get(k) != v for k, v in changes.items()):
        entry.pop("name", None)
        cert = None
    else:
        cert = rule.certification
    entry.update(changes)
    hopeless, threshold = entry.get("hopeless_threshold"), entry.get("threshold")
    if "hopeless_threshold" not in changes and hopeless is not None and threshold is not None and hopeless > threshold:
        entry["hopeless_threshold"] = threshold  # a looser confident exit keeps the hopeless one below it
    if "max_risk" not in changes and entry.get("max_risk") is not None:
        # The configured worst-case cap went with the configured rule: kept where the changed rule
        # can still carry one, dropped (not an error the client never asked for) where it cannot.
        try:
            StopRule.from_mapping(entry, algorithm=algorithm)
        except RuleError:
            entry["max_risk"] = None
    try:
        out = StopRule.from_mapping(entry, algorithm=algorithm)
    except RuleError as exc:
        raise ConfigError(str(exc)) from None
    return out if cert is None else out.with_changes(certification=cert)


@dataclass(frozen=True, slots=True)
class AllocatorConfig:
    """Stop rules by algorithm, a fallback, the deadline guard and the effort levels."""

    rules: Mapping[str, StopRule] = field(default_factory=dict)
    default: StopRule = NEVER_EARLY
    deadline_guard: bool = True
    """Stop (reason ``deadline``) when the next step is predicted to end after the deadline."""
    effort: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Effort levels this config defines (level -> stop-rule fields); see :meth:`effort_changes`."""
    effort_knobs: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    """Programs whose effort levels are knobs of their own: algorithm -> level -> knobs."""

    def rule_for(self, algorithm: str) -> StopRule:
        return self.rules.get(algorithm, self.default)

    def with_rule(self, algorithm: str, **changes: Any) -> AllocatorConfig:
        """A copy with ``algorithm``'s rule changed (checked; see :func:`changed_rule`)."""
        rule = changed_rule(self.rule_for(algorithm), changes, algorithm=algorithm)
        return replace(self, rules={**self.rules, algorithm: rule})

    def effort_changes(self, level: str) -> Mapping[str, Any]:
        """The stop-rule fields effort ``level`` sets: this config's level, else the bundled one."""
        changes = self.effort.get(level)
        if changes is None:
            changes = _bundled_effort().get(level)
        if changes is None:
            raise ConfigError(f"unknown effort level {level!r} (choose from {', '.join(_bundled_effort())})")
        return changes

    def knobs_for_effort(self, algorithm: str, level: str) -> Mapping[str, Any] | None:
        """Program knobs effort ``level`` sets for ``algorithm`` (None: its levels are stop-rule fields)."""
        self.effort_changes(level)  # an unknown level is an error for every program
        levels = self.effort_knobs.get(algorithm) or _bundled_effort_knobs().get(algorithm)
        if levels is None:
            return None
        return levels.get(level)

    def certaindex_config(self) -> CertaindexConfig:
        """The rules as a :class:`certaindex.CertaindexConfig` (what ``dynasor calibrate`` writes)."""
        return CertaindexConfig(dict(self.rules), self.default)

    @classmethod
    def from_mapping(cls, raw: Any, *, source: str = "config") -> AllocatorConfig:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: a config must be a mapping of algorithm name to stop rule")
        try:
            rules = CertaindexConfig.from_mapping({k: v for k, v in raw.items() if k not in _SECTIONS}, source=source)
        except RuleError as exc:
            raise ConfigError(str(exc)) from None
        guard = raw.get("deadline_guard", True)
        if not isinstance(guard, bool):
            raise ConfigError(f"{source}: deadline_guard must be true or false, got {guard!r}")
        default = rules.default if "default" in raw else NEVER_EARLY
        return cls(
            dict(rules.rules),
            default,
            guard,
            _effort_levels(raw.get("effort"), source),
            _effort_knobs(raw.get("effort_knobs"), source),
        )

    @classmethod
    def load(cls, path: str | Path) -> AllocatorConfig:
        """Read a YAML or JSON config file (``.json``: JSON; anything else: YAML)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the config ({exc})") from None
        try:
            raw = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from None
        return cls.from_mapping(raw if raw is not None else {}, source=str(path))

    @classmethod
    def bundled(cls) -> AllocatorConfig:
        """The presets file with the calibrated rules of the bundled Certaindex config on top."""
        presets = cls.from_mapping(_bundled_raw(), source=f"dynasor/data/{PRESETS_FILE}")
        calibrated = CertaindexConfig.bundled()
        return replace(presets, rules={**presets.rules, **calibrated.rules})


@cache
def _bundled_raw() -> Mapping[str, Any]:
    text = resources.files("dynasor.data").joinpath(PRESETS_FILE).read_text(encoding="utf-8")
    raw: Mapping[str, Any] = yaml.safe_load(text)
    return raw


def _bundled_effort() -> Mapping[str, Mapping[str, Any]]:
    return _effort_levels(_bundled_raw().get("effort"), PRESETS_FILE)


def _bundled_effort_knobs() -> Mapping[str, Mapping[str, Mapping[str, Any]]]:
    return _effort_knobs(_bundled_raw().get("effort_knobs"), PRESETS_FILE)


def _effort_levels(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, Mapping) for v in raw.values()):
        raise ConfigError(f"{source}: effort must map each level to stop-rule fields, e.g. {{mid: {{threshold: 0.8}}}}")
    levels = {str(level): dict(changes) for level, changes in raw.items()}
    for level, changes in levels.items():
        try:
            changed_rule(StopRule(), changes)
        except ConfigError as exc:
            raise ConfigError(f"{source}: effort level {level!r}: {exc}") from None
    return levels


def _effort_knobs(raw: Any, source: str) -> dict[str, dict[str, dict[str, Any]]]:
    if raw is None:
        return {}
    ok = isinstance(raw, Mapping) and all(
        isinstance(levels, Mapping) and all(isinstance(k, Mapping) for k in levels.values()) for levels in raw.values()
    )
    if not ok:
        raise ConfigError(
            f"{source}: effort_knobs must map algorithm -> level -> knobs, e.g. {{cot: {{mid: {{window: 3}}}}}}"
        )
    return {str(alg): {str(level): dict(knobs) for level, knobs in levels.items()} for alg, levels in raw.items()}
