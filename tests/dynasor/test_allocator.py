"""Allocator decisions: the live rule is certaindex's stop rule, and configs load from one place each."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from algorithms.sc import agreement_certainty
from certaindex import CertaindexConfig, Certainty, StopRule, Trajectory, stop_index
from dynasor import ConfigError, ExitReason, Query
from dynasor.allocator import Action, Allocator, AllocatorConfig, rule_knobs
from dynasor.sched import QueryStats

SC = Query("q", "sc")
C, S, D = Action.CONTINUE, Action.STOP, Action.DEMOTE


def decisions(rule: StopRule, series: list[float], measure: str = "entropy", width: int = 1) -> list[Action]:
    """Decisions on a scalar series reported every ``width`` samples."""
    allocator = Allocator(AllocatorConfig({"sc": rule}))
    stats = QueryStats("q", arrival=0.0)
    out = []
    for value in series:
        stats.steps += 1
        stats.samples += width
        decision = allocator.decide(SC, stats, Certainty(value, measure), now=0.0)
        if decision.action is Action.DEMOTE:
            stats.demoted = True
        out.append(decision.action)
    return out


def test_stop_at_threshold_only_from_min_samples() -> None:
    rule = StopRule("entropy", 0.7, min_samples=3)
    assert decisions(rule, [0.9, 0.9, 0.9]) == [C, C, S]
    assert decisions(rule, [0.1, 0.5, 0.69, 0.7]) == [C, C, C, S]
    # Counted in samples, not reports: with two samples a report, the second report has 4.
    assert decisions(rule, [0.9, 0.9], width=2) == [C, S]


def test_no_threshold_never_stops() -> None:
    assert decisions(StopRule(), [1.0] * 5) == [C] * 5


def test_reports_of_another_measure_do_not_trigger() -> None:
    rule = StopRule("entropy", 0.5)
    assert decisions(rule, [1.0, 1.0], measure="reward") == [C, C]


def test_hopeless_stop_and_demote() -> None:
    stop = StopRule("entropy", 0.9, hopeless_threshold=0.2, hopeless_after=3)
    assert decisions(stop, [0.1, 0.1, 0.1]) == [C, C, S]
    assert decisions(stop, [0.1, 0.1, 0.3, 0.1]) == [C, C, C, S]
    demote = StopRule("entropy", 0.9, hopeless_threshold=0.2, hopeless_after=2, hopeless_action="demote")
    assert decisions(demote, [0.1, 0.1, 0.1, 0.95]) == [C, D, C, S]


def test_stop_reasons() -> None:
    allocator = Allocator(AllocatorConfig({"sc": StopRule("x", 0.5, hopeless_threshold=0.1)}))
    stats = QueryStats("q", 0.0, steps=1, samples=1)
    assert allocator.decide(SC, stats, Certainty(0.6, "x"), now=0).reason is ExitReason.CONFIDENT
    assert allocator.decide(SC, stats, Certainty(0.0, "x"), now=0).reason is ExitReason.HOPELESS


def test_deadline_guard() -> None:
    allocator = Allocator(AllocatorConfig({"sc": StopRule()}))
    stats = QueryStats("q", 0.0, deadline=10.0, steps=1)
    assert allocator.decide(SC, stats, Certainty(0.1, "x"), now=5.0, step_time=4.0).action is C
    late = allocator.decide(SC, stats, Certainty(0.1, "x"), now=7.0, step_time=4.0)
    assert (late.action, late.reason) == (S, ExitReason.DEADLINE)


def test_a_late_hopeless_query_stops_instead_of_being_demoted() -> None:
    rule = StopRule("x", None, hopeless_threshold=0.5, hopeless_after=1, hopeless_action="demote")
    allocator = Allocator(AllocatorConfig({"sc": rule}))
    stats = QueryStats("q", 0.0, deadline=10.0, steps=1, samples=1)
    on_time = allocator.decide(SC, stats, Certainty(0.1, "x"), now=1.0, step_time=1.0)
    late = allocator.decide(SC, stats, Certainty(0.1, "x"), now=9.5, step_time=1.0)
    assert on_time.action is D
    assert (late.action, late.reason) == (S, ExitReason.DEADLINE)


def test_a_query_s_own_rule_wins_over_its_algorithm_s() -> None:
    allocator = Allocator(AllocatorConfig({"sc": StopRule("x", 0.9)}))
    stats = QueryStats("q", 0.0, steps=1, samples=1)
    eager = Query("q", "sc", certaindex=StopRule("x", 0.5))
    assert allocator.decide(eager, stats, Certainty(0.6, "x"), now=0).reason is ExitReason.CONFIDENT
    assert allocator.decide(SC, stats, Certainty(0.6, "x"), now=0).action is C


# -- the live decision is certaindex.stop_index on the same samples --------------------------------


def live_stop(
    rule: StopRule, labels: list[int | None], width: int, reported: str = "entropy", budget: int | None = None
) -> int | None:
    """Samples at which the allocator stops a query reporting ``labels`` ``width`` at a time (None: never)."""
    allocator = Allocator(AllocatorConfig({"sc": rule}))
    stats = QueryStats("q", 0.0, max_samples=budget)
    for end in range(width, len(labels) + 1, width):
        stats.steps += 1
        stats.samples = end
        # The program reports some measure of its own; the labels decide.
        decision = allocator.decide(SC, stats, agreement_certainty(labels[:end], reported), now=0.0)
        if decision.stop:
            return end
    return None


RULES = st.builds(
    StopRule,
    st.sampled_from(["entropy", "majority", "beta", "esc"]),
    st.floats(0.3, 1.0),
    min_samples=st.integers(1, 6),
    round_size=st.sampled_from([1, 2, 3]),
    abstentions=st.sampled_from(["ignore", "class", "distinct"]),
)


@settings(max_examples=150, deadline=None)
@given(rule=RULES, labels=st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=2, max_size=12))
def test_the_live_decision_is_the_replayed_one(rule: StopRule, labels: list[int | None]) -> None:
    """A program checking every ``round_size`` samples stops exactly where replay's stop_index does."""
    # The full budget is one sample past the labels, so every check on them is a real check.
    width = rule.round_size
    labels = labels[: len(labels) - len(labels) % width] or labels[:width]
    full = Trajectory.from_labels([*labels, None])
    stop = stop_index(rule, full)
    replayed = int(full.samples[stop.index]) if stop.reason == "confident" else None
    assert live_stop(rule, labels, width) == replayed


def test_the_budget_s_last_check_is_the_budget_not_a_stop() -> None:
    """As in replay: at the budget's end a query ends for its budget, not as hopeless or confident."""
    rule = StopRule("majority", 1.0, min_samples=2, hopeless_threshold=0.5, hopeless_after=4)
    spread = [0, 1, 2, 3]
    assert live_stop(rule, spread, 1) == 4  # a running query with 4 samples and no agreement: hopeless
    assert live_stop(rule, spread, 1, budget=4) is None  # its budget is 4: it simply ends there
    full = stop_index(rule, Trajectory.from_labels(spread))
    assert full.reason == "budget"


def test_labels_decide_whatever_measure_the_program_reports() -> None:
    rule = StopRule("majority", 0.8, min_samples=4, abstentions="ignore")
    # The three answered samples agree: 1.0 over the answered ones, 0.75 with the abstention apart.
    labels = [0, None, 0, 0]
    assert live_stop(rule, labels, 1, reported="entropy") == 4
    assert live_stop(rule.with_changes(abstentions="distinct"), labels, 1, reported="beta") is None


def test_rule_knobs_make_sc_check_where_the_rule_checks() -> None:
    rule = StopRule("esc", 1.0, min_samples=5, round_size=5, abstentions="distinct")
    assert rule_knobs("sc", rule) == {"samples_per_round": 5, "measure": "esc", "abstentions": "distinct"}
    assert rule_knobs("sc", StopRule("reward_max", 0.9)) == {}
    assert rule_knobs("cot", StopRule("probe", 1.0)) == {}


# -- configs ----------------------------------------------------------------------------------------


def test_a_certaindex_config_file_is_an_allocator_config(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nsc:\n  measure: majority\n  threshold: 0.8\n  min_samples: 4\n  round_size: 2\n"
        "  certification: {bound: 0.01, confidence: 0.95, method: ltt-paired, data: x (700), queries: 700}\n"
        "default:\n  measure: beta\n  threshold: 0.95\ndeadline_guard: false\n"
    )
    config = AllocatorConfig.load(path)
    assert (config.rule_for("sc").min_samples, config.rule_for("sc").round_size) == (4, 2)
    assert config.rule_for("mcts").threshold == 0.95 and config.deadline_guard is False
    changed = config.with_rule("sc", threshold=0.6).rule_for("sc")
    # A changed rule no longer carries the promise made for the rule it came from.
    assert changed.threshold == 0.6 and changed.certification is None
    assert config.rule_for("sc").certification is not None


@pytest.mark.parametrize(
    "text, message",
    [
        ("sc:\n  measure: entropy\n  threshold: 1.5\n", "threshold must lie in"),
        ("sc:\n  measure: entropy\n  min_step: 2\n", "unknown field.*min_step"),
        ("sc:\n  measure: reward_mean\n  threshold: 0.5\n", "sc cannot produce measure 'reward_mean'"),
        ("sc:\n  hopeless_action: panic\n", "hopeless_action"),
        ("sc: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("deadline_guard: maybe\n", "deadline_guard"),
    ],
)
def test_bad_configs_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        AllocatorConfig.load(path)


def test_changing_a_rule_checks_the_change() -> None:
    config = AllocatorConfig.bundled()
    with pytest.raises(ConfigError, match="min_step"):
        config.with_rule("sc", min_step=2)
    with pytest.raises(ConfigError, match="cannot produce"):
        config.with_rule("sc", measure="reward_max")
    loose = config.with_rule("sc", threshold=0.0).rule_for("sc")  # the hopeless exit follows it down
    assert loose.hopeless_threshold is None or loose.hopeless_threshold <= 0.0


def test_sc_s_shipped_rule_is_the_certaindex_config_s() -> None:
    """One place for each threshold: sc's calibrated rule in the Certaindex config, the rest in the presets."""
    bundled = AllocatorConfig.bundled()
    calibrated = CertaindexConfig.bundled()
    assert bundled.rule_for("sc") == calibrated.rule_for("sc")
    assert bundled.rule_for("sc").certification is not None
    presets = yaml.safe_load(Path("dynasor/data/presets.yaml").read_text())
    assert "sc" not in presets  # no second copy of sc's thresholds
    for algorithm in ("cot", "mcts", "rebase", "bon"):
        assert bundled.rule_for(algorithm).threshold is not None


def test_the_presets_file_holds_the_effort_levels(tmp_path: Path) -> None:
    bundled = AllocatorConfig.bundled()
    levels = ["mild", "low", "mid", "high", "crazy"]
    assert list(bundled.effort) == levels
    thresholds = [bundled.effort_changes(level)["threshold"] for level in levels]
    assert thresholds == sorted(thresholds, reverse=True)  # mild stops least eagerly
    windows = [bundled.knobs_for_effort("cot", level)["window"] for level in levels]  # type: ignore[index]
    assert windows == sorted(windows, reverse=True)
    assert bundled.knobs_for_effort("sc", "mid") is None  # sc's levels are stop-rule fields
    assert "effort" not in bundled.rules  # a section, not an algorithm
    path = tmp_path / "own.yaml"
    path.write_text("sc:\n  measure: entropy\n  threshold: 0.8\neffort:\n  mid: {threshold: 0.6}\n")
    own = AllocatorConfig.load(path)
    assert own.effort_changes("mid") == {"threshold": 0.6}
    assert own.effort_changes("low") == bundled.effort_changes("low")  # levels it does not define
    with pytest.raises(ConfigError, match="unknown effort level"):
        own.effort_changes("turbo")
    path.write_text("effort:\n  mid: {threshold: 2}\n")
    with pytest.raises(ConfigError, match="effort level 'mid'"):
        AllocatorConfig.load(path)


def test_a_worst_case_cap_waits_according_to_the_query_budget() -> None:
    """The shipped kind of rule: it needs the budget to know how long to wait, and gets it live."""
    rule = StopRule("majority", 0.8, min_samples=2, abstentions="distinct", max_risk=0.005)
    allocator = Allocator(AllocatorConfig({"sc": rule}))
    for budget in (8, 30):
        need = rule.min_samples_at(budget)
        stops = []
        for samples in range(1, budget + 1):
            stats = QueryStats("q", 0.0, steps=samples, samples=samples, max_samples=budget)
            labels = [0] * samples  # unanimous from the first sample
            decision = allocator.decide(SC, stats, Certainty(1.0, "majority", {"labels": labels}), now=0.0)
            stops.append(decision.action is S)
        assert stops.index(True) + 1 == need
    assert rule.min_samples_at(30) > rule.min_samples_at(8) > 2  # a larger budget is harder to match early


def test_a_request_override_keeps_or_drops_the_configured_cap() -> None:
    from dynasor._presets import changed_rule

    base = StopRule("majority", 0.8, min_samples=2, abstentions="distinct", max_risk=0.005)
    assert changed_rule(base, {"min_samples": 3}, algorithm="sc").max_risk == 0.005
    loosened = changed_rule(base, {"threshold": 0.0, "min_samples": 1}, algorithm="sc")
    assert loosened.max_risk is None and loosened.threshold == 0.0
    with pytest.raises(ConfigError, match="max_risk"):
        changed_rule(base, {"threshold": 0.3, "max_risk": 0.01}, algorithm="sc")
