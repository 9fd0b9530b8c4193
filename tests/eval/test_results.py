"""The resumable results file."""

from __future__ import annotations

from pathlib import Path

from eval import ResultsFile


def test_append_then_reload(tmp_path: Path) -> None:
    path = tmp_path / "r" / "results.jsonl"
    results = ResultsFile(path)
    for i in range(3):
        results.append({"id": f"q{i}", "correct": i % 2 == 0})
    again = ResultsFile(path)
    assert again.done == {"q0", "q1", "q2"}
    assert [r["correct"] for r in again] == [True, False, True]


def test_torn_last_line_is_cut_and_appends_stay_valid(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    results = ResultsFile(path)
    results.append({"id": "a"})
    with open(path, "a") as handle:
        handle.write('{"id": "b", "correct": tr')  # killed mid-write
    reopened = ResultsFile(path)
    assert reopened.done == {"a"}
    reopened.append({"id": "b", "correct": True})
    assert ResultsFile(path).done == {"a", "b"}
    assert path.read_text().count("\n") == 2


def test_garbage_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a"}\nnot json\n[1, 2]\n{"no_id": 1}\n')
    assert ResultsFile(path).done == {"a"}
