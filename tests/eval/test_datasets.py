"""Dataset loading: every bundled set, local files with a field mapping, trace sets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from dynasor import ConfigError
from eval import BUNDLED, Problem, entry_calls, load_problems

EXPECTED_ROWS = {"gsm8k": 1319, "math500": 500, "aime24": 30, "aime25": 30, "amc23": 40, "humaneval": 164, "mbpp": 427}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_set_loads_complete_with_provenance(name: str) -> None:
    problems = load_problems(name)
    assert len(problems) == EXPECTED_ROWS[name]
    assert len({p.id for p in problems}) == len(problems)
    spec = BUNDLED[name]
    assert all(p.kind == spec.kind and p.prompt.strip() for p in problems)
    provenance = (spec.path.parent / "PROVENANCE.md").read_text()
    assert "icen" in provenance  # licence / license noted
    if spec.kind == "math":
        assert all(p.reference for p in problems)
        assert not any("Please reason step by step" in p.prompt for p in problems)
    else:
        assert all(p.tests and p.entry_point for p in problems)
        # Nearly every code problem shows its function called on example inputs.
        assert sum(bool(p.examples) for p in problems) >= 0.8 * len(problems)


def test_bundled_references_are_clean() -> None:
    gsm = load_problems("gsm8k", limit=3)
    assert [p.reference for p in gsm] == ["18", "3", "70000"]
    assert load_problems("amc23")[0].reference == "27"  # stored as 27.0
    assert load_problems("aime25")[0].reference == "70"


def test_code_reference_solution_passes_its_own_tests() -> None:
    from eval import CodeGrader

    grader = CodeGrader(timeout=10)
    for name in ("humaneval", "mbpp"):
        problem = load_problems(name, limit=1)[0]
        assert problem.reference is not None
        text = problem.reference if name == "mbpp" else problem.prompt + problem.reference
        assert grader.grade(problem, text).correct


def test_limit_keeps_the_first_rows() -> None:
    assert [p.id for p in load_problems("math500", limit=2)] == [p.id for p in load_problems("math500")[:2]]


def test_local_jsonl_with_field_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    rows = [{"qid": f"q{i}", "text": f"What is {i}+{i}?", "gold": 2 * i} for i in range(4)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    problems = load_problems(path, fields={"id": "qid", "prompt": "text", "reference": "gold"})
    assert [(p.id, p.prompt, p.reference, p.kind) for p in problems] == [
        (f"q{i}", f"What is {i}+{i}?", str(2 * i), "math") for i in range(4)
    ]


def test_local_file_default_columns_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"question": "2+2?", "answer": "Two and two.\n#### 4"}) + "\n")
    (problem,) = load_problems(path)
    assert (problem.id, problem.prompt, problem.reference) == ("row-0", "2+2?", "4")


def test_local_parquet_code_file(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "code.parquet"
    datasets.Dataset.from_list(
        [
            {
                "task_id": "t/0",
                "prompt": "def double(x):\n    '''>>> double(2)\n    4'''\n",
                "entry_point": "double",
                "test": "def check(candidate):\n    assert candidate(3) == 6\n",
            }
        ]
    ).to_parquet(str(path))
    (problem,) = load_problems(path)
    assert problem.kind == "code"
    assert problem.tests is not None and problem.tests.rstrip().endswith("check(double)")
    assert problem.examples == ("double(2)",)


def test_missing_mapped_column_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    with pytest.raises(ConfigError, match="no column 'nope'"):
        load_problems(path, fields={"prompt": "nope"})


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text("".join(json.dumps({"id": 1, "question": f"q{i}", "answer": i}) + "\n" for i in range(2)))
    with pytest.raises(ConfigError, match="not unique"):
        load_problems(path)


def test_unknown_name_is_a_config_error_naming_bundled_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionError("the hub cannot be reached")

    # A name that is neither bundled nor a file goes to the hub; here the hub is unreachable.
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(ConfigError, match=r"gsm8k.*ConnectionError"):
        load_problems("no-such-owner/no-such-dataset-xyz")


def test_trace_set_is_a_dataset() -> None:
    problems = load_problems("math-qwen25")
    assert len(problems) == 100
    assert problems[0].kind == "math" and problems[0].reference == "420"


def test_code_trace_file_joins_bundled_tests(tmp_path: Path) -> None:
    path = tmp_path / "code_traces.jsonl"
    path.write_text(
        json.dumps({"id": "HumanEval/0", "prompt": "def f():", "reference": None, "samples": [{"answer": "PP"}]}) + "\n"
    )
    (problem,) = load_problems(path)
    assert problem.kind == "code" and problem.entry_point == "has_close_elements" and problem.tests


@pytest.mark.parametrize(
    ("text", "name", "calls"),
    [
        (">>> f(1, 2)\n3\n>>> f([1, (2, 3)])\n", "f", ("f(1, 2)", "f([1, (2, 3)])")),
        ("def f(x):\n  '''f(2) ==> 4, f(2) again, g.f(9), ff(1)'''", "f", ("f(2)",)),
        ("f(1, 2", "f", ()),  # unbalanced: no call
    ],
)
def test_entry_calls(text: str, name: str, calls: tuple[str, ...]) -> None:
    assert entry_calls(text, name) == calls


def test_problem_is_immutable() -> None:
    problem = Problem("a", "b", "math", "1")
    with pytest.raises(AttributeError):
        problem.id = "c"  # type: ignore[misc]
