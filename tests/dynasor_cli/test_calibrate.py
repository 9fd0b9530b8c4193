"""``dynasor calibrate`` end to end: traces or profiling records in, a Certaindex config out."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import certaindex as cx
from certaindex import ProfilingRecord, write_records
from dynasor.allocator import AllocatorConfig
from dynasor_cli import app

runner = CliRunner()


def _traces(path: Path, n: int, samples: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{q}", "samples": samples}) + "\n" for q in range(n)))
    return path


AGREE = [{"answer": "4", "tokens": 50, "correct": True}] * 6


def test_a_certified_rule_is_a_config_eval_and_the_allocator_load(tmp_path: Path) -> None:
    data, out, report = _traces(tmp_path / "t.jsonl", 900, AGREE), tmp_path / "rules.yaml", tmp_path / "report.txt"
    result = runner.invoke(app, ["calibrate", str(data), "--bound", "2", "--out", str(out), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "promise: accuracy loss vs the full budget <= 2 pt with probability >= 0.95" in result.output
    rule = AllocatorConfig.load(out).rule_for("sc")
    assert rule.threshold is not None and rule.certification is not None and rule.certification.bound == 0.02
    assert rule.certification.queries == 900 and "t (900)" in rule.certification.data
    raw = yaml.safe_load(out.read_text())["sc"]
    for field in ("measure", "threshold", "min_samples", "round_size", "answer_kind", "abstentions"):
        assert field in raw  # the whole rule, nothing to add by hand
    assert "min_step" not in raw and raw["measure"] in cx.ALGORITHM_MEASURES["sc"]
    assert "samples saved" in report.read_text()


def test_an_uncertifiable_bound_writes_the_full_budget_and_says_why(tmp_path: Path) -> None:
    data, out = _traces(tmp_path / "t.jsonl", 20, AGREE), tmp_path / "rules.yaml"
    result = runner.invoke(app, ["calibrate", str(data), "--bound", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "cannot certify" in result.output and "promise: none" in result.output
    assert AllocatorConfig.load(out).rule_for("sc").threshold is None  # never stops early


def test_a_point_estimate_is_never_called_a_bound(tmp_path: Path) -> None:
    mixed = [{"answer": "4", "tokens": 50, "correct": True}] * 3 + [{"answer": "5", "tokens": 50, "correct": False}]
    data, out = _traces(tmp_path / "t.jsonl", 30, mixed), tmp_path / "rules.yaml"
    result = runner.invoke(app, ["calibrate", str(data), "--point-estimate", "--bound", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "promise: no bound: point-estimate" in result.output
    assert "harm-rate bound" not in result.output and "<= 1 pt with probability" not in result.output
    rule = AllocatorConfig.load(out).rule_for("sc")
    assert rule.certification is not None and rule.certification.bound is None


def test_several_bounds_certify_the_tightest_they_can(tmp_path: Path) -> None:
    data, out = _traces(tmp_path / "t.jsonl", 300, AGREE), tmp_path / "rules.yaml"
    args = ["calibrate", str(data), "--bound", "0.5", "--bound", "5", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cert = AllocatorConfig.load(out).rule_for("sc").certification
    assert cert is not None and cert.bound == 0.05 and "tightest of 2 bounds" in cert.method


def _records(n: int) -> list[ProfilingRecord]:
    return [
        ProfilingRecord(f"q{q}", "sc", s, s, 100 * s, {"entropy": s / 4, "reward_mean": 0.99}, "7", True, True)
        for q in range(n)
        for s in (1, 2, 3, 4)
    ]


def test_profiling_records_and_a_measure_sc_cannot_produce(tmp_path: Path) -> None:
    records, out = tmp_path / "profile.jsonl", tmp_path / "rules.yaml"
    write_records(_records(900), records)
    result = runner.invoke(app, ["calibrate", str(records), "--bound", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rule = AllocatorConfig.load(out).rule_for("sc")
    assert rule.measure == "entropy" and rule.threshold is not None  # reward_mean would stop sooner: sc has none
    refused = runner.invoke(app, ["calibrate", str(records), "--measure", "reward_mean", "--out", str(out)])
    assert refused.exit_code == 2 and "sc cannot produce reward_mean" in refused.output


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"id": "q0", "answers": ["4"]}, "no 'samples' list"),
        ({"id": "q0", "samples": [{"tokens": 3}]}, "neither 'text' nor 'answer'"),
        ({"query_id": "q0", "step": 1}, "profiling record lacks"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path: Path, line: dict[str, Any], message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(line) + "\n")
    result = runner.invoke(app, ["calibrate", str(path), "--out", str(tmp_path / "o.yaml")])
    assert result.exit_code == 2, result.output
    assert message in unwrapped(result.output) and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def unwrapped(output: str) -> str:
    """The text of an error box as one line: where the box wraps depends on the file's path."""
    return " ".join(" ".join(line.strip(" │╭╮╰╯─").split()) for line in output.splitlines())


def test_bad_options(tmp_path: Path) -> None:
    data = _traces(tmp_path / "t.jsonl", 2, AGREE)
    assert runner.invoke(app, ["calibrate", str(data), "--method", "hoeffding"]).exit_code == 2
    assert runner.invoke(app, ["calibrate", str(data), "--bound", "-1"]).exit_code == 2
    assert runner.invoke(app, ["calibrate", str(data), "--kind", "essay"]).exit_code == 2


def test_a_chosen_measure_is_the_written_rule_s(tmp_path: Path) -> None:
    data, out = _traces(tmp_path / "t.jsonl", 30, AGREE), tmp_path / "rules.yaml"
    args = ["calibrate", str(data), "--measure", "entropy", "--point-estimate", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert AllocatorConfig.load(out).rule_for("sc").measure == "entropy"


@pytest.mark.slow
def test_ordering_betting_certifies_on_recorded_traces(tmp_path: Path) -> None:
    """The ordering-averaged method from the command line, on the bundled SVAMP traces (59 x 30)."""
    out = tmp_path / "rules.yaml"
    data = Path(__file__).resolve().parents[2] / "dynasor" / "data" / "traces" / "svamp-codex.jsonl"
    args = ["calibrate", str(data), "--method", "ordering-betting", "--orderings", "50", "--bound", "20"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "samples saved" in result.output
    assert not re.search(r"harms \d+\.\d{4,}", result.output)  # expected counts, printed short
    rule = AllocatorConfig.load(out).rule_for("sc")
    assert rule.certification is not None and rule.certification.method.startswith("ordering-betting")
    assert rule.certification.bound == 0.2 and rule.threshold is not None
    assert "else 50 random orderings (seed 0)" in rule.certification.method  # how to reproduce it


def test_ordering_betting_options_are_checked(tmp_path: Path) -> None:
    data = _traces(tmp_path / "t.jsonl", 20, AGREE)
    for extra, message in (
        (["--scope", "everything"], "--scope"),
        (["--orderings", "0"], "--orderings"),
        (["--method", "betting"], "ordering-betting"),
    ):
        result = runner.invoke(app, ["calibrate", str(data), "--method", "ordering-betting", *extra])
        assert result.exit_code == 2 and message in result.output, result.output
