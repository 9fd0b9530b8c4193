"""Summary figures: certaindex's replay on the fixed arm's samples, the sweep, the two oracles, savings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import certaindex as cx
from certaindex import StopRule
from eval import (
    SweepPoint,
    best_within,
    calibration_traces,
    crossfit,
    fixed_trajectories,
    oracles,
    pareto_front,
    profile_records,
    summarize,
    sweep,
)

RIGHT = {0: True}  # cluster 0 is the right answer in every crafted query


def _arm(labels: list[int | None], tokens: int = 100, exit_reason: str = "budget") -> dict[str, Any]:
    n = len(labels)
    correct = [label is not None and RIGHT.get(label, False) for label in labels]
    leader = cx.Trajectory.from_labels(labels, correct=correct)
    return {
        "correct": bool(leader.correct[-1]),  # type: ignore[index]
        "tokens": tokens * n,
        "samples": n,
        "latency": 1.0,
        "exit_reason": exit_reason,
        "trajectory": [],
        "sample_labels": labels,
        "sample_answers": [None if label is None else str(label) for label in labels],
        "sample_correct": correct,
        "sample_tokens": [tokens] * n,
        "sample_digests": [f"d{i}" for i in range(n)],
    }


def _record(qid: str, labels: list[int | None], early_samples: int | None = None) -> dict[str, Any]:
    fixed = _arm(labels)
    k = len(labels) if early_samples is None else early_samples
    early = _arm(labels[:k], exit_reason="budget" if k == len(labels) else "confident")
    return {"id": qid, "reference": "0", **early, "baseline": fixed}


RUN = {"backend": {"kind": "replay", "label": "t", "same_samples": True}, "config": {}}
# easy: right from the start; late: right only once 0 leads; flip: right at first, then wrong.
RECORDS = [_record("easy", [0, 0, 0, 0]), _record("late", [1, 0, 0, 0]), _record("flip", [0, 1, 1, 1])]
MAJORITY = StopRule("majority", 0.7, min_samples=1, round_size=1)


def test_sweep_matches_hand_computation() -> None:
    points = {(p.min_samples, p.threshold): p for p in sweep(fixed_trajectories(RECORDS, MAJORITY), MAJORITY)}
    # majority >= 0.7 from 1 sample: easy stops at 1 (right), late at 1 (1 leads: wrong),
    # flip at 1 (right). 3 samples of 12.
    p = points[(1, 0.7)]
    assert (p.accuracy, p.samples_mean, p.tokens_mean) == (2 / 3, 1.0, 100.0)
    assert p.samples_saving == pytest.approx(1 - 3 / 12) and p.saving == pytest.approx(1 - 3 / 12)
    # from 2 samples: easy at 2 (right); late: 1/2 at 2, 2/3 at 3, 3/4 at 4 = the budget (right);
    # flip: 1/2, 2/3, then the budget (1 leads: wrong).
    p = points[(2, 0.7)]
    assert p.accuracy == 2 / 3 and p.samples_mean == (2 + 4 + 4) / 3
    # Every check is swept (not only the first few). Unanimity from 2 samples stops only "easy" early.
    assert {m for m, _ in points} == {1, 2, 3, 4}
    assert points[(1, 1.0)].samples_mean == 1.0  # one sample is unanimous
    assert points[(2, 1.0)].samples_mean == (2 + 4 + 4) / 3


def test_the_sweep_follows_the_rule_s_rounds() -> None:
    rounds = MAJORITY.with_changes(round_size=2)
    points = sweep(fixed_trajectories(RECORDS, rounds), rounds)
    assert {p.min_samples for p in points} == {2, 4}
    assert all(p.samples_mean in (2.0, 8 / 3, 10 / 3, 4.0) for p in points)


def test_the_two_oracles_are_named_apart() -> None:
    # The budget answers 1 (wrong) on "flip"; the first-correct oracle stops it while 0 leads.
    found = oracles(fixed_trajectories(RECORDS, MAJORITY))
    first, final = found["first_correct_oracle"], found["final_answer_oracle"]
    # "late": 1 leads, then ties with 0 (a tie goes to the first seen, 1), and 0 leads from 3 samples.
    assert first["accuracy"] == 1.0 and first["samples_mean"] == (1 + 3 + 1) / 3
    # The final-answer oracle returns exactly what the budget returns: "late" needs 0 to lead (3 samples),
    # "flip" needs 1 to lead (3 samples).
    assert final["accuracy"] == final["fixed_accuracy"] == 2 / 3
    assert final["harms"] == final["helps"] == 0 and final["samples_mean"] == (1 + 3 + 3) / 3


def test_best_within_respects_the_loss_bound() -> None:
    points = [
        SweepPoint(1, 0.5, 0.90, 100, 1, 0.9, 0.9),
        SweepPoint(1, 0.7, 0.948, 300, 3, 0.7, 0.7),
        SweepPoint(1, 0.9, 0.95, 900, 7, 0.1, 0.1),
    ]
    assert best_within(points, 0.95, 0.5).threshold == 0.7  # type: ignore[union-attr]  # 0.90 is 5 points down
    assert best_within(points, 0.95, 10).threshold == 0.5  # type: ignore[union-attr]
    assert best_within(points, 0.99, 0.5) is None


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(1, 1000)), min_size=1, max_size=30))
def test_pareto_front_is_non_dominated_and_covers(pairs: list[tuple[float, float]]) -> None:
    points = [SweepPoint(1, 0.5, acc, tok, 1.0, 0.0, 0.0) for acc, tok in pairs]
    front = pareto_front(points)
    for f in front:
        assert not any(p.accuracy > f.accuracy and p.tokens_mean <= f.tokens_mean for p in points)
    for p in points:  # every point is matched or beaten by a front point
        assert any(f.accuracy >= p.accuracy and f.tokens_mean <= p.tokens_mean for f in front)


def test_summary_on_the_same_samples() -> None:
    # Unanimity from 2 samples in rounds of 2 stops "easy" at 2; the others run to 4.
    early = [_record("easy", [0, 0, 0, 0], 2), _record("late", [1, 0, 0, 0]), _record("flip", [0, 1, 1, 1])]
    rule = StopRule("majority", 1.0, min_samples=2, round_size=2)
    summary = summarize(early, run=RUN, rule=rule)
    assert summary["label"] == "replay" and "exact" in summary["comparison"]
    assert summary["saving"]["tokens"] == summary["saving"]["samples"] == pytest.approx(1 - 10 / 12)
    same = summary["early_exit_on_fixed_samples"]  # the rule replayed: what the early arm did
    assert same["samples_mean"] == summary["early_exit"]["samples_mean"] == 10 / 3
    assert same["accuracy"] == summary["early_exit"]["accuracy"]
    assert summary["best_within_0.5pt"]["accuracy"] >= summary["fixed_budget"]["accuracy"] - 0.005
    assert summary["early_exit_rule"]["describe"].startswith("majority >= 1 from 2 samples")


def test_nothing_is_learned_when_both_arms_answer_nothing_right() -> None:
    wrong = [_record(f"q{i}", [1, 2, 1, 3]) for i in range(12)]
    summary = summarize(wrong, run=RUN, rule=MAJORITY)
    assert summary["fixed_budget"]["accuracy"] == 0.0
    assert summary["best_within_0.5pt"] is None and summary["best_within_0.5pt_crossfit"] is None
    assert "no rule" in summary["nothing_learned"]


def _live(qid: str, fixed_tokens: list[int], early_tokens: list[int], exit_reason: str) -> dict[str, Any]:
    """A real-engine record: the arms sampled independently (different texts, different lengths)."""
    fixed = _arm([0] * len(fixed_tokens))
    fixed.update(tokens=sum(fixed_tokens), sample_tokens=fixed_tokens, sample_digests=["f"] * len(fixed_tokens))
    early = _arm([0] * len(early_tokens), exit_reason=exit_reason)
    early.update(tokens=sum(early_tokens), sample_tokens=early_tokens, sample_digests=["e"] * len(early_tokens))
    return {"id": qid, **early, "baseline": fixed}


LIVE = {"backend": {"kind": "real engine", "label": "vllm", "same_samples": False}, "config": {}}


def test_a_live_run_never_credits_a_saving_early_exit_did_not_make() -> None:
    # Both arms drew 4 samples per query; the early arm's happened to be shorter.
    records = [_live(f"q{i}", [90, 90, 90, 90], [40, 50, 60, 70], "budget") for i in range(5)]
    summary = summarize(records, run=LIVE, rule=MAJORITY)
    assert summary["pairing"] == {"queries": 5, "paired": 0, "exact": False}
    assert summary["early_exit"]["samples_mean"] == summary["fixed_budget"]["samples_mean"] == 4
    assert summary["saving"]["tokens"] == 0.0 and summary["saving"]["samples"] == 0.0
    assert "paired on 0 of 5" in summary["comparison"]
    # A query early exit did stop saves the fixed arm's tokens beyond the samples it drew.
    stopped = [*records[:4], _live("s", [90, 90, 90, 90], [10, 20], "confident")]
    saving = summarize(stopped, run=LIVE, rule=MAJORITY)["saving"]
    assert saving["tokens"] == pytest.approx(180 / (5 * 360)) and saving["samples"] == pytest.approx(2 / 20)


def test_a_seeded_live_run_is_exact_when_every_query_is_paired() -> None:
    records = [_record(f"q{i}", [0, 0, 0, 0], 2) for i in range(3)]
    summary = summarize(records, run=LIVE, rule=MAJORITY)
    assert summary["pairing"]["exact"] and summary["comparison"].startswith("exact: per-sample seeds")
    assert summary["saving"]["tokens"] == pytest.approx(0.5)


def test_crossfit_scores_each_query_with_a_rule_chosen_without_it() -> None:
    assert crossfit(fixed_trajectories(RECORDS, MAJORITY), MAJORITY) is None  # too few queries for 5 folds
    easy = [_record(f"e{i}", [0, 0, 0, 0]) for i in range(10)]
    result = crossfit(fixed_trajectories(easy, MAJORITY), MAJORITY, folds=5)
    assert result is not None
    assert result["accuracy_delta_points"] == 0.0 and result["samples_saving"] == 0.75
    assert all(rule["min_samples"] == 1 for rule in result["rules"])


def test_calibration_traces_read_back_through_certaindex(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in calibration_traces(RECORDS)))
    back = cx.trajectories_from_traces(cx.read_traces(path))
    ours = fixed_trajectories(RECORDS, MAJORITY)
    assert [t.query_id for t in back] == ["easy", "late", "flip"]
    assert cx.replay(MAJORITY, back) == cx.replay(MAJORITY, ours)


def _reported(qid: str, values: list[float], right: list[bool]) -> dict[str, Any]:
    """A program without per-sample answers (a chain of thought): one point per report."""
    traj = [
        {"step": i + 1, "samples": 2 * (i + 1), "tokens": 100 * (i + 1), "measure": "probe", "value": v,
         "answer": "x" if c else "y", "correct": c}
        for i, (v, c) in enumerate(zip(values, right, strict=True))
    ]  # fmt: skip
    arm = {"correct": right[-1], "tokens": 100 * len(values), "samples": 2 * len(values), "latency": 1.0,
           "exit_reason": "budget", "trajectory": traj}  # fmt: skip
    return {"id": qid, **arm, "baseline": arm}


def test_reports_are_the_checks_of_programs_without_per_sample_answers() -> None:
    records = [_reported("a", [1.0, 1.0], [True, True]), _reported("b", [0.0, 1.0], [False, True])]
    probe = StopRule("probe", 1.0)
    trajectories = fixed_trajectories(records, probe)
    assert [list(t.samples) for t in trajectories] == [[2, 4], [2, 4]]
    o = cx.replay(probe, trajectories)
    assert (o.correct, o.samples, o.tokens) == (2, 2 + 4, 100 + 200)


def test_profile_records_cover_every_report() -> None:
    rows = profile_records([_reported("a", [0.5, 1.0], [False, True])], "cot", dataset="toy")
    assert len(rows) == 2 and rows[0].certaindex == {"probe": 0.5} and rows[1].final_correct is True
    early_only = [{k: v for k, v in _reported("a", [1.0], [True]).items() if k != "baseline"}]
    assert profile_records(early_only, "cot") == []
