"""The trace reader: recorded answers first, clear errors, a warning when answers are mostly missing."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import pytest

from certaindex import (
    StopRule,
    TraceError,
    TraceWarning,
    Trajectory,
    parse_trace,
    read_traces,
    replay,
    sample_answers,
    trajectories_from_traces,
)

TRACES = Path(__file__).resolve().parents[2] / "dynasor" / "data" / "traces"


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "q1", "prompt": "p"}', r":1: no 'samples' list \(keys: id, prompt\)"),
        ('{"id": "q1", "samples": [{"tokens": 3}]}', ":1: sample 0 has neither 'text' nor 'answer'"),
        ('{"id": "q1", "samples": ["x"]}', ":1: sample 0 is not an object"),
        ('{"id": "q1", "samples": [{"answer": "1", "tokens": "many"}]}', ":1: sample 0:"),
        ('{"id": "q1", "samples": [], ', r":1: not valid JSON"),
        ("[1, 2]", ":1: a trace line is a JSON object"),
        ('{"id": "q", "options": {"AB": "x"}, "samples": []}', ":1: options: option labels"),
    ],
)
def test_bad_lines_are_errors_naming_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path / "t.jsonl", [line])
    with pytest.raises(TraceError, match=message) as info:
        read_traces(path)
    assert str(path) in str(info.value)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such trace file"):
        read_traces(tmp_path / "missing.jsonl")
    with pytest.raises(TraceError, match="no trace lines"):
        read_traces(_write(tmp_path / "empty.jsonl", [""]))
    (tmp_path / "bin.jsonl").write_bytes(b'{"id": "\xff"}\n')
    with pytest.raises(TraceError, match="not UTF-8"):
        read_traces(tmp_path / "bin.jsonl")
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(TraceError, match="cannot read"):
        read_traces(tmp_path / "bad.jsonl.gz")


def test_gzip_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write('{"id": 1, "samples": [{"answer": "4"}]}\n\n{"id": 2, "samples": [{"text": "\\\\boxed{5}"}]}\n')
    traces = read_traces(path)
    assert [t.id for t in traces] == ["1", "2"]
    assert sample_answers(traces[1]) == (["5"], 1)


def test_the_recorded_answer_wins_and_a_flag_re_extracts() -> None:
    trace = parse_trace(
        {"id": "q", "samples": [{"text": "def f(): return 1", "answer": "PPF"}, {"text": "x", "answer": None}]}
    )
    assert sample_answers(trace, "code") == (["PPF", None], 0)  # null is a recorded abstention
    assert sample_answers(trace, "code", reextract=True) == ([None, None], 2)


def test_warns_when_extraction_finds_no_answer_in_most_samples() -> None:
    traces = [parse_trace({"id": "q", "reference": "A", "samples": [{"text": "hmm"}] * 3 + [{"text": "(A)"}]})]
    with pytest.warns(TraceWarning, match="found no answer in 3 of 4 samples"):
        trajectories_from_traces(traces, kind="choice")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recorded answers are not extraction: no warning
        recorded = [parse_trace({"id": "q", "samples": [{"answer": None, "correct": False}] * 4})]
        trajectories_from_traces(recorded, kind="code")


def test_grading_by_kind() -> None:
    choice = parse_trace(
        {"id": "q", "reference": "(B)", "options": ["7", "8"], "samples": [{"text": "the answer is 8"}, {"text": "A"}]}
    )
    (t,) = trajectories_from_traces([choice], kind="choice")
    assert t.correct is not None and t.correct.tolist() == [True, True]  # "8" is option B; B still leads at 2
    math = parse_trace({"id": "q", "reference": "0.5", "samples": [{"text": "\\boxed{\\frac{1}{2}}"}]})
    assert trajectories_from_traces([math])[0].correct.tolist() == [True]  # type: ignore[union-attr]
    with pytest.raises(TraceError, match="code samples need a recorded 'correct'"):
        trajectories_from_traces(
            [parse_trace({"id": "q", "reference": "x", "samples": [{"answer": "P"}]})], kind="code"
        )
    with pytest.raises(TraceError, match="no 'reference'"):
        trajectories_from_traces([parse_trace({"id": "q", "samples": [{"answer": "1"}]})])


def test_tokens_scores_and_budget() -> None:
    trace = parse_trace(
        {
            "id": "q",
            "reference": "1",
            "samples": [{"answer": "1", "tokens": 7, "score": 0.9}, {"answer": "2", "score": 0.1}],
        }
    )
    (t,) = trajectories_from_traces([trace])
    assert t.tokens is not None and t.tokens[0] == 7 and not t.meta["tokens_exact"]
    assert t.values["reward_max"].tolist() == [0.9, 0.9]
    assert len(trajectories_from_traces([trace], max_samples=1)[0]) == 1


def test_program_traces_score_from_recorded_answers() -> None:
    """On the HumanEval trace (samples are programs, no fenced blocks) re-extraction finds no answers."""
    traces = read_traces(TRACES / "humaneval_codet.jsonl.gz")[:30]
    recorded = trajectories_from_traces(traces, kind="code")
    assert isinstance(recorded[0], Trajectory)
    full = replay(StopRule(), recorded)
    assert full.full_accuracy > 0.1
    with pytest.warns(TraceWarning):
        trajectories_from_traces(traces, kind="code", reextract=True)


def test_records_from_a_bad_trace_line_are_a_trace_error() -> None:
    from certaindex import Equivalence, records_from_trace

    with pytest.raises(TraceError, match="no 'samples' list"):
        records_from_trace({"id": "q"}, equivalence=Equivalence(symbolic=False))


def test_bundled_sets_read_cleanly() -> None:
    for path in sorted(TRACES.glob("*.jsonl*")):
        traces = read_traces(path)
        assert traces and all(t.samples for t in traces), path.name
        assert json.dumps(traces[0].meta, default=str)
