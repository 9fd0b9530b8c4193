"""``dynasor eval`` end to end through the CLI (replay, virtual time)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dynasor_cli import app


def test_eval_command_writes_every_output_and_resumes(tmp_path: Path) -> None:
    args = ["eval", "--backend", "replay:math-qwen25", "--limit", "6", "--max-samples", "4", "--compare-baseline"]
    args += ["--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "replay" in result.output and "early exit" in result.output
    for name in ("results.jsonl", "summary.json", "profile.jsonl", "pareto.png", "savings.png", "trajectories.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["label"] == "replay" and summary["queries"] == 6
    assert summary["fixed_budget"]["samples_mean"] == 4
    # Same command again: nothing left to run, same figures.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 6
    assert json.loads((tmp_path / "summary.json").read_text())["early_exit"] == summary["early_exit"]


def test_threshold_override_changes_the_early_exit_arm(tmp_path: Path) -> None:
    base = ["eval", "--backend", "replay:math-qwen25", "--limit", "8", "--no-plots"]
    strict = CliRunner().invoke(app, [*base, "--threshold", "1.0", "--min-step", "4", "--out", str(tmp_path / "s")])
    loose = CliRunner().invoke(app, [*base, "--threshold", "0.0", "--min-step", "1", "--out", str(tmp_path / "l")])
    assert strict.exit_code == 0 and loose.exit_code == 0, strict.output + loose.output
    s = json.loads((tmp_path / "s" / "summary.json").read_text())["early_exit"]
    loose_summary = json.loads((tmp_path / "l" / "summary.json").read_text())["early_exit"]
    assert loose_summary["samples_mean"] == 2 and s["samples_mean"] == 8
    assert loose_summary["exit_reasons"] == {"confident": 8}


def test_bad_backend_and_missing_dataset_are_reported(tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["eval", "--dataset", "gsm8k", "--backend", "carrier-pigeon", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown backend" in bad.output
    missing = CliRunner().invoke(app, ["eval", "--backend", "sim", "--out", str(tmp_path / "m")])
    assert missing.exit_code == 2 and "--dataset" in missing.output


def test_policy_and_its_knobs_are_checked_before_running(tmp_path: Path) -> None:
    base = ["eval", "--backend", "replay:math-qwen25", "--limit", "2", "--no-plots"]
    bad = CliRunner().invoke(app, [*base, "--policy", "dynasor:aging=fast", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "aging" in bad.output and not (tmp_path / "b").exists()
    good = CliRunner().invoke(app, [*base, "--policy", "dynasor:aging=0.5", "--out", str(tmp_path / "g")])
    assert good.exit_code == 0, good.output
    assert json.loads((tmp_path / "g" / "run.json").read_text())["config"]["policy"] == "dynasor:aging=0.5"
