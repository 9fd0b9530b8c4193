"""The embedded default workload and its command."""

from __future__ import annotations

from typer.testing import CliRunner

from dynasor.demo import DemoSettings, run_demo, summarize
from dynasor_cli import app


def test_early_exit_uses_a_prefix_of_the_fixed_budget_samples() -> None:
    outcomes = run_demo(DemoSettings(limit=15, rate=4.0))
    for o in outcomes:
        early = [r.completion_tokens for r in o.early.requests]
        fixed = [r.completion_tokens for r in o.baseline.requests]
        assert o.baseline.samples == 8
        assert sorted(early) == sorted(fixed[: len(early)])  # same rounds, in the same order
        assert o.early.usage.completion_tokens <= o.baseline.usage.completion_tokens
    s = summarize(outcomes)
    assert s["tokens"] < s["baseline_tokens"]
    assert 0.0 <= s["accuracy"] <= 1.0 and s["samples"] < s["baseline_samples"]


def test_demo_command_prints_the_tables() -> None:
    result = CliRunner().invoke(app, ["demo", "--limit", "6", "--rows", "3"])
    assert result.exit_code == 0, result.output
    assert "Totals" in result.output and "math-0" in result.output and "simulated engine" in result.output


def test_demo_command_reports_bad_input() -> None:
    result = CliRunner().invoke(app, ["demo", "--policy", "sjf", "--limit", "2"])
    assert result.exit_code == 2
    assert "Unknown scheduling policy" in result.output
