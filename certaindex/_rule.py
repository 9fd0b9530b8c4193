"""A stop rule is one value object, and a Certaindex config file is one rule per algorithm.

A :class:`StopRule` says everything needed to decide where a query stops: the measure and its
threshold, the minimum number of samples before it may fire (samples, not rounds), the round
size (samples drawn between two checks), the answer kind, how samples without an answer are
treated, the hopeless exit, and the certification it carries (the bound and confidence it was
certified at, the method, the data it was chosen and certified on, the expected saving).
:func:`~certaindex.stop_index` applies it to a trajectory; every report and the calibration
call that one function.

Config file (YAML or JSON), one rule per algorithm plus ``default``::

    version: 1
    default: {measure: beta, threshold: null}
    sc:
      measure: beta
      threshold: 0.9
      min_samples: 4
      round_size: 2
      answer_kind: math
      abstentions: ignore
      hopeless_threshold: 0.05
      hopeless_after: 16
      certification: {bound: 0.005, confidence: 0.95, method: ltt-paired, data: "...", ...}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

__all__ = [
    "ABSTENTIONS",
    "AGREEMENT_MEASURES",
    "ALGORITHM_MEASURES",
    "ANSWER_KINDS",
    "KNOWN_MEASURES",
    "Abstentions",
    "AnswerKind",
    "CertaindexConfig",
    "Certification",
    "RuleError",
    "StopRule",
]

AnswerKind = Literal["math", "choice", "code"]
ANSWER_KINDS: tuple[str, ...] = get_args(AnswerKind)

Abstentions = Literal["ignore", "class", "distinct"]
ABSTENTIONS: tuple[str, ...] = get_args(Abstentions)
"""How samples without an answer enter an agreement measure (see :func:`~certaindex.treat_abstentions`)."""

AGREEMENT_MEASURES: tuple[str, ...] = ("entropy", "majority", "beta", "dirichlet", "esc")
"""Measures computed from the samples' answer clusters (abstention treatment applies)."""

ALGORITHM_MEASURES: Mapping[str, tuple[str, ...]] = {
    "sc": AGREEMENT_MEASURES,
    "bon": ("reward_max", *AGREEMENT_MEASURES),
    "cot": ("probe",),
    "mcts": ("mcts",),
    "rebase": ("rebase",),
}
"""Measures each built-in algorithm reports; a rule for one of them must read one of these."""

KNOWN_MEASURES = frozenset({m for ms in ALGORITHM_MEASURES.values() for m in ms} | {"reward_mean", "deepconf"})


class RuleError(ValueError):
    """A stop rule or Certaindex config that cannot be used (the message says why)."""


@dataclass(frozen=True, slots=True)
class Certification:
    """What a rule was certified at, and on what data."""

    bound: float | None
    """Accuracy loss vs the full budget the rule promises (a fraction; None: no bound, a point estimate)."""
    confidence: float | None
    """Probability that the promise holds (None without a bound)."""
    method: str
    """How: ``ltt-paired``, ``ltt-binomial``, ``clopper-pearson``, ``point-estimate``, ``published``."""
    data: str
    """The data the rule was chosen and certified on (sets, queries)."""
    queries: int = 0
    expected_saving: float | None = None
    """Share of the full budget's samples not drawn, on that data."""
    expected_loss: float | None = None
    """Observed accuracy loss on that data (a fraction; negative = gained)."""

    def __post_init__(self) -> None:
        if self.bound is not None and not 0.0 <= self.bound < 1.0:
            raise RuleError(f"certification bound is a fraction in [0, 1), got {self.bound}")
        if self.confidence is not None and not 0.0 < self.confidence < 1.0:
            raise RuleError(f"certification confidence must lie in (0, 1), got {self.confidence}")

    @property
    def statement(self) -> str:
        """The promise in words (never calls a point estimate a bound)."""
        if self.method == "worst-case" and self.bound is not None:
            return (
                f"expected accuracy loss vs the full budget <= {100 * self.bound:g} pt on every query of any "
                f"workload whose samples are drawn independently, by construction (chosen for savings on "
                f"{self.queries} queries: {self.data})"
            )
        if self.bound is None or self.confidence is None:
            loss = "" if self.expected_loss is None else f" (observed loss {100 * self.expected_loss:+.2f} pt)"
            return f"no bound: {self.method} on {self.data}{loss}"
        return (
            f"accuracy loss vs the full budget <= {100 * self.bound:g} pt with probability >= "
            f"{self.confidence:g} ({self.method}, {self.queries} queries: {self.data})"
        )


@dataclass(frozen=True, slots=True)
class StopRule:
    """Where a query stops: confident, hopeless, or at its budget.

    A check happens after every ``round_size`` samples. The rule stops as *confident* at the
    first check with at least ``min_samples`` samples where the measure is ``>= threshold``,
    and as *hopeless* at the first check with at least ``hopeless_after`` samples where it is
    ``< hopeless_threshold``; otherwise the query runs to its budget.

    >>> rule = StopRule("beta", 0.95, min_samples=3, round_size=1)
    >>> rule.value_key
    'beta/class'
    >>> StopRule("entropy", 1.5)
    Traceback (most recent call last):
    ...
    certaindex._rule.RuleError: threshold must lie in [0, 1], got 1.5
    """

    measure: str = "beta"
    threshold: float | None = None
    """Stop as confident when the measure is >= threshold (None: never early)."""
    min_samples: int = 1
    round_size: int = 1
    answer_kind: AnswerKind = "math"
    abstentions: Abstentions = "class"
    """Default chosen on the leave-one-set-out evidence (docs/certaindex.md, "Abstentions")."""
    hopeless_threshold: float | None = None
    """Stop as hopeless when the measure is < this (None: no hopeless exit)."""
    hopeless_after: int = 1
    """Samples drawn before the hopeless exit may fire."""
    hopeless_action: Literal["stop", "demote"] = "stop"
    certification: Certification | None = None
    name: str | None = None
    """A label for reports (``ESC window 5``); not part of the decision."""
    max_risk: float | None = None
    """The confident exit also waits for as many samples as it takes (at least ``min_samples``) so
    that no query, whatever its answers, loses more than this on average over the orders of its
    samples at its budget (:func:`~certaindex.loss_range`): one rule, the same worst case at 8 or
    100 samples, waiting longer where the full budget's answer is harder to match. Needs the
    budget (:attr:`Trajectory.budget`) and a rule the range bounds (``majority``, abstentions
    ``distinct``, threshold above 1/2). None: ``min_samples`` alone."""

    def __post_init__(self) -> None:
        if not isinstance(self.measure, str) or not self.measure or "/" in self.measure:
            raise RuleError(f"measure must be a measure name, got {self.measure!r}")
        for label in ("threshold", "hopeless_threshold"):
            value = getattr(self, label)
            if value is not None and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise RuleError(f"{label} must lie in [0, 1], got {value}")
        for label in ("min_samples", "round_size", "hopeless_after"):
            value = getattr(self, label)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RuleError(f"{label} must be an integer >= 1, got {value!r}")
        if self.max_risk is not None:
            if not isinstance(self.max_risk, int | float) or not 0.0 < self.max_risk < 1.0:
                raise RuleError(f"max_risk must lie in (0, 1), got {self.max_risk!r}")
            if not self.bounded:
                raise RuleError(
                    "max_risk needs a rule whose loss range is bounded: measure majority, abstentions distinct, "
                    "threshold above 1/2"
                )
        if self.answer_kind not in ANSWER_KINDS:
            raise RuleError(f"answer_kind must be one of {', '.join(ANSWER_KINDS)}, got {self.answer_kind!r}")
        if self.abstentions not in ABSTENTIONS:
            raise RuleError(f"abstentions must be one of {', '.join(ABSTENTIONS)}, got {self.abstentions!r}")
        if self.hopeless_action not in ("stop", "demote"):
            raise RuleError(f"hopeless_action must be 'stop' or 'demote', got {self.hopeless_action!r}")
        if (
            self.threshold is not None
            and self.hopeless_threshold is not None
            and self.hopeless_threshold > self.threshold
        ):
            raise RuleError(
                f"hopeless_threshold ({self.hopeless_threshold}) above threshold ({self.threshold}): "
                "a check could be both confident and hopeless"
            )

    @property
    def bounded(self) -> bool:
        """Whether :func:`~certaindex.loss_range` bounds the confident exit (else its range is trivial)."""
        return (
            self.measure == "majority"
            and self.abstentions == "distinct"
            and (self.threshold is None or self.threshold > 0.5)
            and max(self.min_samples, self.round_size) >= 2
        )

    def min_samples_at(self, budget: int) -> int:
        """Samples drawn before the confident exit may fire, for a query with this budget.

        >>> rule = StopRule("majority", 0.8, min_samples=2, abstentions="distinct", max_risk=0.1)
        >>> [rule.min_samples_at(n) for n in (8, 30, 100)]
        [3, 6, 7]
        """
        if self.max_risk is None or self.threshold is None:
            return self.min_samples
        confident = StopRule(self.measure, self.threshold, round_size=self.round_size, abstentions=self.abstentions)
        return max(self.min_samples, _risk_minimum(confident, budget, self.max_risk))

    @property
    def value_key(self) -> str:
        """Key of this rule's certaindex values in a trajectory (measure, abstentions, ESC window)."""
        return value_key(self.measure, self.abstentions, self.round_size)

    def describe(self) -> str:
        """One line for a report.

        >>> StopRule("esc", 1.0, min_samples=5, round_size=5, abstentions="distinct").describe()
        'esc >= 1 from 5 samples, rounds of 5, abstentions distinct'
        """
        if self.threshold is None and self.hopeless_threshold is None:
            return "no early stop (full budget)"
        parts = []
        if self.threshold is not None:
            low = f"{self.min_samples} samples"
            if self.max_risk is not None:
                low = f"{low} (more until any query's loss <= {self.max_risk:g})"
            parts.append(f"{self.measure} >= {self.threshold:.4g} from {low}")
        parts.append(f"rounds of {self.round_size}")
        if self.measure in AGREEMENT_MEASURES:
            parts.append(f"abstentions {self.abstentions}")
        if self.hopeless_threshold is not None:
            parts.append(f"hopeless < {self.hopeless_threshold:.4g} from {self.hopeless_after} samples")
        return ", ".join(parts)

    def with_changes(self, **changes: Any) -> StopRule:
        """A copy with fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config-file entry (certification nested, None fields of it dropped)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "certification":
                if value is not None:
                    out[f.name] = {k: _rounded(v) for k, v in asdict(value).items() if v is not None}
            elif f.name == "name":
                if value is not None:
                    out[f.name] = value
            else:
                out[f.name] = _rounded(value)
        return out

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, algorithm: str | None = None) -> StopRule:
        """A rule from a config entry, with a clear error for anything wrong.

        The measure must be one this library knows, and one ``algorithm`` reports when it is
        a built-in one; a rule for another algorithm (a custom program) may name any measure.
        """
        where = f"rule for {algorithm!r}" if algorithm else "rule"
        if not isinstance(raw, Mapping):
            raise RuleError(f"{where}: expected a mapping of fields, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RuleError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        data = dict(raw)
        cert = data.get("certification")
        try:
            if cert is not None:
                if not isinstance(cert, Mapping):
                    raise RuleError("certification must be a mapping")
                cert_known = {f.name for f in fields(Certification)}
                if extra := sorted(set(cert) - cert_known):
                    raise RuleError(f"certification: unknown field(s) {', '.join(extra)}")
                data["certification"] = Certification(**{"bound": None, "confidence": None, **cert})
            rule = cls(**data)
        except RuleError as exc:
            raise RuleError(f"{where}: {exc}") from None
        except TypeError as exc:
            raise RuleError(f"{where}: {exc}") from None
        if (algorithm is None or algorithm in ALGORITHM_MEASURES) and rule.measure not in KNOWN_MEASURES:
            raise RuleError(f"{where}: unknown measure {rule.measure!r} (known: {', '.join(sorted(KNOWN_MEASURES))})")
        reported = ALGORITHM_MEASURES.get(algorithm or "")
        if reported is not None and rule.measure not in reported:
            raise RuleError(
                f"{where}: {algorithm} cannot produce measure {rule.measure!r} (it reports {', '.join(reported)})"
            )
        return rule


@lru_cache(maxsize=65536)
def _risk_minimum(rule: StopRule, budget: int, risk: float) -> int:
    """The fewest samples that keep the (confident exit of the) rule's loss range within ``risk``."""
    from certaindex._range import loss_range  # it builds on this module

    def ok(low: int) -> bool:
        return loss_range(rule.with_changes(min_samples=low), budget).hi <= risk

    lo, hi = 2, max(2, budget)  # 2: a single sample proves nothing; `budget` samples: never early, range 0
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def value_key(measure: str, abstentions: str = "class", round_size: int = 1) -> str:
    """Key of a measure's values in a trajectory.

    >>> value_key("entropy", "class"), value_key("esc", "distinct", 5), value_key("reward_max")
    ('entropy/class', 'esc5/distinct', 'reward_max')
    """
    if measure == "esc":
        return f"esc{round_size}/{abstentions}"
    if measure in AGREEMENT_MEASURES:
        return f"{measure}/{abstentions}"
    return measure


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 6)
    return value


@dataclass(frozen=True, slots=True)
class CertaindexConfig:
    """Stop rules by algorithm, with a default for the others."""

    rules: Mapping[str, StopRule] = field(default_factory=dict)
    default: StopRule = field(default_factory=StopRule)

    def rule_for(self, algorithm: str) -> StopRule:
        return self.rules.get(algorithm, self.default)

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "default": self.default.to_dict(), **{a: r.to_dict() for a, r in self.rules.items()}}

    def dumps(self, fmt: Literal["yaml", "json"] = "yaml", header: str | None = None) -> str:
        """The config file's text (``header`` becomes leading ``#`` comments in YAML)."""
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        import yaml  # lazy: only config files need it

        lines = [f"# {line}" for line in (header or "").splitlines()]
        lines.append(yaml.safe_dump(self.to_dict(), sort_keys=False, width=1000).rstrip())
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path, header: str | None = None) -> None:
        fmt: Literal["yaml", "json"] = "json" if str(path).endswith(".json") else "yaml"
        Path(path).write_text(self.dumps(fmt, header), encoding="utf-8")

    @classmethod
    def from_mapping(cls, raw: Any, *, source: str = "config") -> CertaindexConfig:
        if not isinstance(raw, Mapping):
            raise RuleError(f"{source}: a Certaindex config is a mapping of algorithm name to rule")
        version = raw.get("version", 1)
        if version != 1:
            raise RuleError(f"{source}: unsupported config version {version!r} (this library reads version 1)")
        rules: dict[str, StopRule] = {}
        for name, entry in raw.items():
            if name == "version":
                continue
            algorithm = None if name == "default" else str(name)
            try:
                rules[str(name)] = StopRule.from_mapping(entry, algorithm=algorithm)
            except RuleError as exc:
                raise RuleError(f"{source}: {exc}") from None
        default = rules.pop("default", StopRule())
        return cls(rules, default)

    @classmethod
    def loads(cls, text: str, *, fmt: Literal["yaml", "json"] = "yaml", source: str = "config") -> CertaindexConfig:
        import yaml  # lazy: only config files need it

        try:
            raw = json.loads(text) if fmt == "json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise RuleError(f"{source}: not valid {fmt.upper()}: {exc}") from None
        return cls.from_mapping(raw if raw is not None else {}, source=source)

    @classmethod
    def load(cls, path: str | Path) -> CertaindexConfig:
        """Read a YAML or JSON config file (``.json``: JSON; anything else: YAML)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RuleError(f"{path}: cannot read the config: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise RuleError(f"{path}: not UTF-8 text ({exc.reason})") from None
        return cls.loads(text, fmt="json" if str(path).endswith(".json") else "yaml", source=str(path))

    @classmethod
    def bundled(cls) -> CertaindexConfig:
        """The pooled, calibrated rules shipped in ``certaindex/data/certaindex.yaml``."""
        text = resources.files("certaindex").joinpath("data", "certaindex.yaml").read_text(encoding="utf-8")
        return cls.loads(text, source="certaindex/data/certaindex.yaml")
