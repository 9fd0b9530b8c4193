"""``dynasor calibrate`` end to end: records or traces in, an allocator config out."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from certaindex import ProfilingRecord, write_records
from dynasor.allocator import AllocatorConfig
from dynasor_cli import app

runner = CliRunner()


def _records(n: int) -> list[ProfilingRecord]:
    return [
        ProfilingRecord(f"q{q}", "sc", s, s, 100 * s, {"entropy": s / 4, "beta": 0.5}, "7", True, True)
        for q in range(n)
        for s in (1, 2, 3, 4)
    ]


def test_writes_a_config_the_allocator_loads(tmp_path: Path) -> None:
    records, out, report = tmp_path / "r.jsonl", tmp_path / "config.yaml", tmp_path / "report.txt"
    write_records(_records(400), records)
    result = runner.invoke(
        app,
        ["calibrate", str(records), "--target-loss", "2", "--out", str(out), "--report", str(report)],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# written by dynasor calibrate:")
    assert "Clopper-Pearson" in text.splitlines()[0]
    raw = yaml.safe_load(text)
    assert raw["sc"]["measure"] in ("entropy", "beta")  # both are safe from step 1 here
    assert raw["sc"]["expected_saving"] == 0.75
    rule = AllocatorConfig.load(out).rule_for("sc")
    assert rule.measure == raw["sc"]["measure"] and rule.min_step == 1 and rule.threshold is not None
    assert "tokens saved" in report.read_text()


def test_uncertifiable_target_writes_never_stop(tmp_path: Path) -> None:
    records, out = tmp_path / "r.jsonl", tmp_path / "config.yaml"
    write_records(_records(20), records)
    result = runner.invoke(app, ["calibrate", str(records), "--target-loss", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "cannot certify" in result.output
    rule = AllocatorConfig.load(out).rule_for("sc")
    assert rule.threshold is None  # the allocator never stops early


def test_from_traces(tmp_path: Path) -> None:
    traces, out, saved = tmp_path / "t.jsonl", tmp_path / "config.yaml", tmp_path / "records.jsonl"
    rows = [
        {"id": f"q{q}", "samples": [{"text": "", "answer": "4", "tokens": 50, "correct": True}] * 4} for q in range(10)
    ]
    traces.write_text("\n".join(json.dumps(r) for r in rows))
    result = runner.invoke(
        app,
        ["calibrate", str(traces), "--from-traces", "--bound", "none", "--out", str(out),
         "--save-records", str(saved), "--measure", "entropy"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(saved.read_text().splitlines()) == 40
    raw = yaml.safe_load(out.read_text())
    assert raw["sc"]["measure"] == "entropy"
    assert raw["sc"]["expected_saving"] > 0.5


def test_bad_bound(tmp_path: Path) -> None:
    records = tmp_path / "r.jsonl"
    write_records(_records(2), records)
    result = runner.invoke(app, ["calibrate", str(records), "--bound", "hoeffding"])
    assert result.exit_code != 0
