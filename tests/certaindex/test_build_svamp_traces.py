"""Pieces of ``scripts/build_svamp_traces.py`` and the bundled ``svamp-codex`` traces it wrote."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "dynasor" / "data" / "traces" / "svamp-codex.jsonl"


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return load_script("build_svamp_traces")


def test_read_records_skips_the_demonstration_and_a_cut_off_tail(build: ModuleType) -> None:
    first = {"question": "q1", "passage": "p1", "executed": 1.0, "generated": ["ans = 1"], "answer": 1.0}
    text = (
        json.dumps({"demonstration": "few-shot prompt"}) + "\n" + json.dumps(first) + "\n" + '{"question": "q2", "gen'
    )
    assert build.read_records(text) == [first]


@pytest.mark.parametrize(
    ("outcome", "value"),
    [
        ("=51", 51.0),
        ("=2.3333333333333335", 2.3333333333333335),
        ("=-4", -4.0),
        ("=[3, 4]", 3.0),  # a list counts by its first element, as PoT reads it
        ("={'x': 2.5}", 2.5),  # a dict by its first value
        ("=True", 1.0),
        ("=[]", None),
        ("='abc'", None),
        ("=nan", None),
        ("=Symbol('x')", None),
        ("ENameError", None),  # the program set no ``ans``
        ("T", None),  # it ran into its alarm
        (None, None),  # it did not load
    ],
)
def test_value_of_sandbox_outcomes(build: ModuleType, outcome: str | None, value: float | None) -> None:
    assert build.value_of(outcome) == value


def test_number_key_is_canonical(build: ModuleType) -> None:
    assert build.number_key(17.0) == "17"
    assert build.number_key(0.5357142857142857) == "0.5357142857"
    assert build.number_key(0.1 + 0.2) == build.number_key(0.3)
    assert build.number_key(1e20) == "1e+20"


@pytest.mark.parametrize(
    ("value", "gold", "correct"),
    [
        (46.0, 46.0, True),
        (8.333333333, 8.33, True),  # rounded to the gold answer's two decimals
        (0.5357142857142857, 1.0, False),
        (22.0, 2.0, False),
        (None, 1.0, False),
    ],
)
def test_is_correct(build: ModuleType, value: float | None, gold: float, correct: bool) -> None:
    assert build.is_correct(value, gold) is correct


def test_sampling_order_is_a_seeded_permutation(build: ModuleType) -> None:
    order = build.sampling_order(30, 7)
    assert sorted(order) == list(range(30))
    assert order == build.sampling_order(30, 7)
    assert order != list(range(30))  # not the source's log-probability order
    assert order != build.sampling_order(30, 8)


def test_build_question_runs_each_distinct_program_once(build: ModuleType) -> None:
    programs = ["ans = 51", "ans = 51", "ans = -3", "broken", "ans = 'x'"]
    outcomes = {"ans = 51": "=51", "ans = -3": "=-3", "broken": None, "ans = 'x'": "='x'"}
    calls: list[str] = []

    def execute(program: str) -> str | None:
        calls.append(program)
        return outcomes[program]

    record = {"question": "Q?", "passage": "P.", "executed": 51.0, "generated": programs, "answer": 51.0}
    row = build.build_question(record, 3, execute)
    assert sorted(calls) == sorted(set(programs))
    assert row["id"] == "svamp-3" and row["reference"] == "51" and row["majority_matches_source"]
    by_rank = {s["logprob_rank"]: s for s in row["samples"]}
    assert [by_rank[i]["answer"] for i in range(5)] == ["51", "51", "-3", None, None]
    assert [by_rank[i]["correct"] for i in range(5)] == [True, True, False, False, False]
    assert all(by_rank[i]["text"] == programs[i] for i in range(5))
    assert [s["logprob_rank"] for s in row["samples"]] == build.sampling_order(5, 3)


def test_run_program_in_the_sandbox(build: ModuleType) -> None:
    assert build.run_program("original_price = 76\ndiscount = 25\nans = original_price - discount") == "=51"
    assert build.run_program("num_kids = \nans = ") is None
    assert build.run_program("x = 3") == "ENameError"


def test_summary_counts_majority_and_abstentions(build: ModuleType) -> None:
    rows = [
        {
            "samples": [
                {"answer": "1", "correct": True},
                {"answer": "1", "correct": True},
                {"answer": None, "correct": False},
            ]
        },
        {
            "samples": [
                {"answer": "2", "correct": False},
                {"answer": "2", "correct": False},
                {"answer": "3", "correct": True},
            ]
        },
    ]
    stats = build.summary(rows)
    assert stats["pass@1"] == pytest.approx(3 / 6)
    assert stats["majority"] == pytest.approx(1 / 2)
    assert stats["no_answer"] == pytest.approx(1 / 6)


def test_bundled_traces_are_well_formed() -> None:
    rows = [json.loads(line) for line in BUNDLED.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 59 and len({r["id"] for r in rows}) == 59
    for row in rows:
        assert row["kind"] == "math" and row["tokens_approx"] is True and row["majority_matches_source"]
        assert sorted(s["logprob_rank"] for s in row["samples"]) == list(range(30))
        assert all(s["answer"] is None or isinstance(s["answer"], str) for s in row["samples"])
        assert all(s["tokens"] >= 1 and isinstance(s["correct"], bool) for s in row["samples"])
