"""The allocator: the query-level policy that decides, after each report, whether to go on.

It applies the paper's *detect and terminate*: stop when certaindex >= threshold at or after
step m; a *hopeless* cut: certaindex still below a low threshold after m steps (stop, or
demote so that other queries get the compute); caps on steps; and deadline awareness (do not
start a step that cannot finish in time).

A query's rule is its own (``Query.certaindex``) when it carries one, else its algorithm's in
the config (:class:`AllocatorConfig`, read from a file written by ``dynasor calibrate`` or by
hand; the bundled defaults are in ``dynasor/data/presets.yaml``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from certaindex import Certainty
from dynasor._presets import AllocatorConfig, StopRule
from dynasor._query import Query
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
        algorithm = query.algorithm
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
