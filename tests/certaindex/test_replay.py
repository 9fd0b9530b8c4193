"""Profiling records from recorded traces."""

from __future__ import annotations

import pytest

from certaindex import Equivalence, RewardScale, approx_tokens, records_from_trace

CHEAP = Equivalence(symbolic=False)


def _trace() -> dict:
    answers = ["1/2", "0.5", "3", "\\frac{1}{2}", None, "3"]
    return {
        "id": "q",
        "reference": "0.5",
        "samples": [
            {"text": f"t{i}", "answer": a, "tokens": 10 + i, "score": [float(i)]} for i, a in enumerate(answers)
        ],
    }


def test_rounds_tokens_and_answers() -> None:
    recs = records_from_trace(_trace(), round_size=2, equivalence=CHEAP, reward_scale=RewardScale("identity"))
    assert [r.step for r in recs] == [1, 2, 3]
    assert [r.samples for r in recs] == [2, 4, 6]
    assert [r.tokens for r in recs] == [21, 21 + 25, 21 + 25 + 29]
    assert [r.answer for r in recs] == ["1/2", "1/2", "1/2"]  # the cluster's first sample
    assert all(r.correct and r.final_correct for r in recs)  # correct from the reference
    assert recs[0].certaindex["entropy"] == pytest.approx(1.0)  # 1/2 and 0.5 agree
    assert recs[0].certaindex["reward_max"] == 1.0
    assert set(recs[0].certaindex) == {"entropy", "majority", "beta", "dirichlet", "esc", "reward_mean", "reward_max"}
    assert all(r.tokens_exact for r in recs)


def test_last_round_may_be_short_and_budget_caps() -> None:
    assert [r.samples for r in records_from_trace(_trace(), round_size=4, equivalence=CHEAP)] == [4, 6]
    assert [r.samples for r in records_from_trace(_trace(), max_samples=3, equivalence=CHEAP)] == [1, 2, 3]


def test_correct_field_wins_and_extraction_fills_missing_answers() -> None:
    trace = {
        "id": "q",
        "samples": [
            {"text": "so \\boxed{7}", "correct": False},
            {"text": "thus \\boxed{7}", "correct": False},
            {"text": "the answer is 8", "correct": True},
        ],
    }
    recs = records_from_trace(trace, equivalence=CHEAP)
    assert [r.answer for r in recs] == ["7", "7", "7"]
    assert not recs[-1].final_correct
    assert recs[0].tokens == approx_tokens("so \\boxed{7}")
    assert not recs[0].tokens_exact  # approximated from the text
    assert "reward_mean" not in recs[0].certaindex


def test_tokens_exact_override_and_flag() -> None:
    assert not records_from_trace(_trace(), equivalence=CHEAP, tokens_exact=False)[0].tokens_exact
    assert not records_from_trace({**_trace(), "tokens_approx": True}, equivalence=CHEAP)[0].tokens_exact


def test_errors_and_empty() -> None:
    assert records_from_trace({"id": "q", "samples": []}, equivalence=CHEAP) == []
    with pytest.raises(ValueError, match="round_size"):
        records_from_trace(_trace(), round_size=0, equivalence=CHEAP)
