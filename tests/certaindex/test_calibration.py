"""Calibration: the bound, the rule search, replay outcomes, the record format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from certaindex import (
    ProfilingRecord,
    calibrate,
    clopper_pearson_upper,
    evaluate_rule,
    group_queries,
    oracle_outcome,
    read_records,
    write_records,
)


@settings(deadline=None)  # the first call imports scipy.stats
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))), st.floats(0.01, 0.2))
def test_clopper_pearson_is_the_exact_binomial_bound(hn: tuple[int, int], delta: float) -> None:
    h, n = hn
    p = clopper_pearson_upper(h, n, delta)
    # At the bound, seeing h or fewer harms has probability exactly delta.
    assert stats.binom.cdf(h, n, p) == pytest.approx(delta, rel=1e-6)
    assert clopper_pearson_upper(h, n, delta / 2) >= p


def test_clopper_pearson_edges() -> None:
    assert clopper_pearson_upper(5, 5, 0.05) == 1.0
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100))


def _query(qid: str, values: list[float], correct: list[bool], tokens_per_step: int = 10) -> list[ProfilingRecord]:
    final = correct[-1]
    return [
        ProfilingRecord(qid, "sc", s, s, tokens_per_step * s, {"m": v}, f"ans-{c}", c, final)
        for s, (v, c) in enumerate(zip(values, correct, strict=True), 1)
    ]


def test_evaluate_rule_counts_harms_gains_and_tokens() -> None:
    queries = {
        "easy": _query("easy", [0.9, 0.9, 0.9], [True, True, True]),
        "trap": _query("trap", [0.9, 0.2, 0.2], [False, True, True]),  # early stop harms
        "lucky": _query("lucky", [0.9, 0.1, 0.1], [True, False, False]),  # early stop helps
        "slow": _query("slow", [0.1, 0.1, 0.1], [True, True, True]),  # never confident
    }
    o = evaluate_rule(queries, "m", 0.8, 1)
    assert (o.harms, o.gains, o.n) == (1, 1, 4)
    assert o.tokens == 10 + 10 + 10 + 30
    assert o.full_tokens == 120
    assert o.saving == pytest.approx(0.5)
    assert o.loss == 0.0
    # From step 2 on, only "easy" stops (at step 2).
    o2 = evaluate_rule(queries, "m", 0.8, 2)
    assert o2.tokens == 20 + 30 + 30 + 30
    assert (o2.harms, o2.gains) == (0, 0)


def test_oracle_stops_at_the_first_final_answer() -> None:
    steps = _query("q", [0, 0, 0, 0], [True, False, True, True])
    o = oracle_outcome({"q": steps})
    assert o.tokens == 10  # answer at step 1 ("ans-True") equals the final one
    assert o.loss == 0.0


def _population(n: int, harm_rate: float, seed: int = 0) -> dict[str, list[ProfilingRecord]]:
    """Queries where certaindex >= 0.5 at step 1 is right except with probability harm_rate."""
    rng = np.random.default_rng(seed)
    out = {}
    for q in range(n):
        early_ok = bool(rng.random() >= harm_rate)
        out[f"q{q}"] = _query(f"q{q}", [0.6, 0.8, 0.9, 1.0], [early_ok, True, True, True])
    return out


def test_calibration_certifies_a_safe_rule() -> None:
    choice = calibrate(_population(400, 0.0), algorithm="sc", target_loss=0.02)
    assert choice.measure == "m"
    assert choice.min_step == 1
    assert choice.outcome.saving == pytest.approx(0.75)
    assert choice.harm_bound <= 0.02


def test_calibration_refuses_a_harmful_rule() -> None:
    # Stopping at step 1 harms 10% of queries: with a 2-point target only later steps pass.
    choice = calibrate(_population(400, 0.10), algorithm="sc", target_loss=0.02)
    assert choice.measure is None or choice.min_step >= 2 or choice.threshold > 0.6
    assert choice.outcome.harms / choice.outcome.n <= 0.02


def test_too_few_queries_cannot_certify_a_tight_target() -> None:
    choice = calibrate(_population(30, 0.0), algorithm="sc", target_loss=0.005)
    assert choice.measure is None
    assert choice.outcome.saving == 0.0
    assert choice.floor > 0.005
    assert any("cannot certify" in note for note in choice.notes)
    # The point estimate has no such floor.
    loose = calibrate(_population(30, 0.0), algorithm="sc", target_loss=0.005, bound="none")
    assert loose.measure == "m"


def test_bonferroni_widens_with_more_chains() -> None:
    pop = _population(200, 0.0)
    one = calibrate(pop, algorithm="sc", target_loss=0.05, min_steps=[1])
    three = calibrate(pop, algorithm="sc", target_loss=0.05)
    assert one.chains == 1 and three.chains == 3
    assert one.floor < three.floor


def test_config_entry() -> None:
    entry = calibrate(_population(400, 0.0), algorithm="sc", target_loss=0.02).config()
    assert entry["measure"] == "m"
    assert entry["min_step"] == 1
    assert 0 <= entry["threshold"] <= 1
    assert "Clopper-Pearson" in entry["bound"]


def test_bad_arguments() -> None:
    pop = _population(10, 0.0)
    with pytest.raises(ValueError, match="confidence"):
        calibrate(pop, algorithm="sc", confidence=1.0)
    with pytest.raises(ValueError, match="target_loss"):
        calibrate(pop, algorithm="sc", target_loss=5.0)
    with pytest.raises(ValueError, match="no profiling records"):
        calibrate({}, algorithm="sc")


def test_records_round_trip(tmp_path: Path) -> None:
    recs = [r for q in _population(5, 0.2).values() for r in q]
    path = tmp_path / "records.jsonl"
    assert write_records(recs, path) == len(recs)
    assert read_records(path) == recs
    assert group_queries(read_records(path))["sc"]["q3"][-1].step == 4
    line = json.loads(path.read_text().splitlines()[0])
    assert set(line) >= {"query_id", "algorithm", "step", "samples", "tokens", "certaindex", "answer",
                         "correct", "final_correct"}  # fmt: skip


def test_record_missing_fields_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"query_id": "q", "step": 1}) + "\n")
    with pytest.raises(ValueError, match="lacks"):
        read_records(path)


def test_a_trace_line_given_as_records_says_how_to_replay_it(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps({"id": "q", "samples": [{"answer": "4"}]}) + "\n" + "{not json\n")
    with pytest.raises(ValueError, match=r":1: profiling record lacks .*--from-traces"):
        read_records(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r":1: not valid JSON"):
        read_records(path)


def test_point_estimate_never_reports_the_net_change_as_a_harm_rate_bound() -> None:
    # Helps outnumber harms: the net loss is negative, which is no harm rate.
    pop = {
        **{f"h{q}": _query(f"h{q}", [0.9, 0.1], [False, True]) for q in range(2)},
        **{f"g{q}": _query(f"g{q}", [0.9, 0.1], [True, False]) for q in range(8)},
        **{f"s{q}": _query(f"s{q}", [0.9, 0.9], [True, True]) for q in range(90)},
    }
    choice = calibrate(pop, algorithm="sc", target_loss=0.005, bound="none")
    assert choice.outcome.loss < 0
    assert choice.harm_bound == pytest.approx(choice.outcome.harms / choice.outcome.n) and choice.harm_bound >= 0
    assert choice.statement.startswith("no bound")
    assert not any("harm-rate bound" in line for line in choice.report_lines())
    bounded = calibrate(_population(400, 0.0), algorithm="sc", target_loss=0.02)
    assert "harm-rate bound" in bounded.statement


def test_a_threshold_above_one_is_the_fixed_budget() -> None:
    queries = {"q": _query("q", [0.9, 1.0, 1.0], [True, False, True])}
    assert evaluate_rule(queries, "m", 2.0).tokens == 30
    assert evaluate_rule(queries, "m", -1.0).tokens == 10
