"""Pieces of ``scripts/build_math_traces.py`` and the bundled ``math-qwen25`` traces it wrote."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "dynasor" / "data" / "traces" / "math-qwen25.jsonl"


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return load_script("build_math_traces")


@pytest.mark.parametrize(("level", "number"), [("Level 3", 3), ("Level 5", 5), (2, 2), ("Level ?", None), (None, None)])
def test_level_number(build: ModuleType, level: object, number: int | None) -> None:
    assert build.level_number(level) == number


def test_convert_joins_the_subject_on_the_problem_text(build: ModuleType) -> None:
    raw = {
        "idx": "7",
        "question": "What is  $1+1$?\n",
        "gt": "2",
        "level": "Level 1",
        "code": ["So the answer is $\\boxed{2}$.", "It is $\\boxed{3}$."],
        "pred": ["2", "3"],
        "score": [True, False],
        "pred_score": [[0.9], [0.2]],
    }
    subjects = {build.problem_key("What is $1+1$?"): "Prealgebra"}
    row = build.convert(raw, subjects)
    assert row["id"] == "math-7" and row["reference"] == "2"
    assert row["level"] == 1 and row["subject"] == "Prealgebra"
    assert [s["answer"] for s in row["samples"]] == ["2", "3"]
    assert [s["correct"] for s in row["samples"]] == [True, False]
    assert [s["score"] for s in row["samples"]] == [0.9, 0.2]
    assert build.convert(raw)["subject"] is None


def test_bundled_traces_carry_level_and_subject() -> None:
    rows = [json.loads(line) for line in BUNDLED.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 100
    assert all(row["level"] in {1, 2, 3, 4, 5} for row in rows)
    assert all(row["subject"] is None or isinstance(row["subject"], str) for row in rows)
    assert sum(row["subject"] is not None for row in rows) == 5
    assert all(len(row["samples"]) == 8 for row in rows)
