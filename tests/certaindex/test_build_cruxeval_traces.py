"""Pieces of ``scripts/build_cruxeval_traces.py``, its raw copies and the ``cruxeval_input-gpt35`` traces it wrote."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
RAW = ROOT / "data" / "raw" / "traces_cruxeval_gpt35_input"
BUNDLED = ROOT / "dynasor" / "data" / "traces" / "cruxeval_input-gpt35.jsonl.gz"
GENERATIONS = "gpt-3.5-turbo-0613_temp0.2_input.generations.json"
SHA256 = {  # as recorded in RAW / "PROVENANCE.md"
    GENERATIONS: "dfdaec87be56a964d18d46167914e05439c19cbaf7cfd3d1e168b9ec6b949ded",
    "cruxeval.problems.jsonl": "2665301cd4c6739063438782aaf613391515b5a7b47e06477ea7b38f8ebf9239",
}
CODE = "def f(a, b):\n    return a + b"


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return load_script("build_cruxeval_traces")


def test_read_problems_and_generations(build: ModuleType) -> None:
    problem = {"code": CODE, "input": "1, 2", "output": "3", "id": "sample_0"}
    assert build.read_problems(json.dumps(problem) + "\n\n") == [problem]
    assert build.read_generations('{"sample_0": ["f(1, 2)", "f(0, 3)"]}') == {"sample_0": ["f(1, 2)", "f(0, 3)"]}


def test_probe_source_keeps_a_trailing_comment_harmless(build: ModuleType) -> None:
    source = build.probe_source("f(1, 2)  # the sum", "3")
    assert source.startswith("__dynasor_probe(lambda: (\n") and source.endswith("\n), (\n3\n))")
    compile("def __dynasor_probe(call, expected): pass\n" + source, "<probe>", "exec")


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("=('[1, 2]', True)", ("ok", "[1, 2]", True)),
        ("=(\"'ab'\", False)", ("ok", "'ab'", False)),
        ("ESyntaxError", ("syntax", None, False)),  # a generation cut off at the token limit
        ("ETypeError", ("raises:TypeError", None, False)),
        ("T", ("timeout", None, False)),
        (None, ("unloaded", None, False)),
        ("=('cut", ("unreadable", None, False)),
    ],
)
def test_read_outcome(build: ModuleType, outcome: str | None, expected: tuple[str, str | None, bool]) -> None:
    assert build.read_outcome(outcome) == expected


def test_build_question_runs_the_gold_call_and_each_distinct_sample_once(build: ModuleType) -> None:
    calls = ["f(1, 2)", "f(0, 3)", "f(1, 2)", "f(1, 1)", 'f("a"', "f(None, 1)"]
    outcomes = {
        "f(1, 2)": "=('3', True)",  # the gold call too
        "f(0, 3)": "=('3', True)",
        "f(1, 1)": "=('2', False)",
        'f("a"': "ESyntaxError",
        "f(None, 1)": "ETypeError",
    }
    seen: list[str] = []

    def execute(code: str, call: str, output: str) -> str | None:
        assert code == CODE and output == "3"
        seen.append(call)
        return outcomes[call]

    problem = {"code": CODE, "input": "1, 2", "output": "3", "id": "sample_7"}
    row = build.build_question(problem, calls, execute)
    assert seen[0] == "f(1, 2)" and sorted(seen[1:]) == sorted(set(calls))
    assert row["id"] == "cruxeval-i-7" and row["kind"] == "code" and row["reference"] == "3" and row["gold_checks"]
    assert row["prompt"] == f"{CODE}\nassert f(??) == 3\n" and row["gold_input"] == "f(1, 2)"
    assert [s["text"] for s in row["samples"]] == calls  # the recorded order is kept
    assert [s["answer"] for s in row["samples"]] == ["3", "3", "3", "2", None, None]
    assert [s["correct"] for s in row["samples"]] == [True, True, True, False, False, False]
    assert [s["status"] for s in row["samples"]] == ["ok", "ok", "ok", "ok", "syntax", "raises:TypeError"]


def test_run_probe_in_the_sandbox(build: ModuleType) -> None:
    assert build.read_outcome(build.run_probe(CODE, "f(1, 2)", "3")) == ("ok", "3", True)
    assert build.read_outcome(build.run_probe(CODE, "f(True, 2)", "3")) == ("ok", "3", True)
    assert build.read_outcome(build.run_probe(CODE, "f(1, 2.0)", "3")) == ("ok", "3.0", True)  # == as CRUXEval
    assert build.read_outcome(build.run_probe(CODE, "f('a', 'b')", "3")) == ("ok", "'ab'", False)
    assert build.read_outcome(build.run_probe(CODE, "f(1, 2", "3"))[0] == "syntax"
    assert build.read_outcome(build.run_probe(CODE, "f(None, 1)", "3"))[0] == "raises:TypeError"


def test_run_probe_prints_sets_sorted_and_digests_long_values(build: ModuleType) -> None:
    code = "def f(items):\n    return set(items)"
    status, answer, correct = build.read_outcome(build.run_probe(code, "f(['pear', 'fig', 'apple'])", "{'fig'}"))
    assert (status, answer, correct) == ("ok", "{'apple', 'fig', 'pear'}", False)
    code = "def f(n):\n    return 'x' * n"
    _, answer, _ = build.read_outcome(build.run_probe(code, "f(1000)", "''"))
    assert answer is not None and answer.startswith("<str len=1002 sha1=")


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


@pytest.mark.parametrize("name", sorted(SHA256))
def test_raw_copies_match_their_provenance(name: str) -> None:
    assert hashlib.sha256((RAW / name).read_bytes()).hexdigest() == SHA256[name]


def test_bundled_traces_are_well_formed_and_follow_the_raw_copy() -> None:
    with gzip.open(BUNDLED, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    generations = json.loads((RAW / GENERATIONS).read_text(encoding="utf-8"))
    assert len(rows) == 800 and len({r["id"] for r in rows}) == 800
    for i, row in enumerate(rows):
        assert row["id"] == f"cruxeval-i-{i}" and row["kind"] == "code" and row["tokens_approx"] is True
        assert row["gold_checks"] is True and isinstance(row["reference"], str)
        assert [s["text"] for s in row["samples"]] == generations[f"sample_{i}"]
        for s in row["samples"]:
            assert (s["answer"] is None) == (s["status"] != "ok")
            assert isinstance(s["correct"], bool) and s["tokens"] >= 1
            assert not s["correct"] or s["answer"] is not None
        # equal answers are equally correct (the answer is the value the call makes f return)
        by_answer: dict[str, set[bool]] = {}
        for s in row["samples"]:
            if s["answer"] is not None:
                by_answer.setdefault(s["answer"], set()).add(s["correct"])
        assert all(len(v) == 1 for v in by_answer.values())
