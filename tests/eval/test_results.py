"""The resumable results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


SEPARATORS = ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\r"]


def test_line_separators_in_an_output_do_not_duplicate_a_query_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    results = ResultsFile(path)
    for i, sep in enumerate(SEPARATORS):
        results.append({"id": f"q{i}", "output": f"first{sep}second"})
    assert path.read_bytes().isascii()  # nothing in a line can end it
    again = ResultsFile(path)
    assert again.done == {f"q{i}" for i in range(len(SEPARATORS))} and again.skipped == 0
    assert [r["output"] for r in again] == [f"first{sep}second" for sep in SEPARATORS]


def test_a_file_written_with_raw_separators_still_reads_line_exactly(tmp_path: Path) -> None:
    """Files from before lines were pure ASCII hold U+2028 and friends raw; split on \\n alone."""
    path = tmp_path / "results.jsonl"
    lines = [json.dumps({"id": f"q{i}", "output": f"a{sep}b"}, ensure_ascii=False) for i, sep in enumerate(SEPARATORS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    again = ResultsFile(path)
    assert len(again) == len(SEPARATORS) and again.skipped == 0
    again.append({"id": "new"})
    assert len(ResultsFile(path)) == len(SEPARATORS) + 1


def test_invalid_utf8_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "output": "\xff\xfe"}\n{"id": "c"}\n')
    with caplog.at_level("WARNING"):
        results = ResultsFile(path)
    assert results.done == {"a", "c"} and results.skipped == 1
    assert "results.jsonl:2: not UTF-8" in caplog.text


def test_sort_puts_queries_in_order_atomically(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    results = ResultsFile(path)
    for qid in ("c", "a", "x", "b"):
        results.append({"id": qid})
    results.sort(["a", "b", "c"])
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c", "x"]
    assert [r["id"] for r in ResultsFile(path)] == ["a", "b", "c", "x"]
    assert not (tmp_path / "results.jsonl.tmp").exists()
