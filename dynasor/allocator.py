"""The allocator: the query-level policy that decides, after each report, whether to go on.

A query stops by its rule, a :class:`certaindex.StopRule`: as *confident* at the first check
with enough samples where the measure reaches the threshold, as *hopeless* (stop, or demote so
that other queries get the compute) where it stays below the hopeless threshold. The decision
is :func:`certaindex.stop_index` on the query's live trajectory, the very function that
eval's reports, the replay figures and the calibration call, so a rule stops a live query
where it stops the same samples in replay. On top of the rule: deadline awareness (do not
start a step that cannot finish in time).

The live trajectory: a program that reports the cluster labels of its samples
(``certainty.details["labels"]``, one per sample, ``None`` for a sample without an answer, as
``sc`` and ``bon`` do) is measured here, by the rule's own measure and abstention treatment;
for any other report the rule reads the reported value when the measure is the rule's.

A query's rule is its own (``Query.certaindex``) when it carries one, else its algorithm's in
the config (:class:`AllocatorConfig`: the bundled presets and calibrated rules, or a file).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np

from algorithms import ALGORITHMS
from certaindex import AGREEMENT_MEASURES, Certainty, StopRule, Trajectory, stop_index
from dynasor._presets import AllocatorConfig
from dynasor._query import Query
from dynasor._state import ExitReason, QueryStats

__all__ = ["Action", "Allocator", "AllocatorConfig", "Decision", "StopRule", "live_trajectory", "rule_knobs"]

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


def live_trajectory(rule: StopRule, samples: int, certainty: Certainty, budget: int | None = None) -> Trajectory | None:
    """The trajectory ``rule`` reads after a report (None: the report says nothing to it).

    With the samples' cluster labels (``certainty.details["labels"]``) and an agreement
    measure, every check so far is measured as replay measures it (:meth:`Trajectory.from_labels`);
    otherwise the report is one check at ``samples`` with the reported value. Once ``budget``
    samples are drawn the trajectory is complete: its last check is the budget's end, where
    replay stops for the budget, not for a rule.

    >>> from certaindex import stop_index
    >>> t = live_trajectory(StopRule("majority", 1.0, min_samples=3), 3, Certainty(0.0, "x", {"labels": [1, 1, 1]}))
    >>> stop_index(StopRule("majority", 1.0, min_samples=3), t)
    Stop(index=2, reason='confident')
    """
    labels = certainty.details.get("labels")
    if rule.measure in AGREEMENT_MEASURES and isinstance(labels, Sequence) and not isinstance(labels, str) and labels:
        complete = budget is not None and len(labels) >= budget
        return replace(Trajectory.from_labels(list(labels)), complete=complete, budget=budget)
    if certainty.measure != rule.measure:
        return None
    return Trajectory(
        samples=np.array([max(samples, 1)], dtype=np.int64),
        values={rule.value_key: np.array([certainty.value], dtype=float)},
        complete=budget is not None and samples >= budget,
        budget=budget,  # a rule with a worst-case cap waits according to it
    )


def rule_knobs(algorithm: str, rule: StopRule) -> dict[str, Any]:
    """Program knobs that make ``algorithm`` check where ``rule`` checks and report what it reads.

    For a program that samples in rounds and reports an agreement measure (``sc``): a round of
    ``rule.round_size`` samples, the rule's measure and abstention treatment. Knobs a caller
    sets explicitly win over these. Empty for other programs.

    >>> rule_knobs("sc", StopRule("esc", 1.0, round_size=5, abstentions="distinct"))
    {'samples_per_round': 5, 'measure': 'esc', 'abstentions': 'distinct'}
    """
    program = ALGORITHMS.get(algorithm)
    fields = getattr(program, "__dataclass_fields__", {})
    if rule.measure not in AGREEMENT_MEASURES or "samples_per_round" not in fields:
        return {}
    knobs: dict[str, Any] = {"samples_per_round": rule.round_size}
    if "measure" in fields:
        knobs["measure"] = rule.measure
    if "abstentions" in fields:
        knobs["abstentions"] = rule.abstentions
    return knobs


class Allocator:
    """Decides continue / stop / demote after each report of a query."""

    def __init__(self, config: AllocatorConfig | None = None) -> None:
        self.config = config if config is not None else AllocatorConfig.bundled()
        self._warned: set[tuple[str, str]] = set()

    def rule_for(self, query: Query) -> StopRule:
        """The rule ``query`` stops by: its own when it carries one, else its algorithm's."""
        return query.certaindex if query.certaindex is not None else self.config.rule_for(query.algorithm)

    def decide(
        self,
        query: Query,
        stats: QueryStats,
        certainty: Certainty,
        *,
        now: float,
        step_time: float | None = None,
    ) -> Decision:
        """Decision after ``stats.steps`` reports of ``query``, the latest being ``certainty``.

        ``step_time`` is the predicted duration of the next step (for the deadline guard).
        """
        rule = self.rule_for(query)
        if stats.demoted and rule.hopeless_action == "demote":
            rule = rule.with_changes(hopeless_threshold=None)  # demoted once; the confident exit stays
        demote = False
        if rule.threshold is not None or rule.hopeless_threshold is not None:
            trajectory = live_trajectory(rule, stats.samples, certainty, stats.max_samples)
            if trajectory is None:
                self._warn(query.algorithm, certainty.measure, rule.measure)
            else:
                reason = stop_index(rule, trajectory).reason
                if reason == "confident":
                    return Decision(Action.STOP, ExitReason.CONFIDENT)
                if reason == "hopeless":
                    if rule.hopeless_action == "stop":
                        return Decision(Action.STOP, ExitReason.HOPELESS)
                    demote = True  # after the deadline check: a late query stops instead
        if (
            self.config.deadline_guard
            and stats.deadline is not None
            and step_time is not None
            and now + step_time > stats.deadline
        ):
            return Decision(Action.STOP, ExitReason.DEADLINE)
        return Decision(Action.DEMOTE, ExitReason.HOPELESS) if demote else CONTINUE

    def _warn(self, algorithm: str, reported: str, read: str) -> None:
        if (algorithm, reported) not in self._warned:
            self._warned.add((algorithm, reported))
            logger.warning(
                "%s reports %r (without answer labels) but its stop rule reads %r: those reports never stop it",
                algorithm,
                reported,
                read,
            )
