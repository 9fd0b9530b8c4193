"""Summary figures: stop rule replay on trajectories, sweep, Pareto front, oracle."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from eval import SweepPoint, best_within, crossfit, oracle, pareto_front, profile_records, stop_index, summarize, sweep


def _record(qid: str, values: list[float], right: list[bool], per_step: int = 100) -> dict[str, Any]:
    traj = [
        {
            "step": i + 1,
            "samples": 2 * (i + 1),
            "tokens": per_step * (i + 1),
            "measure": "entropy",
            "value": v,
            "answer": "x",
            "correct": c,
        }
        for i, (v, c) in enumerate(zip(values, right, strict=True))
    ]
    fixed = {
        "correct": right[-1],
        "tokens": per_step * len(values),
        "samples": 2 * len(values),
        "latency": 1.0,
        "exit_reason": "budget",
        "trajectory": traj,
    }
    return {
        "id": qid,
        "correct": right[-1],
        "tokens": fixed["tokens"],
        "samples": fixed["samples"],
        "latency": 1.0,
        "exit_reason": "budget",
        "trajectory": traj,
        "baseline": fixed,
    }


RECORDS = [
    _record("easy", [1.0, 1.0, 1.0, 1.0], [True, True, True, True]),
    _record("late", [0.0, 0.3, 0.8, 1.0], [False, False, True, True]),
    _record("flip", [1.0, 0.5, 0.4, 0.6], [True, False, False, False]),
]


def test_stop_index_never_before_min_step() -> None:
    traj = RECORDS[0]["trajectory"]
    assert [stop_index(traj, m, 0.5) for m in (1, 2, 3, 4, 5)] == [0, 1, 2, 3, 3]


def test_sweep_matches_hand_computation() -> None:
    points = {(p.min_step, p.threshold): p for p in sweep(RECORDS, thresholds=[0.7, 1.01], min_steps=[1, 2])}
    # (1, 0.7): easy stops at 1 (right, 100), late at 3 (right, 300), flip at 1 (right, 100).
    p = points[(1, 0.7)]
    assert p.accuracy == 1.0 and p.tokens_mean == 500 / 3
    assert abs(p.saving - (1 - 500 / 1200)) < 1e-12
    # (2, 0.7): easy 2 (200, right), late 3 (300, right), flip never -> end (400, wrong).
    assert points[(2, 0.7)].accuracy == 2 / 3 and points[(2, 0.7)].tokens_mean == 300
    # A threshold above 1 never stops early: the fixed budget.
    assert points[(1, 1.01)].saving == 0.0 and points[(1, 1.01)].accuracy == 2 / 3


def test_oracle_stops_at_first_right_report() -> None:
    result = oracle(RECORDS)
    assert result is not None
    assert result["accuracy"] == 1.0
    assert result["tokens_mean"] == (100 + 300 + 100) / 3


def test_best_within_respects_the_loss_bound() -> None:
    points = [
        SweepPoint(1, 0.5, 0.90, 100, 0.9),
        SweepPoint(1, 0.7, 0.948, 300, 0.7),
        SweepPoint(1, 0.9, 0.95, 900, 0.1),
    ]
    assert best_within(points, 0.95, 0.5).threshold == 0.7  # 0.90 is 5 points down
    assert best_within(points, 0.95, 10).threshold == 0.5
    assert best_within(points, 0.99, 0.5) is None


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(1, 1000)), min_size=1, max_size=30))
def test_pareto_front_is_non_dominated_and_covers(pairs: list[tuple[float, float]]) -> None:
    points = [SweepPoint(1, 0.5, acc, tok, 0.0) for acc, tok in pairs]
    front = pareto_front(points)
    for f in front:
        assert not any(p.accuracy > f.accuracy and p.tokens_mean <= f.tokens_mean for p in points)
    for p in points:  # every point is matched or beaten by a front point
        assert any(f.accuracy >= p.accuracy and f.tokens_mean <= p.tokens_mean for f in front)


def test_summary_reports_saving_and_label() -> None:
    early = [dict(r, tokens=r["trajectory"][0]["tokens"], correct=r["trajectory"][0]["correct"]) for r in RECORDS]
    summary = summarize(early, run={"backend": {"kind": "replay", "label": "t"}, "config": {}})
    assert summary["label"] == "replay"
    assert summary["saving"]["tokens"] == 1 - 300 / 1200
    assert summary["saving"]["accuracy_delta_points"] == 100 * (2 / 3 - 2 / 3)
    assert "exact" in summary["comparison"]
    assert summary["best_within_0.5pt"]["accuracy"] >= summary["fixed_budget"]["accuracy"] - 0.005


def test_profile_records_cover_every_report() -> None:
    rows = profile_records(RECORDS, "sc", dataset="toy")
    assert len(rows) == 12
    assert rows[0].certaindex == {"entropy": 1.0} and rows[0].final_correct is True
    assert [r.step for r in rows[4:8]] == [1, 2, 3, 4] and rows[6].correct and not rows[5].correct


def test_profile_records_need_the_full_budget_run() -> None:
    early_only = [{k: v for k, v in r.items() if k != "baseline"} for r in RECORDS]
    assert profile_records(early_only, "sc") == []


def test_crossfit_scores_each_query_with_a_rule_chosen_without_it() -> None:
    assert crossfit(RECORDS) is None  # too few queries for 5 folds
    easy = [_record(f"e{i}", [1.0, 1.0, 1.0, 1.0], [True] * 4) for i in range(10)]
    result = crossfit(easy, folds=5)
    assert result is not None
    assert result["accuracy_delta_points"] == 0.0 and result["saving"] == 0.75
    assert all(rule["min_step"] == 1 for rule in result["rules"])
    # A query that is only ever right at its last step cannot be stopped early for free.
    late = easy + [_record(f"l{i}", [1.0, 1.0, 1.0, 1.0], [False, False, False, True]) for i in range(10)]
    held = crossfit(late, folds=5)
    assert (held is not None and held["accuracy_delta_points"] < 0) or held["saving"] == 0.0
