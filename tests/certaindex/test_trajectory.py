"""Trajectories, abstention treatments and the one stop function, against slow reference oracles."""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certaindex import (
    ABSTENTIONS,
    Equivalence,
    StopRule,
    Trajectory,
    TrajectoryBatch,
    beta_stop,
    esc_window,
    final_answer_oracle,
    first_correct_oracle,
    majority_fraction,
    normalized_entropy,
    read_traces,
    records_from_trace,
    replay,
    stop_index,
    stop_indices,
    trajectories_from_traces,
    treat_abstentions,
)
from tests.certaindex.strategies import labels as label_lists

SLOW = {
    "entropy": lambda labs, w: normalized_entropy(labs).value,
    "majority": lambda labs, w: majority_fraction(labs).value,
    "beta": lambda labs, w: beta_stop(labs).value,
    "esc": lambda labs, w: esc_window(labs, w).value,
}


def slow_values(labels: Sequence[Hashable | None], measure: str, mode: str, window: int = 1) -> list[float]:
    """The measure after each sample count, by the definition: treat, then measure the prefix."""
    out = []
    for s in range(1, len(labels) + 1):
        treated = treat_abstentions(labels[:s], mode)
        out.append(SLOW[measure](treated, window) if treated else 0.0)
    return out


@given(label_lists.filter(bool), st.sampled_from(sorted(SLOW)), st.sampled_from(ABSTENTIONS), st.integers(1, 5))
@example([None, None, 1], "entropy", "class", 1)
@example([None, 0, None, 0], "esc", "ignore", 2)
def test_values_match_the_definition(labels: list[int | None], measure: str, mode: str, window: int) -> None:
    t = Trajectory.from_labels(labels)
    key = f"esc{window}/{mode}" if measure == "esc" else f"{measure}/{mode}"
    fast = t.values[key]
    assert fast == pytest.approx(slow_values(labels, measure, mode, window), abs=1e-9)
    assert np.all((fast >= 0) & (fast <= 1))


@given(label_lists.filter(bool), st.sampled_from(ABSTENTIONS))
def test_relabelling_changes_nothing(labels: list[int | None], mode: str) -> None:
    renamed = [None if x is None else f"answer-{(x * 7) % 5}" for x in labels]
    a, b = Trajectory.from_labels(labels), Trajectory.from_labels(renamed)
    for measure in ("entropy", "majority", "beta"):
        assert a.values[f"{measure}/{mode}"] == pytest.approx(b.values[f"{measure}/{mode}"])
    assert np.array_equal(a.leaders, b.leaders)


def test_abstention_treatments_differ_as_documented() -> None:
    labels = ["7", None, None, None, "7"]
    t = Trajectory.from_labels(labels)
    # ignore: two answered samples, both "7": unanimous.
    assert t.values["entropy/ignore"][-1] == pytest.approx(1.0)
    # class: {7: 2, none: 3}; distinct: {7: 2, 1, 1, 1}: less certain still.
    assert 0 < t.values["entropy/distinct"][-1] < t.values["entropy/class"][-1] < 1
    assert t.values["majority/class"][-1] == pytest.approx(3 / 5)
    assert t.values["majority/distinct"][-1] == pytest.approx(2 / 5)
    # Before any answer, "ignore" has nothing to be certain of.
    assert t.values["beta/ignore"][0] == pytest.approx(beta_stop(["7"]).value)
    assert Trajectory.from_labels([None, "a"]).values["majority/ignore"][0] == 0.0
    with pytest.raises(ValueError, match="abstentions must be one of"):
        treat_abstentions(labels, "skip")


def test_answer_and_correctness_follow_the_answered_majority() -> None:
    t = Trajectory.from_labels([None, "b", "a", "a", "b", "b"], correct=[False, False, True, True, False, False])
    assert t.leaders is not None and t.correct is not None
    assert t.leaders.tolist() == [-1, 0, 0, 1, 0, 0]  # "a" leads 2-1; at 2-2 the answer seen first
    assert t.correct.tolist() == [False, False, False, True, False, False]
    assert t.tokens is None
    with pytest.raises(ValueError, match="correctness flags"):
        Trajectory.from_labels(["a"], correct=[True, False])


def _trajectory(values: Sequence[float], complete: bool = True) -> Trajectory:
    n = len(values)
    return Trajectory(
        samples=np.arange(1, n + 1),
        values={"majority/class": np.asarray(values, dtype=float)},
        correct=np.ones(n, dtype=bool),
        tokens=np.arange(1, n + 1) * 10,
        complete=complete,
    )


def reference_stop(rule: StopRule, values: Sequence[float], complete: bool = True) -> tuple[int, str]:
    """The rule as its docstring states it, one check at a time."""
    last = len(values) - 1
    for i, v in enumerate(values):
        s = i + 1
        if i == last and complete:
            return i, "budget"
        if s % rule.round_size:
            continue
        if rule.threshold is not None and s >= rule.min_samples and v >= rule.threshold:
            return i, "confident"
        if rule.hopeless_threshold is not None and s >= rule.hopeless_after and v < rule.hopeless_threshold:
            return i, "hopeless"
    return last, "continue"


stop_rules = st.builds(
    StopRule,
    measure=st.just("majority"),
    threshold=st.one_of(st.none(), st.sampled_from([0.5, 0.7, 0.9, 1.0])),
    min_samples=st.integers(1, 8),
    round_size=st.integers(1, 4),
    hopeless_threshold=st.one_of(st.none(), st.sampled_from([0.0, 0.2, 0.4])),
    hopeless_after=st.integers(1, 8),
)
value_lists = st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.6, 0.8, 0.95, 1.0]), min_size=1, max_size=12)


@given(stop_rules, st.lists(value_lists, min_size=1, max_size=6), st.booleans())
def test_batch_and_single_agree_with_the_reference(rule: StopRule, rows: list[list[float]], complete: bool) -> None:
    trajectories = [_trajectory(v, complete) for v in rows]
    index, reason = stop_indices(rule, TrajectoryBatch(trajectories))
    names = ("confident", "hopeless", "budget", "continue")
    for t, v, i, r in zip(trajectories, rows, index, reason, strict=True):
        expected = reference_stop(rule, v, complete)
        assert (int(i), names[int(r)]) == expected
        single = stop_index(rule, t)
        assert (single.index, single.reason) == expected


def test_minimum_counts_samples_not_rounds() -> None:
    t = _trajectory([1.0] * 8)
    assert stop_index(StopRule("majority", 1.0, min_samples=3, round_size=2), t).index == 3  # 4 samples
    assert stop_index(StopRule("majority", 1.0, min_samples=3, round_size=1), t).index == 2  # 3 samples
    assert stop_index(StopRule("majority", 1.0, min_samples=8), t).reason == "budget"


def test_hopeless_exit_and_running_trajectories() -> None:
    rule = StopRule("majority", 0.9, min_samples=2, hopeless_threshold=0.3, hopeless_after=3)
    assert stop_index(rule, _trajectory([0.1, 0.1, 0.1, 0.1])).reason == "hopeless"
    assert stop_index(rule, _trajectory([0.1, 0.1, 0.1, 0.1])).index == 2
    running = _trajectory([0.5, 0.5], complete=False)
    assert stop_index(rule, running).reason == "continue"
    assert stop_index(rule, _trajectory([0.5, 0.95], complete=False)).reason == "confident"
    # A complete trajectory's last check is its budget, whatever the value there.
    assert stop_index(rule, _trajectory([0.5, 0.95])).reason == "budget"


def test_a_trajectory_without_the_rules_measure_is_an_error() -> None:
    with pytest.raises(KeyError, match="no values for 'beta/class'"):
        stop_index(StopRule("beta", 0.9), _trajectory([0.5, 0.5]))


def test_replay_counts_harms_helps_and_cost() -> None:
    # q1: right early, right at the end. q2: right early only (a help). q3: wrong early only (a harm).
    trajectories = [
        Trajectory.from_labels(["a", "a", "a", "a"], correct=[True] * 4, tokens=[5] * 4),
        Trajectory.from_labels(["a", "a", "b", "b", "b"], correct=[True, True, False, False, False], tokens=[5] * 5),
        Trajectory.from_labels(["b", "b", "a", "a", "a"], correct=[False, False, True, True, True], tokens=[5] * 5),
    ]
    o = replay(StopRule("majority", 1.0, min_samples=2), trajectories)
    assert (o.n, o.harms, o.helps, o.correct, o.full_correct) == (3, 1, 1, 2, 2)
    assert (o.samples, o.full_samples) == (6, 14)
    assert o.samples_saved == pytest.approx(1 - 6 / 14)
    assert o.tokens == 30 and o.loss == 0.0 and o.confident == 3
    full = replay(StopRule(), trajectories)
    assert full.samples_saved == 0.0 and full.harms == full.helps == 0
    with pytest.raises(ValueError, match="complete trajectories"):
        replay(StopRule(), [_trajectory([1.0], complete=False)])


def test_the_two_oracles_are_different_things() -> None:
    t = Trajectory.from_labels(["b", "a", "a", "b", "b"], correct=[False, True, True, False, False])
    same = final_answer_oracle([t])
    first_right = first_correct_oracle([t])
    assert same.samples == 1 and same.loss == 0.0  # "b" leads at once and is the final answer
    assert first_right.samples == 3 and first_right.helps == 1  # "a" leads after 3 samples, and is right


@given(stop_rules, value_lists, st.sampled_from([0.5, 0.7, 0.9, 1.0]))
def test_a_looser_threshold_never_stops_later(rule: StopRule, values: list[float], looser: float) -> None:
    if rule.threshold is None or looser > rule.threshold:
        return
    t = _trajectory(values)
    strict = stop_index(rule, t)
    loose = stop_index(rule.with_changes(threshold=looser, hopeless_threshold=None), t)
    plain = stop_index(rule.with_changes(hopeless_threshold=None), t)
    assert loose.index <= plain.index
    assert strict.index <= plain.index  # a hopeless exit only ever stops earlier


def test_trajectories_agree_with_the_profiling_records_on_the_bundled_math_set() -> None:
    path = Path(__file__).resolve().parents[2] / "dynasor" / "data" / "traces" / "math-qwen25.jsonl"
    eq = Equivalence(symbolic=False)
    traces = read_traces(path)
    trajectories = trajectories_from_traces(traces, equivalence=eq)
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for t, line in zip(trajectories, raw, strict=True):
        records = records_from_trace(line, equivalence=eq)
        assert t.correct is not None
        assert t.correct.tolist() == [r.correct for r in records]
        assert t.values["entropy/distinct"] == pytest.approx([r.certaindex["entropy"] for r in records])
