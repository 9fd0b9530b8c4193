"""Allocator decisions on crafted certaindex series, and config loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from certaindex import Certainty
from dynasor import ConfigError, ExitReason, Query
from dynasor.allocator import Action, Allocator, AllocatorConfig, StopRule
from dynasor.sched import QueryStats

SC = Query("q", "sc")


def decisions(rule: StopRule, series: list[float], measure: str = "entropy") -> list[Action]:
    allocator = Allocator(AllocatorConfig({"sc": rule}))
    stats = QueryStats("q", arrival=0.0)
    out = []
    for value in series:
        stats.steps += 1
        decision = allocator.decide(SC, stats, Certainty(value, measure), now=0.0)
        if decision.action is Action.DEMOTE:
            stats.demoted = True
        out.append(decision.action)
    return out


C, S, D = Action.CONTINUE, Action.STOP, Action.DEMOTE


def test_stop_at_threshold_only_from_min_step() -> None:
    rule = StopRule(measure="entropy", threshold=0.7, min_step=3)
    assert decisions(rule, [0.9, 0.9, 0.9]) == [C, C, S]
    assert decisions(rule, [0.1, 0.5, 0.69, 0.7]) == [C, C, C, S]


def test_no_threshold_never_stops() -> None:
    assert decisions(StopRule(), [1.0] * 5) == [C] * 5


def test_other_measures_do_not_trigger() -> None:
    rule = StopRule(measure="entropy", threshold=0.5)
    assert decisions(rule, [1.0, 1.0], measure="reward") == [C, C]


def test_hopeless_stop_and_demote() -> None:
    stop = StopRule(threshold=0.9, hopeless_threshold=0.2, hopeless_after=3)
    assert decisions(stop, [0.1, 0.1, 0.1]) == [C, C, S]
    assert decisions(stop, [0.1, 0.1, 0.3, 0.1]) == [C, C, C, S]
    demote = StopRule(threshold=0.9, hopeless_threshold=0.2, hopeless_after=2, hopeless_action="demote")
    assert decisions(demote, [0.1, 0.1, 0.1, 0.95]) == [C, D, C, S]


def test_stop_reasons() -> None:
    allocator = Allocator(AllocatorConfig({"sc": StopRule(threshold=0.5, hopeless_threshold=0.1)}))
    stats = QueryStats("q", 0.0, steps=1)
    assert allocator.decide(SC, stats, Certainty(0.6, "x"), now=0).reason is ExitReason.CONFIDENT
    assert allocator.decide(SC, stats, Certainty(0.0, "x"), now=0).reason is ExitReason.HOPELESS


def test_deadline_guard() -> None:
    allocator = Allocator(AllocatorConfig({"sc": StopRule()}))
    stats = QueryStats("q", 0.0, deadline=10.0, steps=1)
    assert allocator.decide(SC, stats, Certainty(0.1, "x"), now=5.0, step_time=4.0).action is C
    late = allocator.decide(SC, stats, Certainty(0.1, "x"), now=7.0, step_time=4.0)
    assert (late.action, late.reason) == (S, ExitReason.DEADLINE)


def test_config_file_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "alloc.yaml"
    path.write_text(
        "sc:\n  measure: entropy\n  threshold: 0.8\n  min_step: 2\n  bound: hoeffding\ndefault:\n  threshold: 0.95\n"
    )
    config = AllocatorConfig.load(path)
    assert config.rule_for("sc") == StopRule("entropy", 0.8, 2, extra={"bound": "hoeffding"})
    assert config.rule_for("mcts").threshold == 0.95
    assert config.with_rule("sc", threshold=0.6).rule_for("sc").threshold == 0.6


@pytest.mark.parametrize(
    "text, message",
    [
        ("sc:\n  threshold: 1.5\n", "threshold must lie in"),
        ("sc:\n  min_step: 0\n", "min_step"),
        ("sc:\n  hopeless_action: panic\n", "hopeless_action"),
        ("sc: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "must be a mapping"),
    ],
)
def test_bad_configs_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        AllocatorConfig.load(path)


def test_bundled_defaults_load() -> None:
    assert AllocatorConfig.bundled().rule_for("sc").threshold is not None


def test_a_late_hopeless_query_stops_instead_of_being_demoted() -> None:
    allocator = Allocator(
        AllocatorConfig({"sc": StopRule(hopeless_threshold=0.5, hopeless_after=1, hopeless_action="demote")})
    )
    stats = QueryStats("q", 0.0, deadline=10.0, steps=1)
    on_time = allocator.decide(SC, stats, Certainty(0.1, "x"), now=1.0, step_time=1.0)
    late = allocator.decide(SC, stats, Certainty(0.1, "x"), now=9.5, step_time=1.0)
    assert on_time.action is D
    assert (late.action, late.reason) == (S, ExitReason.DEADLINE)


def test_a_query_s_own_rule_wins_over_its_algorithm_s() -> None:
    allocator = Allocator(AllocatorConfig({"sc": StopRule(threshold=0.9)}))
    stats = QueryStats("q", 0.0, steps=1)
    eager = Query("q", "sc", certaindex=StopRule(threshold=0.5))
    assert allocator.decide(eager, stats, Certainty(0.6, "x"), now=0).reason is ExitReason.CONFIDENT
    assert allocator.decide(SC, stats, Certainty(0.6, "x"), now=0).action is C


def test_the_presets_file_holds_the_stop_rules_and_the_effort_levels(tmp_path: Path) -> None:
    bundled = AllocatorConfig.bundled()
    levels = ["mild", "low", "mid", "high", "crazy"]
    assert list(bundled.effort) == levels
    thresholds = [bundled.effort_changes(level)["threshold"] for level in levels]
    assert thresholds == sorted(thresholds, reverse=True)  # mild stops least eagerly
    assert "effort" not in bundled.rules  # a section, not an algorithm
    path = tmp_path / "own.yaml"
    path.write_text("sc:\n  threshold: 0.8\neffort:\n  mid: {threshold: 0.6}\n")
    own = AllocatorConfig.load(path)
    assert own.effort_changes("mid") == {"threshold": 0.6}
    assert own.effort_changes("low") == bundled.effort_changes("low")  # levels it does not define
    with pytest.raises(ConfigError, match="unknown effort level"):
        own.effort_changes("turbo")
    path.write_text("effort:\n  mid: {threshold: 2}\n")
    with pytest.raises(ConfigError, match="effort level 'mid'"):
        AllocatorConfig.load(path)
